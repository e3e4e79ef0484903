"""The SQL ledger both backends share: snapshot, plan, write, read back, in one transaction."""

# S608: the only text formatted into queries is placeholders, fixed suffixes and the ledger's own
# enum values and account names (rendered by `sql_literal`), never a caller's value.
# ruff: noqa: S608

from __future__ import annotations

import json
import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from operator import itemgetter
from typing import Any, ClassVar, Protocol

from latentmas_mesh.errors import InternalError, InvalidRequest, PayloadTooLarge, ProtocolError
from latentmas_mesh.ledger._plan import (
    Plan,
    Snapshot,
    StoredEvent,
    accounts_needed,
    plan_batch,
    reservation_ids_needed,
)
from latentmas_mesh.ledger._types import (
    BATCH_EVENTS_MAX,
    ESCROW_ACCOUNT,
    FUNDING_ACCOUNT,
    PLATFORM_ACCOUNT,
    STATEMENT_ENTRIES_MAX,
    AccountKind,
    AnyEvent,
    AuditReport,
    Entry,
    EventKind,
    EventStatus,
    Expire,
    LedgerEvent,
    Outcome,
    Reservation,
    ReservationStatus,
    StatementPage,
    expire_event_id,
)

RETRIES_MAX = 5
PARTY_SEPARATOR = " "  # identities are printable ASCII without spaces: the join is unambiguous
SYSTEM_ACCOUNTS = (
    (PLATFORM_ACCOUNT, AccountKind.PLATFORM),
    (FUNDING_ACCOUNT, AccountKind.FUNDING),
    (ESCROW_ACCOUNT, AccountKind.ESCROW),
)


_SQL_NAME = re.compile(r"[a-z_]+")


def sql_literal(value: str | int) -> str:
    """An enum value or fixed account name as SQL text, so queries name the enums in _types.py
    instead of copying their values (a renamed kind or status then changes the SQL with it)."""
    if isinstance(value, int):
        return str(int(value))  # int(): an IntEnum member renders as its number, never its name
    if not _SQL_NAME.fullmatch(value):  # nothing that could need escaping ever reaches a query
        raise InternalError(f"not a plain SQL name: {value!r}")
    return f"'{value}'"


PENDING_SQL = sql_literal(ReservationStatus.PENDING)
FUNDING_KIND_SQL = sql_literal(AccountKind.FUNDING)
ESCROW_ACCOUNT_SQL = sql_literal(ESCROW_ACCOUNT)
ACCOUNT_KINDS_SQL = ", ".join(map(sql_literal, AccountKind))
RESERVATION_STATUSES_SQL = (  # contiguous: statuses are appended, never renumbered
    f"BETWEEN {sql_literal(min(ReservationStatus))} AND {sql_literal(max(ReservationStatus))}"
)
"""SQL fragments for the schemas' CHECKs and the queries, rendered once at import."""

Row = tuple[Any, ...]


class Cursor(Protocol):
    """The part of a DB-API cursor the store uses (sqlite3 and psycopg both provide it)."""

    def execute(self, query: str, params: Sequence[object] = ..., /) -> object: ...
    def executemany(self, query: str, params_seq: Iterable[Sequence[object]], /) -> object: ...
    def fetchall(self) -> list[Row]: ...
    def fetchone(self) -> Row | None: ...


