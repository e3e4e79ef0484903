"""The markets' durable store: content-addressed payloads (blobs.py) and the catalog of
listings, quotes, uses and long-term memories (SQLite; FTS5 for text search)."""

from latentmas_mesh.catalog._types import (
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

__all__ = [
    "BlobStore",
    "ListingRow",
    "MemoryRow",
    "NewListing",
    "Quotas",
    "QuoteRow",
    "SqliteCatalog",
    "UseRow",
    "UseState",
    "digest_of",
    "fts_query",
]
