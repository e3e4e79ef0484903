"""The emitters' durable outbox: events spooled to disk and re-sent until the ledger answers."""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from pydantic import TypeAdapter

from latentmas_mesh.errors import Conflict, ErrorCode, InvalidRequest, ProtocolError
from latentmas_mesh.protocol.ledger import (
    EVENTS_PER_REQUEST_MAX,
    EventResult,
    LedgerWireEvent,
)

Sender = Callable[[Sequence[LedgerWireEvent]], Sequence[EventResult]]
"""Delivers a batch to the ledger and returns one result per event (e.g. LedgerClient.send_events).
It raises on transport failure (Timeout, ServiceUnavailable, ...): the batch is then re-sent."""

RETRYABLE_CODES: Final = frozenset(
    {ErrorCode.TIMEOUT, ErrorCode.SERVICE_UNAVAILABLE, ErrorCode.INTERNAL}
)
BACKOFF_MS_MIN: Final = 20
BACKOFF_MS_MAX: Final = 1_000
DELIVERY_BATCH_MAX: Final = 256
"""Events per delivery request unless told otherwise (the protocol allows up to 1,024)."""

_EVENT: TypeAdapter[LedgerWireEvent] = TypeAdapter(LedgerWireEvent)

SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    body TEXT NOT NULL,
    delivered INTEGER NOT NULL DEFAULT 0 CHECK (delivered IN (0, 1)),
    attempts INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    result TEXT
) STRICT;
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox (delivered, seq);
"""


@dataclass(frozen=True, slots=True)
class DeliveryRound:
    """What one `deliver_once` did: events sent, answers made final, events left to retry."""

    sent: int
    acknowledged: int
    retry: int


class Outbox:
    """A SQLite spool (WAL, synchronous=FULL: `add` returns only once the event is on disk).

    An emitter (an alignment worker, a market, an agent's SDK) calls `add` BEFORE it acts on the
    event (before delivering the paid-for work), so a crash after `add` can only lead to a second
    delivery, which the ledger answers from its record: at least once here, exactly once there.

    Thread-safe. Event ids are the idempotency keys: adding the same event twice is a no-op,
    adding another event under a spooled id raises Conflict.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode = WAL")
        self._db.execute("PRAGMA synchronous = FULL")
        self._db.executescript(SCHEMA)

    def add(self, *events: LedgerWireEvent) -> int:
        """Spool events durably, in order, in one transaction; returns how many were new."""
        rows = [(e.event_id, e.model_dump_json()) for e in events]
        added = 0
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for event_id, body in rows:
                    found = self._db.execute(
                        "SELECT body FROM outbox WHERE event_id = ?", (event_id,)
                    ).fetchone()
                    if found is None:
                        self._db.execute(
                            "INSERT INTO outbox (event_id, body) VALUES (?, ?)", (event_id, body)
                        )
                        added += 1
                    elif found[0] != body:
                        msg = f"event id {event_id!r} is already spooled with other content"
                        raise Conflict(msg, details={"event_id": event_id})
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        return added

    def pending(self, limit: int = 256) -> list[LedgerWireEvent]:
        """The oldest events the ledger has not answered yet."""
        with self._lock:
            rows = self._db.execute(
                "SELECT body FROM outbox WHERE delivered = 0 ORDER BY seq LIMIT ?", (limit,)
            ).fetchall()
        return [_EVENT.validate_json(row[0]) for row in rows]

    def pending_count(self) -> int:
        with self._lock:
            row = self._db.execute("SELECT COUNT(*) FROM outbox WHERE delivered = 0").fetchone()
        return int(row[0])

    def spooled(self, event_id: str) -> LedgerWireEvent | None:
        """The event spooled under `event_id` (delivered or not), or None."""
        with self._lock:
            row = self._db.execute(
                "SELECT body FROM outbox WHERE event_id = ?", (event_id,)
            ).fetchone()
        return None if row is None else _EVENT.validate_json(row[0])

    def result(self, event_id: str) -> EventResult | None:
        """The ledger's final answer to a spooled event, once it came."""
        with self._lock:
            row = self._db.execute(
                "SELECT result FROM outbox WHERE event_id = ? AND delivered = 1", (event_id,)
            ).fetchone()
        return None if row is None else EventResult.model_validate_json(row[0])

    def acknowledge(self, results: Sequence[EventResult]) -> int:
        """Record final answers (applied, refused, conflict...); retryable errors stay pending."""
        final = [r for r in results if not is_retryable(r)]
        rows = [(r.model_dump_json(), r.event_id) for r in final]
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany(
                    "UPDATE outbox SET delivered = 1, result = ?, attempts = attempts + 1"
                    " WHERE event_id = ? AND delivered = 0",
                    rows,
                )
            except BaseException:  # left open, the transaction would hold the write lock forever
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        return len(final)

    def deliver_once(self, send: Sender, batch_max: int = DELIVERY_BATCH_MAX) -> DeliveryRound:
        """Send the oldest pending batch; record every final answer. Raises what `send` raises."""
        batch = self.pending(max(1, min(batch_max, EVENTS_PER_REQUEST_MAX)))
        if not batch:
            return DeliveryRound(0, 0, 0)
        results = list(send(batch))
        if [r.event_id for r in results] != [e.event_id for e in batch]:
            msg = "the ledger answered a different list of events than was sent"
            raise InvalidRequest(msg, details={"sent": len(batch), "answered": len(results)})
        acknowledged = self.acknowledge(results)
        return DeliveryRound(len(batch), acknowledged, len(batch) - acknowledged)

    def drain(
        self,
        send: Sender,
        *,
        batch_max: int = DELIVERY_BATCH_MAX,
        deadline_s: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> int:
        """Deliver until nothing is pending or `deadline_s` passes; returns events still pending.

        Transport failures and retryable answers back off (doubling, BACKOFF_MS_MIN..MAX) and
        re-send the same events: the ledger's idempotency makes that safe.
        """
        give_up_at = time.monotonic() + deadline_s
        backoff_ms = BACKOFF_MS_MIN
        while time.monotonic() < give_up_at:
            try:
                round_ = self.deliver_once(send, batch_max)
            except ProtocolError as error:
                if error.code not in RETRYABLE_CODES:
                    raise
                round_ = DeliveryRound(1, 0, 1)
            if round_.sent == 0:
                return 0
            if round_.retry:
                sleep(backoff_ms / 1000)
                backoff_ms = min(backoff_ms * 2, BACKOFF_MS_MAX)
            else:
                backoff_ms = BACKOFF_MS_MIN
        return self.pending_count()

    def replayed_count(self) -> int:
        """Final answers the ledger gave from its record (an earlier delivery had applied them)."""
        with self._lock:
            rows = self._db.execute("SELECT result FROM outbox WHERE delivered = 1").fetchall()
        return sum(1 for (raw,) in rows if json.loads(raw).get("replayed"))

    def final_counts(self) -> dict[str, int]:
        """Final answers counted by result: `status_<n>` for recorded outcomes, else the code."""
        with self._lock:
            rows = self._db.execute("SELECT result FROM outbox WHERE delivered = 1").fetchall()
        counts: dict[str, int] = {}
        for (raw,) in rows:
            result = json.loads(raw)
            error = result.get("error")
            key = error["code"] if error else f"status_{result['status']}"
            counts[key] = counts.get(key, 0) + 1
        return counts

    def close(self) -> None:
        with self._lock:
            self._db.close()


def is_retryable(result: EventResult) -> bool:
    """An answer that is not final: the ledger failed inside, or was not reached."""
    return result.error is not None and result.error.code in RETRYABLE_CODES
