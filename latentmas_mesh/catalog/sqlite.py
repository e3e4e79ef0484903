"""The catalog in one SQLite file (one host): FTS5 for text, WAL with synchronous=FULL, and
`secure_delete`, so a forgotten memory's text is overwritten in the file, not only unlinked."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

from latentmas_mesh.catalog._sql import Db, SqlCatalog, query_terms, tables
from latentmas_mesh.catalog._types import NewListing, Quotas
from latentmas_mesh.catalog.blobs import BlobStore

SCHEMA: Final = (
    tables(serial="INTEGER PRIMARY KEY", int_="INTEGER", real="REAL", blob="BLOB")
    + """
CREATE VIRTUAL TABLE IF NOT EXISTS listings_fts USING fts5 (
    title, description, tags, content='listings', content_rowid='seq',
    tokenize='porter unicode61 remove_diacritics 2'
);
CREATE VIRTUAL TABLE IF NOT EXISTS memories_fts USING fts5 (
    text, tags, content='memories', content_rowid='seq',
    tokenize='porter unicode61 remove_diacritics 2'
);
"""
)


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
