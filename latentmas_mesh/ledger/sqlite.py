"""The default ledger backend: one SQLite file, WAL, synchronous=FULL, STRICT tables, one writer."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar

from latentmas_mesh.ledger._plan import Plan
from latentmas_mesh.ledger._sql import (
    ACCOUNT_KINDS_SQL,
    FUNDING_KIND_SQL,
    RESERVATION_STATUSES_SQL,
    SYSTEM_ACCOUNTS,
    Cursor,
    SqlLedgerStore,
)

BUSY_TIMEOUT_MS = 10_000

# STRICT: an INTEGER column refuses a REAL or TEXT value it cannot convert losslessly, so a
# float or a string can never land in an amount column; the CHECKs forbid the rest.
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS accounts (
    account_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL
        CHECK (kind IN ({ACCOUNT_KINDS_SQL})),
    balance_units INTEGER NOT NULL CHECK (kind = {FUNDING_KIND_SQL} OR balance_units >= 0),
    opened_at_ms INTEGER NOT NULL CHECK (opened_at_ms >= 0)
) STRICT, WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
    event_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    content_sha256 TEXT NOT NULL CHECK (length(content_sha256) = 64),
    status INTEGER NOT NULL CHECK (status >= 0),
    amount_units INTEGER NOT NULL CHECK (amount_units >= 0),
    applied_at_ms INTEGER NOT NULL CHECK (applied_at_ms >= 0),
    parties TEXT NOT NULL DEFAULT ''
) STRICT, WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS journal (
    entry_id INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL REFERENCES events (event_id),
    account_id TEXT NOT NULL REFERENCES accounts (account_id),
    amount_units INTEGER NOT NULL CHECK (amount_units <> 0),
    balance_after_units INTEGER NOT NULL,
    at_ms INTEGER NOT NULL CHECK (at_ms >= 0)
) STRICT;
CREATE INDEX IF NOT EXISTS journal_by_account ON journal (account_id, entry_id);
CREATE INDEX IF NOT EXISTS journal_by_event ON journal (event_id);
CREATE TABLE IF NOT EXISTS reservations (
    reservation_id TEXT PRIMARY KEY REFERENCES events (event_id),
    payer TEXT NOT NULL,
    creator TEXT NOT NULL,
    validators TEXT NOT NULL,
    amount_units INTEGER NOT NULL CHECK (amount_units > 0),
    status INTEGER NOT NULL CHECK (status {RESERVATION_STATUSES_SQL}),
    expires_at_ms INTEGER NOT NULL CHECK (expires_at_ms >= 0)
) STRICT, WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS reservations_due ON reservations (status, expires_at_ms);
"""


def connect(path: Path | str) -> sqlite3.Connection:
    """An autocommit connection (transactions are explicit) with the ledger's durability pragmas."""
    connection = sqlite3.connect(
        str(path), isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1000
    )
    connection.execute("PRAGMA journal_mode = WAL")
    connection.execute("PRAGMA synchronous = FULL")  # fsync the WAL at every commit
    connection.execute("PRAGMA foreign_keys = ON")
    connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    return connection


class SqliteLedgerStore(SqlLedgerStore):
    """The ledger in one SQLite file. `BEGIN IMMEDIATE` takes the single write lock up front, so
    the read-then-write of a batch can never interleave with another writer."""

    lock_suffix: ClassVar[str] = ""
    retryable: ClassVar[tuple[type[BaseException], ...]] = ()
    # The read-back selects a batch's lines by rowid range. Left to itself, SQLite answers its
    # GROUP BY event_id through journal_by_event, scanning the WHOLE journal at every commit
    # (a cost that grows with the ledger); NOT INDEXED keeps it to the batch's own rows.
    batch_journal: ClassVar[str] = "journal NOT INDEXED"

    def __init__(self, path: Path | str, *, now_ms: int = 0) -> None:
        super().__init__()
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._connection = connect(self.path)
        self._connection.executescript(SCHEMA)
        self._add_missing_columns()
        with self._write() as cursor:
            for account_id, kind in SYSTEM_ACCOUNTS:
                self._insert_account(cursor, account_id, kind, now_ms)

    def _add_missing_columns(self) -> None:
        """Ledgers made before status was restricted to an event's parties get the column (their
        old events have none: operators only may read their status)."""
        columns = {row[1] for row in self._connection.execute("PRAGMA table_info(events)")}
        if "parties" not in columns:
            self._connection.execute(
                "ALTER TABLE events ADD COLUMN parties TEXT NOT NULL DEFAULT ''"
            )

    @contextmanager
    def _write(self) -> Iterator[Cursor]:
        cursor = self._connection.cursor()
        cursor.execute("BEGIN IMMEDIATE")
        try:
            yield cursor
        except BaseException:
            cursor.execute("ROLLBACK")
            raise
        cursor.execute("COMMIT")

    @contextmanager
    def _read(self) -> Iterator[Cursor]:
        cursor = self._connection.cursor()
        cursor.execute("BEGIN")  # one snapshot for the whole read
        try:
            yield cursor
        finally:
            cursor.execute("COMMIT")

    def _in(self, column: str, values: Sequence[str]) -> tuple[str, list[Any]]:
        return f"{column} IN ({', '.join('?' * len(values))})", list(values)

    def _journal_mark(self, cursor: Cursor) -> int:
        cursor.execute("SELECT COALESCE(MAX(entry_id), 0) FROM journal")
        row = cursor.fetchone()
        return 0 if row is None else int(row[0])

    def _written(self, plan: Plan, mark: int) -> tuple[str, list[Any]]:
        # One writer (BEGIN IMMEDIATE): every line after the mark is this batch's.
        return "entry_id > ?", [mark]

    def _sql(self, query: str) -> str:
        return query

    def close(self) -> None:
        self._connection.close()
