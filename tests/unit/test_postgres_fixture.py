"""The throwaway PostgreSQL helper starts a real server that asyncpg can query."""

from __future__ import annotations

import asyncio

import asyncpg

from tests.support.postgres import PostgresServer, require_postgres


def test_server_creates_a_database_asyncpg_can_query() -> None:
    require_postgres()
    with PostgresServer() as pg:
        url = pg.create_database("fixture_check")
        assert url == f"postgresql+asyncpg://postgres@127.0.0.1:{pg.port}/fixture_check"
        root = pg.root

        async def query() -> tuple[int, str]:
            # asyncpg takes the plain libpq form of the SQLAlchemy URL.
            conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
            try:
                return await conn.fetchval("select 1"), await conn.fetchval("select current_database()")
            finally:
                await conn.close()

        assert asyncio.run(query()) == (1, "fixture_check")
    assert root is not None and not root.exists()  # the data directory goes with the server