class SqlLedgerStore(ABC):
    """A durable double-entry ledger over one SQL connection. Thread-safe (one lock).

    Writes happen only in `_write()` transactions: SQLite's BEGIN IMMEDIATE (one writer) or a
    PostgreSQL transaction that locks the reservation and account rows it reads (FOR UPDATE).
    """

    lock_suffix: ClassVar[str] = ""
    retryable: ClassVar[tuple[type[BaseException], ...]] = ()
    batch_journal: ClassVar[str] = "journal"
    """The journal as the read-back names it (a backend may add a planner hint)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()

    # --- backend hooks -------------------------------------------------------------------------
    @abstractmethod
    def _write(self) -> AbstractContextManager[Cursor]:
        """A write transaction: commits on normal exit, rolls back on an exception."""

    @abstractmethod
    def _read(self) -> AbstractContextManager[Cursor]:
        """A cursor for reads (a consistent snapshot where the engine offers one)."""

    @abstractmethod
    def _in(self, column: str, values: Sequence[str]) -> tuple[str, list[Any]]:
        """`column IN (...)` as SQL text and parameters, in the backend's placeholder style."""

    @abstractmethod
    def _journal_mark(self, cursor: Cursor) -> int:
        """Taken before a batch writes its journal lines; `_written` uses it to find them."""

    @abstractmethod
    def _written(self, plan: Plan, mark: int) -> tuple[str, list[Any]]:
        """A WHERE clause (and parameters) selecting exactly the journal lines of `plan`."""

    @abstractmethod
    def _sql(self, query: str) -> str:
        """Rewrite `?` placeholders for the backend."""

    @abstractmethod
    def close(self) -> None:
        """Close the connection."""

    # --- writes --------------------------------------------------------------------------------
    def open_account(self, account_id: str, kind: AccountKind, now_ms: int) -> None:
        """Create an account at zero if missing; Conflict if it exists with another kind."""
        with self._lock, self._write() as cursor:
            self._insert_account(cursor, account_id, kind, now_ms)

    def apply(self, event: LedgerEvent, now_ms: int) -> Outcome:
        """Apply one event; its ProtocolError (bad input, conflict, unauthorized) is raised."""
        (result,) = self.apply_batch([event], now_ms)
        if isinstance(result, ProtocolError):
            raise result
        return result

    def apply_batch(
        self, events: Sequence[LedgerEvent], now_ms: int
    ) -> list[Outcome | ProtocolError]:
        """Apply events in order in one transaction (group commit: one fsync for the batch).

        One result per event: an Outcome (recorded, replayed on re-delivery) or the ProtocolError
        that rejected it (nothing recorded). A broken invariant raises InternalError and commits
        nothing.
        """
        if len(events) > BATCH_EVENTS_MAX:
            msg = f"at most {BATCH_EVENTS_MAX} events per batch, got {len(events)}"
            raise PayloadTooLarge(msg, details={"events_max": BATCH_EVENTS_MAX})
        if not events:
            return []
        with self._lock:
            return self._with_retries(lambda cursor: self._run_batch(cursor, events, now_ms))

    def expire_due(self, now_ms: int, limit: int = BATCH_EVENTS_MAX) -> list[Outcome]:
        """Expire pending reservations whose deadline has passed; funds go back to their payers."""
        limit = max(1, min(limit, BATCH_EVENTS_MAX))

        def sweep(cursor: Cursor) -> list[Outcome | ProtocolError]:
            cursor.execute(
                self._sql(
                    f"SELECT reservation_id FROM reservations WHERE status = {PENDING_SQL}"
                    " AND expires_at_ms <= ? ORDER BY expires_at_ms, reservation_id LIMIT ?"
                ),
                (now_ms, limit),
            )
            due = [Expire(row[0]) for row in cursor.fetchall()]
            return self._run_batch(cursor, due, now_ms) if due else []

        with self._lock:
            if not self._any_due(now_ms):  # the usual case: no write transaction at all
                return []
            results = self._with_retries(sweep)
        return [r for r in results if isinstance(r, Outcome)]

    def _any_due(self, now_ms: int) -> bool:
        with self._read() as cursor:
            cursor.execute(
                self._sql(
                    f"SELECT 1 FROM reservations WHERE status = {PENDING_SQL}"
                    " AND expires_at_ms <= ? LIMIT 1"
                ),
                (now_ms,),
            )
            return cursor.fetchone() is not None

    def _with_retries(
        self, work: Callable[[Cursor], list[Outcome | ProtocolError]]
    ) -> list[Outcome | ProtocolError]:
        for attempt in range(RETRIES_MAX):
            try:
                with self._write() as cursor:
                    results: list[Outcome | ProtocolError] = work(cursor)
                return results
            except self.retryable:  # another node won a race on the same rows: decide again
                if attempt == RETRIES_MAX - 1:
                    raise
        raise InternalError("unreachable: retries exhausted")  # pragma: no cover

    def _run_batch(
        self, cursor: Cursor, events: Sequence[AnyEvent], now_ms: int
    ) -> list[Outcome | ProtocolError]:
        snapshot = self._snapshot(cursor, events)
        plan = plan_batch(events, snapshot, now_ms)
        mark = self._journal_mark(cursor)
        self._write_plan(cursor, plan, now_ms)
        self._read_back(cursor, plan, mark)
        return plan.results

    def _snapshot(self, cursor: Cursor, events: Sequence[AnyEvent]) -> Snapshot:
        reservation_ids = sorted(reservation_ids_needed(events))
        reservations = self._fetch_reservations(cursor, reservation_ids)
        event_ids = [e.event_id for e in events] + [expire_event_id(r) for r in reservation_ids]
        where, params = self._in("event_id", event_ids)
        cursor.execute(
            self._sql(
                "SELECT event_id, kind, content_sha256, status, amount_units, applied_at_ms"
                f" FROM events WHERE {where}"
            ),
            params,
        )
        known = {
            row[0]: StoredEvent(row[0], EventKind(row[1]), row[2], EventStatus(row[3]), *row[4:])
            for row in cursor.fetchall()
        }
        where, params = self._in("account_id", sorted(accounts_needed(events, reservations)))
        cursor.execute(
            self._sql(
                f"SELECT account_id, kind, balance_units FROM accounts WHERE {where}"
                f" ORDER BY account_id{self.lock_suffix}"
            ),
            params,
        )
        accounts = {row[0]: (AccountKind(row[1]), row[2]) for row in cursor.fetchall()}
        return Snapshot(known, reservations, accounts)

    def _fetch_reservations(self, cursor: Cursor, ids: list[str]) -> dict[str, Reservation]:
        if not ids:
            return {}
        where, params = self._in("reservation_id", ids)
        cursor.execute(
            self._sql(
                "SELECT reservation_id, payer, creator, validators, amount_units, status,"
                f" expires_at_ms FROM reservations WHERE {where}"
                f" ORDER BY reservation_id{self.lock_suffix}"
            ),
            params,
        )
        return {row[0]: _reservation(row) for row in cursor.fetchall()}

    def _write_plan(self, cursor: Cursor, plan: Plan, now_ms: int) -> None:
        for account_id, kind in plan.opened:
            self._insert_account(cursor, account_id, kind, now_ms)
        cursor.executemany(
            self._sql(
                "INSERT INTO events (event_id, kind, content_sha256, status, amount_units,"
                " applied_at_ms, parties) VALUES (?, ?, ?, ?, ?, ?, ?)"
            ),
            [
                (
                    r.event_id,
                    r.kind.value,
                    r.content_sha256,
                    int(r.status),
                    r.amount_units,
                    r.applied_at_ms,
                    PARTY_SEPARATOR.join(r.parties),
                )
                for r in plan.event_rows
            ],
        )
        if plan.reservations_new:
            cursor.executemany(
                self._sql(
                    "INSERT INTO reservations (reservation_id, payer, creator, validators,"
                    " amount_units, status, expires_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?)"
                ),
                [
                    (
                        r.reservation_id,
                        r.payer,
                        r.creator,
                        json.dumps(list(r.validators)),
                        r.amount_units,
                        int(r.status),
                        r.expires_at_ms,
                    )
                    for r in plan.reservations_new.values()
                ],
            )
        if plan.reservations_closed:
            cursor.executemany(
                self._sql("UPDATE reservations SET status = ? WHERE reservation_id = ?"),
                [(int(status), rid) for rid, (status, _) in plan.reservations_closed.items()],
            )
        if plan.entries:
            cursor.executemany(
                self._sql(
                    "INSERT INTO journal (event_id, account_id, amount_units, balance_after_units,"
                    " at_ms) VALUES (?, ?, ?, ?, ?)"
                ),
                plan.entries,
            )
            cursor.executemany(
                self._sql("UPDATE accounts SET balance_units = ? WHERE account_id = ?"),
                [(units, account) for account, units in plan.balances.items()],
            )

    def _read_back(self, cursor: Cursor, plan: Plan, mark: int) -> None:
        """Check what was written against the plan, inside the transaction, before it commits:
        as many journal lines as planned, the same total of absolute amounts, every event of the
        batch summing to zero, and every touched balance equal to the planned one."""
        if plan.entries:
            where, params = self._written(plan, mark)
            cursor.execute(
                self._sql(
                    f"SELECT COUNT(*), SUM(ABS(amount_units)) FROM {self.batch_journal}"
                    f" WHERE {where}"
                ),
                params,
            )
            row = cursor.fetchone()
            written = (0, 0) if row is None else (int(row[0]), int(row[1] or 0))
            planned = (len(plan.entries), sum(map(abs, map(itemgetter(2), plan.entries))))
            if written != planned:
                msg = f"journal read-back (lines, units) {written} differs from the plan {planned}"
                raise InternalError(msg)
            cursor.execute(
                self._sql(
                    f"SELECT event_id FROM {self.batch_journal} WHERE {where}"
                    " GROUP BY event_id HAVING SUM(amount_units) <> 0"
                ),
                params,
            )
            unbalanced = [row[0] for row in cursor.fetchall()]
            if unbalanced:
                raise InternalError(f"events that do not sum to zero after writing: {unbalanced}")
        if plan.balances:
            where, params = self._in("account_id", sorted(plan.balances))
            cursor.execute(
                self._sql(f"SELECT account_id, kind, balance_units FROM accounts WHERE {where}"),
                params,
            )
            rows = cursor.fetchall()
            balances = {row[0]: row[2] for row in rows}
            if balances != plan.balances:
                msg = f"balances read back differ from the plan: {balances} != {plan.balances}"
                raise InternalError(msg)
            negative = [r[0] for r in rows if r[1] != AccountKind.FUNDING.value and r[2] < 0]
            if negative:
                raise InternalError(f"accounts below zero after a batch: {negative}")

    def _insert_account(
        self, cursor: Cursor, account_id: str, kind: AccountKind, now_ms: int
    ) -> None:
        cursor.execute(
            self._sql(
                "INSERT INTO accounts (account_id, kind, balance_units, opened_at_ms)"
                " VALUES (?, ?, 0, ?) ON CONFLICT (account_id) DO NOTHING"
            ),
            (account_id, kind.value, now_ms),
        )
        cursor.execute(self._sql("SELECT kind FROM accounts WHERE account_id = ?"), (account_id,))
        row = cursor.fetchone()
        if row is None or row[0] != kind.value:
            msg = f"account {account_id!r} exists with another kind"
            raise InvalidRequest(msg, details={"account": account_id})

    # --- reads ---------------------------------------------------------------------------------
    def balance_units(self, account_id: str) -> int:
        """The account's balance; InvalidRequest for an unknown account."""
        with self._lock, self._read() as cursor:
            cursor.execute(
                self._sql("SELECT balance_units FROM accounts WHERE account_id = ?"), (account_id,)
            )
            row = cursor.fetchone()
        if row is None:
            raise InvalidRequest(f"unknown account {account_id!r}", details={"account": account_id})
        return int(row[0])

    def balances(self) -> dict[str, int]:
        """Every account's balance (for audits and tests)."""
        with self._lock, self._read() as cursor:
            cursor.execute("SELECT account_id, balance_units FROM accounts")
            return {row[0]: int(row[1]) for row in cursor.fetchall()}

    def statement(
        self, account_id: str, after_entry_id: int = 0, limit: int = 100
    ) -> StatementPage:
        """Up to `limit` (<= STATEMENT_ENTRIES_MAX) journal lines of one account after a cursor."""
        if not 0 < limit <= STATEMENT_ENTRIES_MAX:
            msg = f"limit must be in [1, {STATEMENT_ENTRIES_MAX}], got {limit}"
            raise InvalidRequest(msg, details={"field": "limit"})
        self.balance_units(account_id)  # unknown account -> InvalidRequest
        with self._lock, self._read() as cursor:
            cursor.execute(
                self._sql(
                    "SELECT entry_id, event_id, account_id, amount_units, balance_after_units,"
                    " at_ms FROM journal WHERE account_id = ? AND entry_id > ?"
                    " ORDER BY entry_id LIMIT ?"
                ),
                (account_id, after_entry_id, limit + 1),
            )
            rows = cursor.fetchall()
        entries = tuple(Entry(*row) for row in rows[:limit])
        next_after = entries[-1].entry_id if len(rows) > limit else None
        return StatementPage(account_id, entries, next_after)

    def event_outcome(self, event_id: str) -> Outcome | None:
        """The recorded outcome of an event, or None if never applied."""
        stored = self.event_record(event_id)
        return None if stored is None else stored.outcome(replayed=True)

    def event_record(self, event_id: str) -> StoredEvent | None:
        """The event's row with its parties (settlement status), or None if never applied."""
        with self._lock, self._read() as cursor:
            cursor.execute(
                self._sql(
                    "SELECT event_id, kind, content_sha256, status, amount_units, applied_at_ms,"
                    " parties FROM events WHERE event_id = ?"
                ),
                (event_id,),
            )
            row = cursor.fetchone()
        if row is None:
            return None
        parties = tuple(row[6].split(PARTY_SEPARATOR)) if row[6] else ()
        return StoredEvent(
            row[0], EventKind(row[1]), row[2], EventStatus(row[3]), row[4], row[5], parties
        )

    def reservation(self, reservation_id: str) -> Reservation | None:
        """A reservation and its current status, or None."""
        with self._lock, self._read() as cursor:
            return self._fetch_reservations_plain(cursor, reservation_id)

    def _fetch_reservations_plain(self, cursor: Cursor, reservation_id: str) -> Reservation | None:
        cursor.execute(
            self._sql(
                "SELECT reservation_id, payer, creator, validators, amount_units, status,"
                " expires_at_ms FROM reservations WHERE reservation_id = ?"
            ),
            (reservation_id,),
        )
        row = cursor.fetchone()
        return None if row is None else _reservation(row)

    def audit(self) -> AuditReport:
        """Check the whole ledger's invariants (see AuditReport); cost grows with the journal."""
        with self._lock, self._read() as cursor:
            return _audit(cursor)


