"""The catalog in one SQLite file (one host): FTS5 for text, WAL with synchronous=FULL, and
`secure_delete`, so a forgotten memory's text is overwritten in the file, not only unlinked."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

from latentmas_mesh.catalog._sql import Db, SqlCatalog, query_terms
from latentmas_mesh.catalog._types import NewListing, Quotas
from latentmas_mesh.catalog.blobs import BlobStore

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS listings (
    seq INTEGER PRIMARY KEY,
    listing_id TEXT NOT NULL UNIQUE,
    market TEXT NOT NULL,
    creator TEXT NOT NULL,
    title TEXT NOT NULL,
    description TEXT NOT NULL,
    tags TEXT NOT NULL,
    source_model TEXT NOT NULL,
    tokens INTEGER NOT NULL,
    payload_digest TEXT NOT NULL,
    payload_bytes INTEGER NOT NULL,
    embedding BLOB,
    embedding_dim INTEGER,
    fingerprint BLOB,
    fingerprint_dim INTEGER,
    similar_count INTEGER NOT NULL,
    price_units INTEGER NOT NULL,
    quality REAL NOT NULL DEFAULT 0,
    quality_sum REAL NOT NULL DEFAULT 0,
    attestations INTEGER NOT NULL DEFAULT 0,
    uses INTEGER NOT NULL DEFAULT 0,
    created_ms INTEGER NOT NULL,
    withdrawn INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS listings_market ON listings (market, withdrawn, created_ms);
CREATE INDEX IF NOT EXISTS listings_creator ON listings (creator);
CREATE INDEX IF NOT EXISTS listings_payload ON listings (payload_digest);
CREATE VIRTUAL TABLE IF NOT EXISTS listings_fts USING fts5 (
    title, description, tags, content='listings', content_rowid='seq',
    tokenize='porter unicode61 remove_diacritics 2'
);
CREATE TABLE IF NOT EXISTS creators (
    creator TEXT PRIMARY KEY,
    quality_sum REAL NOT NULL DEFAULT 0,
    attestations INTEGER NOT NULL DEFAULT 0,
    uses INTEGER NOT NULL DEFAULT 0,
    reputation REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS attestations (
    listing_id TEXT NOT NULL,
    validator TEXT NOT NULL,
    model TEXT NOT NULL,
    quality REAL NOT NULL,
    method TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    PRIMARY KEY (listing_id, validator)
);
CREATE TABLE IF NOT EXISTS quotes (
    quote_id TEXT PRIMARY KEY,
    listing_id TEXT NOT NULL,
    buyer TEXT NOT NULL,
    price_units INTEGER NOT NULL,
    creator TEXT NOT NULL,
    validators TEXT NOT NULL,
    expires_ms INTEGER NOT NULL,
    reply_json TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS uses (
    buyer TEXT NOT NULL,
    request_id TEXT NOT NULL,
    listing_id TEXT NOT NULL,
    model TEXT NOT NULL,
    reservation_id TEXT,
    charged_units INTEGER NOT NULL,
    delivery_digest TEXT NOT NULL,
    state TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    PRIMARY KEY (buyer, request_id)
);
CREATE INDEX IF NOT EXISTS uses_state ON uses (state);
CREATE INDEX IF NOT EXISTS uses_delivery ON uses (delivery_digest);
CREATE TABLE IF NOT EXISTS purchases (
    buyer TEXT NOT NULL,
    listing_id TEXT NOT NULL,
    request_id TEXT NOT NULL,
    PRIMARY KEY (buyer, listing_id)
);
CREATE TABLE IF NOT EXISTS memories (
    seq INTEGER PRIMARY KEY,
    memory_id TEXT NOT NULL UNIQUE,
    owner TEXT NOT NULL,
    text TEXT NOT NULL,
    tags TEXT NOT NULL,
    embedding BLOB,
    embedding_dim INTEGER,
    payload_digest TEXT,
    payload_bytes INTEGER NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS memories_owner ON memories (owner, created_ms);
CREATE INDEX IF NOT EXISTS memories_payload ON memories (payload_digest);
CREATE VIRTUAL TABLE IF NOT EXISTS memories_fts USING fts5 (
    text, tags, content='memories', content_rowid='seq',
    tokenize='porter unicode61 remove_diacritics 2'
);
"""


def fts_query(text: str) -> str:
    """A user's words as an FTS5 query: every word must match (stemmed: "contracts" finds
    "contract"), each quoted, so no input can be an FTS5 syntax error."""
    return " ".join(f'"{term}"' for term in query_terms(text))


class SqliteCatalog(SqlCatalog):
    """The catalog in `path`, payloads in `blobs`."""

    def __init__(self, path: Path, blobs: BlobStore, *, quotas: Quotas | None = None) -> None:
        super().__init__(blobs, quotas)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._lock = threading.Lock()
        for pragma in ("journal_mode=WAL", "synchronous=FULL", "secure_delete=ON",
                       "foreign_keys=ON", "busy_timeout=10000"):  # fmt: skip
            self._db.execute(f"PRAGMA {pragma}")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[Db]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _read(self, sql: str, parameters: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, parameters).fetchall()

    def _index_listing(self, db: Db, seq: int, listing: NewListing) -> None:
        db.execute(
            "INSERT INTO listings_fts (rowid, title, description, tags) VALUES (?, ?, ?, ?)",
            (seq, listing.title, listing.description, " ".join(listing.tags)),
        )

    def _index_memory(self, db: Db, seq: int, text: str, tags: str) -> None:
        db.execute("INSERT INTO memories_fts (rowid, text, tags) VALUES (?, ?, ?)",
                   (seq, text, tags))  # fmt: skip

    def _unindex_memory(self, db: Db, seq: int, text: str, tags: str) -> None:
        db.execute(
            "INSERT INTO memories_fts (memories_fts, rowid, text, tags) VALUES ('delete', ?, ?, ?)",
            (seq, text, tags),
        )

    def _text_query(self, text: str) -> str:
        return fts_query(text)

    def _listing_hits(self) -> str:
        # FTS5's own ranked scan (`rank` is its BM25, lower is better), in C
        return (
            "SELECT rowid AS seq, -rank AS relevance FROM listings_fts"
            " WHERE listings_fts MATCH ? ORDER BY rank LIMIT ?"
        )

    def _memory_hits(self) -> str:
        return (
            "SELECT memories_fts.rowid AS seq, -memories_fts.rank AS relevance FROM memories_fts"
            " JOIN memories m ON m.seq = memories_fts.rowid"
            " WHERE memories_fts MATCH ? AND m.owner = ?"
        )


__all__ = ["SqliteCatalog", "fts_query"]
