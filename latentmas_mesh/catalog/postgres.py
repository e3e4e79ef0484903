"""The catalog in a PostgreSQL schema, for markets of several nodes: the same logic as SQLite
(`_sql.py`), text search by `tsvector` columns the engine keeps (GIN index, English stemming,
ranked by `ts_rank_cd`), row locks where two nodes' writers could race.

A forgotten memory's row is deleted at once; its dead tuple is reclaimed by (auto)vacuum, as
PostgreSQL keeps no in-place overwrite like SQLite's secure_delete."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar, Final

import psycopg

from latentmas_mesh.catalog._sql import Cursor, Db, SqlCatalog, query_terms, tables
from latentmas_mesh.catalog._types import NewListing, Quotas
from latentmas_mesh.catalog.blobs import BlobStore

_SCHEMA_NAME: Final = re.compile(r"[a-z_][a-z0-9_]{0,62}")
SCHEMA: Final = tables(
    serial="BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY", int_="BIGINT",
    real="DOUBLE PRECISION", blob="BYTEA",
    listing_text=(
        ",\n    document tsvector GENERATED ALWAYS AS ("
        "to_tsvector('english', title || ' ' || description || ' ' || tags)) STORED"
    ),
    memory_text=(
        ",\n    document tsvector GENERATED ALWAYS AS ("
        "to_tsvector('english', text || ' ' || tags)) STORED"
    ),
) + """
CREATE INDEX IF NOT EXISTS listings_document ON listings USING GIN (document);
CREATE INDEX IF NOT EXISTS memories_document ON memories USING GIN (document)
"""  # fmt: skip


class _Transaction:
    """A psycopg cursor that takes `?` placeholders (the SQL of `_sql.py`)."""

    def __init__(self, cursor: psycopg.Cursor[Any]) -> None:
        self.cursor = cursor

    def execute(self, sql: str, parameters: Sequence[object] = ()) -> Cursor:
        return self.cursor.execute(sql.replace("?", "%s"), parameters)


class PostgresCatalog(SqlCatalog):
    """The catalog in schema `schema` of the database `dsn` names, payloads in `blobs` (a
    directory every node shares, or each node its own for the payloads it stores)."""

    lock_suffix: ClassVar[str] = " FOR UPDATE"

    def __init__(
        self, dsn: str, blobs: BlobStore, *, schema: str = "public", quotas: Quotas | None = None
    ) -> None:
        super().__init__(blobs, quotas)
        if not _SCHEMA_NAME.fullmatch(schema):
            raise ValueError(f"schema must match {_SCHEMA_NAME.pattern}, got {schema!r}")
        self._connection = psycopg.connect(dsn, autocommit=True)
        self._connection.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        self._connection.execute(f"SET search_path TO {schema}")
        self._lock = threading.Lock()
        with self._connection.transaction():
            self._connection.execute("SELECT pg_advisory_xact_lock(7362)")  # one creator at once
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    self._connection.execute(statement)

    def close(self) -> None:
        self._connection.close()

    @contextmanager
    def _transaction(self) -> Iterator[Db]:
        with self._lock, self._connection.transaction(), self._connection.cursor() as cursor:
            yield _Transaction(cursor)

    def _read(self, sql: str, parameters: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        with self._lock, self._connection.cursor() as cursor:
            return cursor.execute(sql.replace("?", "%s"), parameters).fetchall()

    def _index_listing(self, db: Db, seq: int, listing: NewListing) -> None:
        """Nothing to do: the `document` column is generated from the row, the GIN index kept."""

    def _index_memory(self, db: Db, seq: int, text: str, tags: str) -> None:
        """Nothing to do (a generated column, as for listings)."""

    def _unindex_memory(self, db: Db, seq: int, text: str, tags: str) -> None:
        """Nothing to do: deleting the row drops its index entries."""

    def _text_query(self, text: str) -> str:
        return " & ".join(query_terms(text))  # words only: to_tsquery cannot fail on them

    def _listing_hits(self) -> str:
        return (
            "SELECT seq, ts_rank_cd(document, query) AS relevance"
            " FROM listings, to_tsquery('english', ?) query WHERE document @@ query"
            " ORDER BY relevance DESC LIMIT ?"
        )

    def _memory_hits(self) -> str:
        return (
            "SELECT seq, ts_rank_cd(document, query) AS relevance"
            " FROM memories, to_tsquery('english', ?) query WHERE document @@ query AND owner = ?"
        )


__all__ = ["PostgresCatalog"]
