"""Ledger fixtures: a throwaway PostgreSQL cluster for the session, and one store per backend."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from latentmas_mesh.ledger import LedgerStore
from latentmas_mesh.ledger.sqlite import SqliteLedgerStore

_schemas = itertools.count()


StoreFactory = Callable[[], LedgerStore]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """A factory of fresh, empty stores of one backend (each call: a new file or schema)."""
    made: list[LedgerStore] = []
    backend: str = request.param

    def make() -> LedgerStore:
        if backend == "sqlite":
            store: LedgerStore = SqliteLedgerStore(tmp_path / f"ledger-{len(made)}.db")
        else:
            from latentmas_mesh.ledger.postgres import PostgresLedgerStore

            dsn = request.getfixturevalue("postgres_dsn")
            store = PostgresLedgerStore(dsn, schema=f"t{os.getpid()}_{next(_schemas)}")
        made.append(store)
        return store

    yield make
    for store in made:
        if hasattr(store, "schema"):
            store._connection.execute(f"DROP SCHEMA {store.schema} CASCADE")  # type: ignore[attr-defined]
        store.close()


@pytest.fixture
def store(make_store: StoreFactory) -> LedgerStore:
    """One fresh store of the parametrized backend."""
    return make_store()
