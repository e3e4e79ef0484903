"""The markets' durable store: content-addressed payloads (blobs.py) and the catalog of
listings, quotes, uses and long-term memories (_sql.py), on SQLite (one host, FTS5) or
PostgreSQL (several nodes, tsvector): `open_catalog(url, blobs)`."""

from latentmas_mesh.catalog._sql import SqlCatalog, query_terms
from latentmas_mesh.catalog._types import (
    ListingFilters,
    ListingRow,
    MemoryRow,
    NewListing,
    Quotas,
    QuoteRow,
    UseRow,
    UseState,
)
from latentmas_mesh.catalog.blobs import BlobStore, digest_of
from latentmas_mesh.catalog.sqlite import SqliteCatalog, fts_query
from latentmas_mesh.catalog.store import open_catalog

__all__ = [
    "BlobStore",
    "ListingFilters",
    "ListingRow",
    "MemoryRow",
    "NewListing",
    "Quotas",
    "QuoteRow",
    "SqlCatalog",
    "SqliteCatalog",
    "UseRow",
    "UseState",
    "digest_of",
    "fts_query",
    "open_catalog",
    "query_terms",
]
