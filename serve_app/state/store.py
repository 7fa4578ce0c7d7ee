"""The state store: one SQLAlchemy async engine over SQLite (embedded default) or PostgreSQL (clusters),
its schema brought to the newest migration on first use.

Drivers: aiosqlite (the one async SQLite driver SQLAlchemy supports) and asyncpg (SQLAlchemy's primary async
PostgreSQL dialect; binary wheels, no libpq on gateway nodes). Users write plain `postgresql://` or
`sqlite:///` URLs; the async driver is filled in here.

Nothing connects at construction: a store that is down must not stop the gateway from starting or serving.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Table, event, text
from sqlalchemy.dialects.postgresql import Insert as PostgresInsert
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import Insert as SQLiteInsert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from serve_app.errors import store_unavailable

MIGRATIONS = Path(__file__).with_name("migrations")
_PG_MIGRATION_LOCK = 0x7E57A7E  # advisory lock id: one replica migrates, the others wait
_CONNECT_TIMEOUT_S = 5


def async_url(url: str) -> str:
    """`postgresql://` / `postgres://` -> asyncpg, `sqlite:///` -> aiosqlite; explicit drivers are kept."""
    parsed = make_url(url.replace("postgres://", "postgresql://", 1) if url.startswith("postgres://") else url)
    if parsed.drivername == "postgresql":
        parsed = parsed.set(drivername="postgresql+asyncpg")
    elif parsed.drivername == "sqlite":
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    if parsed.drivername not in ("postgresql+asyncpg", "sqlite+aiosqlite"):
        raise ValueError(f"state store URL must be postgresql:// or sqlite:///, not {parsed.drivername}://")
    return parsed.render_as_string(hide_password=False)


def redacted(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    # WAL: readers never block the writer; busy_timeout: gateway replicas and the batch runner share the file.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _transactional_ddl_engine(url: str) -> AsyncEngine:
    """SQLite connections whose DDL is inside the transaction (SQLAlchemy's recipe for pysqlite/aiosqlite): the
    driver would commit each CREATE at once, so a process killed mid-upgrade left tables without their
    `alembic_version` row, and every later start failed on "table already exists". For migrations only: the
    store's own transactions keep the driver's begin-at-first-write, which busy_timeout covers."""
    engine = create_async_engine(url)
    event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    event.listen(engine.sync_engine, "connect", _driver_emits_no_begin)
    event.listen(engine.sync_engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN IMMEDIATE"))
    return engine


def _driver_emits_no_begin(dbapi_connection, _record) -> None:
    dbapi_connection.isolation_level = None


def _upgrade(connection: Connection) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


class StateStore:
    def __init__(self, url: str) -> None:
        self.url = async_url(url)
        parsed = make_url(self.url)
        self.is_sqlite = parsed.drivername.startswith("sqlite")
        if self.is_sqlite:
            if not parsed.database or parsed.database == ":memory:":
                raise ValueError("the SQLite state store needs a file (each process would get its own memory)")
            self.sqlite_path: Path | None = Path(parsed.database)
            self.engine = create_async_engine(self.url, pool_pre_ping=True)
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
        else:
            self.sqlite_path = None
            self.engine = create_async_engine(self.url, pool_pre_ping=True, pool_size=5, max_overflow=5,
                                              connect_args={"timeout": _CONNECT_TIMEOUT_S})
        self._migrated = False
        self._lock = asyncio.Lock()

    def __repr__(self) -> str:
        return f"StateStore({redacted(self.url)})"

    def insert(self, table: Table) -> SQLiteInsert | PostgresInsert:
        """This store's dialect of INSERT, the one with ON CONFLICT (both dialects spell it alike)."""
        return (sqlite_insert if self.is_sqlite else postgresql_insert)(table)

    async def ready(self) -> None:
        """Create or upgrade the schema once per process (retried on the next use if the store was down)."""
        if self._migrated:
            return
        async with self._lock:
            if self._migrated:
                return
            if self.sqlite_path is not None:
                self.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
                lock = await asyncio.to_thread(_file_lock, self.sqlite_path.with_name(self.sqlite_path.name + ".lock"))
                try:
                    await self._migrate()
                finally:
                    os.close(lock)  # closing the descriptor releases the lock
            else:
                await self._migrate()
            self._migrated = True

    async def _migrate(self) -> None:
        engine = _transactional_ddl_engine(self.url) if self.is_sqlite else self.engine
        try:
            async with engine.begin() as conn:
                if not self.is_sqlite:
                    await conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _PG_MIGRATION_LOCK})
                await conn.run_sync(_upgrade)
        finally:
            if engine is not self.engine:
                await engine.dispose()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        """One transaction, committed when the block ends; a store that cannot be reached is a 503."""
        try:
            await self.ready()
            conn = await self.engine.connect()
        except (SQLAlchemyError, OSError, TimeoutError) as exc:
            raise store_unavailable() from exc
        try:
            async with conn.begin():
                yield conn
        finally:
            await conn.close()

    async def dispose(self) -> None:
        await self.engine.dispose()


def _file_lock(path: Path) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd
