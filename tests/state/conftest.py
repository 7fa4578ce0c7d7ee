"""The state store under test on both databases it supports: a SQLite file, and a real PostgreSQL server
started for this session (Debian's postgresql, installed by `make system-deps`)."""

from __future__ import annotations

import itertools

import pytest

_databases = itertools.count()


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request, tmp_path) -> str:
    """A fresh, empty database of each kind for every test."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/state.db"
    return request.getfixturevalue("postgres").create_database(f"t{next(_databases)}")
