"""The multi-node ledger backend: PostgreSQL with BIGINT amounts, row locks and retried races."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar

import psycopg
from psycopg import errors as pg_errors

from latentmas_mesh.ledger._plan import Plan
from latentmas_mesh.ledger._sql import (
    ACCOUNT_KINDS_SQL,
    FUNDING_KIND_SQL,
    RESERVATION_STATUSES_SQL,
    SYSTEM_ACCOUNTS,
    Cursor,
    SqlLedgerStore,
)

_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")

SCHEMA = f"""
CREATE TABLE IF NOT EXISTS accounts (
    account_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL
        CHECK (kind IN ({ACCOUNT_KINDS_SQL})),
    balance_units BIGINT NOT NULL CHECK (kind = {FUNDING_KIND_SQL} OR balance_units >= 0),
    opened_at_ms BIGINT NOT NULL CHECK (opened_at_ms >= 0)
);
CREATE TABLE IF NOT EXISTS events (
    event_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    content_sha256 TEXT NOT NULL CHECK (length(content_sha256) = 64),
    status INTEGER NOT NULL CHECK (status >= 0),
    amount_units BIGINT NOT NULL CHECK (amount_units >= 0),
    applied_at_ms BIGINT NOT NULL CHECK (applied_at_ms >= 0),
    parties TEXT NOT NULL DEFAULT ''
);
-- ledgers made before status was restricted to an event's parties: none (operators only)
ALTER TABLE events ADD COLUMN IF NOT EXISTS parties TEXT NOT NULL DEFAULT '';
CREATE TABLE IF NOT EXISTS journal (
    entry_id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id TEXT NOT NULL REFERENCES events (event_id),
    account_id TEXT NOT NULL REFERENCES accounts (account_id),
    amount_units BIGINT NOT NULL CHECK (amount_units <> 0),
    balance_after_units BIGINT NOT NULL,
    at_ms BIGINT NOT NULL CHECK (at_ms >= 0)
);
CREATE INDEX IF NOT EXISTS journal_by_account ON journal (account_id, entry_id);
CREATE INDEX IF NOT EXISTS journal_by_event ON journal (event_id);
CREATE TABLE IF NOT EXISTS reservations (
    reservation_id TEXT PRIMARY KEY REFERENCES events (event_id),
    payer TEXT NOT NULL,
    creator TEXT NOT NULL,
    validators TEXT NOT NULL,
    amount_units BIGINT NOT NULL CHECK (amount_units > 0),
    status INTEGER NOT NULL CHECK (status {RESERVATION_STATUSES_SQL}),
    expires_at_ms BIGINT NOT NULL CHECK (expires_at_ms >= 0)
);
CREATE INDEX IF NOT EXISTS reservations_due ON reservations (status, expires_at_ms);
"""


class PostgresLedgerStore(SqlLedgerStore):
    """The ledger in a PostgreSQL schema. Several nodes may write: each batch locks the reservation
    rows and then the account rows it reads (sorted, FOR UPDATE) so no two decide on the same
    balance; a lost race on an event id (unique violation) or a deadlock retries the batch."""

    lock_suffix: ClassVar[str] = " FOR UPDATE"
    retryable: ClassVar[tuple[type[BaseException], ...]] = (
        pg_errors.UniqueViolation,
        pg_errors.SerializationFailure,
        pg_errors.DeadlockDetected,
    )

    def __init__(self, dsn: str, *, schema: str = "public", now_ms: int = 0) -> None:
        super().__init__()
        if not _SCHEMA_NAME.fullmatch(schema):
            msg = f"schema must match {_SCHEMA_NAME.pattern}, got {schema!r}"
            raise ValueError(msg)
        self.schema = schema
        self._connection = psycopg.connect(dsn, autocommit=True)
        self._connection.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        self._connection.execute(f"SET search_path TO {schema}")
        with self._connection.transaction():
            self._connection.execute("SELECT pg_advisory_xact_lock(7361)")  # one creator at once
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    self._connection.execute(statement)
        with self._write() as cursor:
            for account_id, kind in SYSTEM_ACCOUNTS:
                self._insert_account(cursor, account_id, kind, now_ms)

    @contextmanager
    def _write(self) -> Iterator[Cursor]:
        with self._connection.transaction(), self._connection.cursor() as cursor:
            yield cursor

    @contextmanager
    def _read(self) -> Iterator[Cursor]:
        with self._connection.transaction(), self._connection.cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield cursor

    def _in(self, column: str, values: Sequence[str]) -> tuple[str, list[Any]]:
        return f"{column} = ANY(%s)", [list(values)]

    def _journal_mark(self, cursor: Cursor) -> int:
        return 0  # identities of concurrent writers interleave: select by event id instead

    def _written(self, plan: Plan, mark: int) -> tuple[str, list[Any]]:
        return self._in("event_id", sorted({entry[0] for entry in plan.entries}))

    def _sql(self, query: str) -> str:
        return query.replace("?", "%s")

    def close(self) -> None:
        self._connection.close()
