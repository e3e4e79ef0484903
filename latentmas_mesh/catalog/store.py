"""The URL that picks the catalog's backend (as the ledger's does)."""

from __future__ import annotations

from pathlib import Path

from latentmas_mesh.catalog._sql import SqlCatalog
from latentmas_mesh.catalog._types import Quotas
from latentmas_mesh.catalog.blobs import BlobStore


def open_catalog(url: str, blobs: BlobStore, *, quotas: Quotas | None = None) -> SqlCatalog:
    """`sqlite:///relative/catalog.sqlite3`, `sqlite:////absolute/...`, a plain path, or
    `postgresql://user@host:port/db[?...][#schema]` for a market of several nodes."""
    if url.startswith(("postgresql://", "postgres://")):
        from latentmas_mesh.catalog.postgres import PostgresCatalog

        dsn, _, schema = url.partition("#")
        return PostgresCatalog(dsn, blobs, schema=schema or "public", quotas=quotas)
    from latentmas_mesh.catalog.sqlite import SqliteCatalog

    if url.startswith("sqlite:") and not url.startswith("sqlite:///"):
        msg = f"a SQLite URL is sqlite:///relative/path or sqlite:////absolute/path, got {url!r}"
        raise ValueError(msg)
    return SqliteCatalog(Path(url.removeprefix("sqlite:///")), blobs, quotas=quotas)


__all__ = ["open_catalog"]
