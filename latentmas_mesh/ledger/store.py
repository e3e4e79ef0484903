"""The ledger store interface and the URL that picks its backend."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from latentmas_mesh.errors import ProtocolError
from latentmas_mesh.ledger._plan import StoredEvent
from latentmas_mesh.ledger._types import (
    AccountKind,
    AuditReport,
    LedgerEvent,
    Outcome,
    Reservation,
    StatementPage,
)


class LedgerStore(Protocol):
    """What every backend offers. Time is always passed in (`now_ms`); the store reads no clock."""

    def open_account(self, account_id: str, kind: AccountKind, now_ms: int) -> None: ...
    def apply(self, event: LedgerEvent, now_ms: int) -> Outcome: ...
    def apply_batch(
        self, events: Sequence[LedgerEvent], now_ms: int
    ) -> list[Outcome | ProtocolError]: ...
    def expire_due(self, now_ms: int, limit: int = ...) -> list[Outcome]: ...
    def balance_units(self, account_id: str) -> int: ...
    def balances(self) -> dict[str, int]: ...
    def statement(
        self, account_id: str, after_entry_id: int = ..., limit: int = ...
    ) -> StatementPage: ...
    def event_outcome(self, event_id: str) -> Outcome | None: ...
    def event_record(self, event_id: str) -> StoredEvent | None: ...
    def reservation(self, reservation_id: str) -> Reservation | None: ...
    def audit(self) -> AuditReport: ...
    def close(self) -> None: ...


def open_store(url: str, *, now_ms: int = 0) -> LedgerStore:
    """`sqlite:///relative/ledger.db`, `sqlite:////absolute/ledger.db` (as SQLAlchemy writes
    them), a plain path, or `postgresql://user@host:port/db[?...]`.

    A PostgreSQL URL may name the schema with `#schema`, e.g. `postgresql://...#ledger`.
    """
    if url.startswith(("postgresql://", "postgres://")):
        from latentmas_mesh.ledger.postgres import PostgresLedgerStore

        dsn, _, schema = url.partition("#")
        return PostgresLedgerStore(dsn, schema=schema or "public", now_ms=now_ms)
    from latentmas_mesh.ledger.sqlite import SqliteLedgerStore

    if url.startswith("sqlite:") and not url.startswith("sqlite:///"):
        msg = f"a SQLite URL is sqlite:///relative/path or sqlite:////absolute/path, got {url!r}"
        raise ValueError(msg)
    path = url.removeprefix("sqlite:///")
    return SqliteLedgerStore(Path(path), now_ms=now_ms)