def _reservation(row: Sequence[Any]) -> Reservation:
    return Reservation(
        row[0],
        row[1],
        row[2],
        tuple(json.loads(row[3])),
        int(row[4]),
        ReservationStatus(row[5]),
        int(row[6]),
    )


def _scalar(cursor: Cursor, query: str) -> int:
    cursor.execute(query)
    row = cursor.fetchone()
    return 0 if row is None else int(row[0] or 0)


def _audit(cursor: Cursor) -> AuditReport:
    problems: list[str] = []
    total = _scalar(cursor, "SELECT SUM(balance_units) FROM accounts")
    if total != 0:
        problems.append(f"balances sum to {total}, not 0")
    cursor.execute(
        f"SELECT account_id FROM accounts WHERE kind <> {FUNDING_KIND_SQL} AND balance_units < 0"
    )
    problems.extend(f"{row[0]} is below zero" for row in cursor.fetchall())
    cursor.execute(
        "SELECT a.account_id, a.balance_units, COALESCE(j.total, 0) FROM accounts a LEFT JOIN"
        " (SELECT account_id, SUM(amount_units) AS total FROM journal GROUP BY account_id) j"
        " ON j.account_id = a.account_id WHERE a.balance_units <> COALESCE(j.total, 0)"
    )
    problems.extend(
        f"{row[0]} balance {row[1]} differs from its journal {row[2]}" for row in cursor.fetchall()
    )
    cursor.execute("SELECT event_id FROM journal GROUP BY event_id HAVING SUM(amount_units) <> 0")
    problems.extend(f"event {row[0]} does not sum to zero" for row in cursor.fetchall())
    pending = _scalar(
        cursor, f"SELECT SUM(amount_units) FROM reservations WHERE status = {PENDING_SQL}"
    )
    escrow = _scalar(
        cursor, f"SELECT balance_units FROM accounts WHERE account_id = {ESCROW_ACCOUNT_SQL}"
    )
    if pending != escrow:
        problems.append(f"escrow holds {escrow} but pending reservations total {pending}")
    return AuditReport(
        accounts=_scalar(cursor, "SELECT COUNT(*) FROM accounts"),
        events=_scalar(cursor, "SELECT COUNT(*) FROM events"),
        entries=_scalar(cursor, "SELECT COUNT(*) FROM journal"),
        pending_reservations=_scalar(
            cursor, f"SELECT COUNT(*) FROM reservations WHERE status = {PENDING_SQL}"
        ),
        problems=tuple(problems),
    )
