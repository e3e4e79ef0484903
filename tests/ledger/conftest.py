"""Ledger fixtures: a throwaway PostgreSQL cluster for the session, and one store per backend."""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from latentmas_mesh.ledger import LedgerStore
from latentmas_mesh.ledger.sqlite import SqliteLedgerStore

PG_USER = "postgres"
START_ATTEMPTS_MAX = 3
_schemas = itertools.count()


def _pg_bin_dir() -> Path:
    """The newest /usr/lib/postgresql/*/bin holding initdb and pg_ctl, or the PATH's."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name)
    )
    for directory in reversed(candidates):
        if (Path(directory) / "initdb").exists() and (Path(directory) / "pg_ctl").exists():
            return Path(directory)
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(initdb).parent
    pytest.fail(
        "PostgreSQL server binaries (initdb, pg_ctl) not found in /usr/lib/postgresql/*/bin or "
        "on PATH: run `make postgres` (installs the Debian package `postgresql`)",
        pytrace=False,
    )


def _as_user() -> list[str]:
    """initdb refuses root: run the cluster as the `postgres` system user when we are root."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam(PG_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", PG_USER], check=True)
    return ["runuser", "-u", PG_USER, "--"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """Start a PostgreSQL cluster on a free loopback port in a temp dir; stop and delete it."""
    bin_dir, prefix = _pg_bin_dir(), _as_user()
    root = Path(tempfile.mkdtemp(prefix="latentmas-pg-"))
    if prefix:
        shutil.chown(root, user=PG_USER)
    data = root / "data"
    subprocess.run(
        [*prefix, str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust",
         "-E", "UTF8", "--no-sync"],
        check=True, capture_output=True,
    )
    port = 0
    for attempt in range(START_ATTEMPTS_MAX):
        port = _free_port()
        options = (
            f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c shared_buffers=32MB"
            " -c max_connections=40 -c dynamic_shared_memory_type=mmap"
        )
        started = subprocess.run(
            [*prefix, str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options,
             "-l", str(root / "server.log"), "-w", "-t", "60", "start"],
            capture_output=True, text=True, check=False,
        )
        if started.returncode == 0:
            break
        if attempt == START_ATTEMPTS_MAX - 1:
            log = (root / "server.log").read_text() if (root / "server.log").exists() else ""
            pytest.fail(f"pg_ctl start failed: {started.stderr}\n{log}", pytrace=False)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*prefix, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True, check=False,
        )
        shutil.rmtree(root, ignore_errors=True)


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
