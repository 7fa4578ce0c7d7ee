"""A real, throwaway PostgreSQL server for tests: initdb into a temp dir, listen on loopback, remove on exit."""

from __future__ import annotations

import asyncio
import glob
import os
import pwd
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.support.ports import free_port

SYSTEM_USER = "postgres"  # created by Debian's postgresql package; initdb and postgres refuse to run as root
SUPERUSER = "postgres"  # the role name in URLs, whoever runs the server
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")  # safe both as a quoted identifier and in a URL path


def _version_key(bin_dir: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", bin_dir.parent.name))


def bin_dir() -> Path | None:
    """The newest /usr/lib/postgresql/<version>/bin with initdb; else wherever initdb on PATH really lives."""
    found = [Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin") if (Path(p) / "initdb").is_file()]
    if found:
        return max(found, key=_version_key)
    initdb = shutil.which("initdb")  # e.g. Homebrew; resolve links so pg_ctl finds its sibling postgres
    return Path(initdb).resolve().parent if initdb else None


def _as_root() -> bool:
    return os.geteuid() == 0


def unavailable_reason() -> str | None:
    """Why a server cannot be started here, or None when it can."""
    directory = bin_dir()
    if directory is None:
        return "PostgreSQL binaries (initdb, pg_ctl, postgres) not found in /usr/lib/postgresql/*/bin or on PATH"
    missing = [name for name in ("initdb", "pg_ctl", "postgres") if not (directory / name).is_file()]
    if missing:
        return f"{', '.join(missing)} missing from {directory}"
    if _as_root():
        try:
            pwd.getpwnam(SYSTEM_USER)
        except KeyError:
            return f"running as root and no {SYSTEM_USER!r} system user to run the server as"
    return None


def require_postgres() -> None:
    """Fails the calling test where no server can start: a missing server is a broken set-up (`make
    system-deps` installs it), not a reason to test less."""
    import pytest

    reason = unavailable_reason()
    if reason is not None:
        pytest.fail(f"PostgreSQL is needed for the state store tests ({reason}); run `make system-deps`.")


class PostgresServer:
    """`with PostgresServer() as pg: url = pg.create_database("app")` gives an async SQLAlchemy URL."""

    START_ATTEMPTS = 3  # the free port can be taken between probing and binding

    def __init__(self) -> None:
        reason = unavailable_reason()
        if reason is not None:
            raise RuntimeError(reason)
        self.bin = bin_dir()
        self.port = 0
        self.root: Path | None = None
        self._running = False

    @property
    def data(self) -> Path:
        assert self.root is not None, "server not entered"
        return self.root / "data"

    @property
    def log(self) -> Path:
        assert self.root is not None, "server not entered"
        return self.root / "server.log"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run a PostgreSQL binary as the postgres user when we are root, from a directory it can read."""
        command = [str(self.bin / args[0]), *args[1:]]
        if _as_root():
            command = ["runuser", "-u", SYSTEM_USER, "--", *command]
        # PG* variables from the caller's environment must not redirect the server elsewhere.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        return subprocess.run(command, cwd=self.root, env=env, capture_output=True, text=True, timeout=120)

    def _check(self, result: subprocess.CompletedProcess[str], what: str) -> None:
        if result.returncode != 0:
            log = self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""
            raise RuntimeError(f"{what} failed ({result.returncode}):\n{result.stdout}{result.stderr}\n{log}")

    def __enter__(self) -> PostgresServer:
        self.root = Path(tempfile.mkdtemp(prefix="pytest-postgres-", dir="/tmp"))
        try:
            if _as_root():
                shutil.chown(self.root, SYSTEM_USER, SYSTEM_USER)
            # C locale: the caller's LANG may name a locale that is not generated here.
            self._check(self._run("initdb", "-D", str(self.data), f"--username={SUPERUSER}", "--auth=trust",
                                  "--encoding=UTF8", "--locale=C", "--no-sync"), "initdb")
            self._start()
        except BaseException:
            self._cleanup()
            raise
        return self

    def _start(self) -> None:
        for attempt in range(self.START_ATTEMPTS):
            self.port = free_port()
            # Unix socket in our own dir, not /var/run/postgresql; durability off since the data is thrown away.
            options = (f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.root} "
                       "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
            result = self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options, "-w",
                               "-t", "60", "start")
            if result.returncode == 0:
                self._running = True
                return
            log = self.log.read_text(errors="replace") if self.log.exists() else ""
            if "could not bind" not in log or attempt == self.START_ATTEMPTS - 1:
                self._check(result, "pg_ctl start")
            self.log.unlink()  # a fresh log for the next port

    def __exit__(self, *exc: object) -> None:
        self._cleanup()

    def _cleanup(self) -> None:
        try:
            if self._running:
                # Immediate: no checkpoint, nothing worth keeping.
                self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop")
                self._running = False
        finally:
            if self.root is not None:
                shutil.rmtree(self.root, ignore_errors=True)
                self.root = None

    def url_for(self, database: str) -> str:
        return f"postgresql+asyncpg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    @property
    def url(self) -> str:
        return self.url_for("postgres")

    def create_database(self, name: str) -> str:
        """CREATE DATABASE `name` (case kept, since quoted) and return its async SQLAlchemy URL."""
        if not _NAME.fullmatch(name):
            raise ValueError(f"database name {name!r} must match {_NAME.pattern}")

        async def create() -> None:
            import asyncpg  # only tests that start a server need the driver

            conn = await asyncpg.connect(host="127.0.0.1", port=self.port, user=SUPERUSER, database="postgres")
            try:
                await conn.execute(f'CREATE DATABASE "{name}"')
            finally:
                await conn.close()

        asyncio.run(create())
        return self.url_for(name)
