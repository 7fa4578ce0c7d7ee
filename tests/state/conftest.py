"""The state store under test on both databases it supports: a SQLite file, and a real PostgreSQL server
started for this session (Debian's postgresql, installed by `make system-deps`)."""

from __future__ import annotations

import itertools

import pytest

from tests.support.postgres import PostgresServer, unavailable_reason

_databases = itertools.count()


@pytest.fixture(scope="session")
def postgres():
    reason = unavailable_reason()
    if reason is not None:  # a missing server is a broken set-up, not a reason to test less
        pytest.fail(f"PostgreSQL is needed for the state store tests ({reason}); run `make system-deps`.")
    with PostgresServer() as server:
        yield server


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request, tmp_path) -> str:
    """A fresh, empty database of each kind for every test."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/state.db"
    return request.getfixturevalue("postgres").create_database(f"t{next(_databases)}")
