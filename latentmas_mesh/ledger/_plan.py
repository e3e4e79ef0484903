"""The ledger's decisions as a pure function: events + a snapshot of the rows they touch -> a plan.

No database and no clock here: the backends fetch the snapshot inside their write transaction,
call `plan_batch`, write the plan, and read it back. Every backend shares these rules.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import NamedTuple

from latentmas_mesh.errors import (
    Conflict,
    InternalError,
    InvalidRequest,
    ProtocolError,
    ReservationClosed,
    ReservationNotFound,
    Unauthorized,
)
from latentmas_mesh.ledger._types import (
    BALANCE_UNITS_MAX,
    ESCROW_ACCOUNT,
    FUNDING_ACCOUNT,
    PLATFORM_ACCOUNT,
    RESERVATION_MS_MAX,
    AccountKind,
    AnyEvent,
    Deposit,
    EventKind,
    EventStatus,
    Expire,
    Outcome,
    Post,
    Reservation,
    ReservationStatus,
    Reserve,
    Settle,
    Void,
    agent_account,
    content_sha256,
    validator_account,
)
from latentmas_mesh.market import split_units

Transfer = tuple[str, int]  # (account_id, signed amount_units)


class StoredEvent(NamedTuple):
    """An event row: what the ledger remembers of each event id to answer re-deliveries.

    A NamedTuple, not a frozen dataclass: as immutable, and a third of the cost to build, which
    the ledger does once per event.

    `parties` are the identities the event concerns, who alone (with operators) may read its
    status: whoever sent it, the payer, the creator and the validators; a deposit's agent; for
    post, void and expire, those of the reservation. Empty when read for a replay check only.
    """

    event_id: str
    kind: EventKind
    content_sha256: str
    status: EventStatus
    amount_units: int
    applied_at_ms: int
    parties: tuple[str, ...] = ()

    def outcome(self, *, replayed: bool) -> Outcome:
        return Outcome(
            self.event_id, self.kind, self.status, self.amount_units, self.applied_at_ms, replayed
        )


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The rows a batch reads: its already-known event ids, reservations and existing accounts."""

    events: Mapping[str, StoredEvent]
    reservations: Mapping[str, Reservation]
    accounts: Mapping[str, tuple[AccountKind, int]]  # account_id -> (kind, balance_units)


@dataclass(slots=True)
class Plan:
    """Everything a batch writes, in order, and one result per input event."""

    results: list[Outcome | ProtocolError] = field(default_factory=list)
    event_rows: list[StoredEvent] = field(default_factory=list)
    entries: list[tuple[str, str, int, int, int]] = field(default_factory=list)
    opened: list[tuple[str, AccountKind]] = field(default_factory=list)
    balances: dict[str, int] = field(default_factory=dict)  # final balance of touched accounts
    reservations_new: dict[str, Reservation] = field(default_factory=dict)
    reservations_closed: dict[str, tuple[ReservationStatus, str]] = field(default_factory=dict)


def reservation_ids_needed(events: Iterable[AnyEvent]) -> set[str]:
    """Reservations a batch reads (post, void and expire name one)."""
    return {e.reservation_id for e in events if isinstance(e, Post | Void | Expire)}


def accounts_needed(
    events: Iterable[AnyEvent], reservations: Mapping[str, Reservation]
) -> set[str]:
    """Every account a batch may read or change, including those of the reservations it names."""
    needed = {PLATFORM_ACCOUNT, FUNDING_ACCOUNT, ESCROW_ACCOUNT}
    for event in events:
        if isinstance(event, Deposit):
            needed.add(agent_account(event.agent_id))
        elif isinstance(event, Reserve | Settle):
            needed.update(_parties(event.payer, event.creator, event.validators))
    for reservation in reservations.values():
        needed.update(_parties(reservation.payer, reservation.creator, reservation.validators))
    return needed


def _parties(payer: str, creator: str, validators: Sequence[str]) -> list[str]:
    return [agent_account(payer), agent_account(creator), *map(validator_account, validators)]


def plan_batch(events: Sequence[AnyEvent], snapshot: Snapshot, now_ms: int) -> Plan:
    """Decide every event in order, each seeing the effects of those before it in the batch."""
    return _Planner(snapshot, now_ms).run(events)


class _Planner:
    """Working copies of the snapshot, changed event by event; the result is a `Plan`."""

    def __init__(self, snapshot: Snapshot, now_ms: int) -> None:
        self.now_ms = now_ms
        self.known = dict(snapshot.events)
        self.reservations = dict(snapshot.reservations)
        self.kinds = {account: kind for account, (kind, _) in snapshot.accounts.items()}
        self.balances = {account: units for account, (_, units) in snapshot.accounts.items()}
        self.plan = Plan()

    def run(self, events: Sequence[AnyEvent]) -> Plan:
        for event in events:
            self.plan.results.append(self._one(event))
        return self.plan

    def _one(self, event: AnyEvent) -> Outcome | ProtocolError:
        digest = content_sha256(event)
        stored = self.known.get(event.event_id)
        if stored is not None:
            if stored.content_sha256 != digest:
                return Conflict(
                    f"event id {event.event_id!r} was already used with different content",
                    details={"event_id": event.event_id},
                )
            return stored.outcome(replayed=True)
        try:
            status, amount_units, transfers = self._decide(event)
            self._check_transfers(event.event_id, transfers)
        except InternalError:
            raise  # a broken invariant stops the batch and the worker; never a per-event answer
        except ProtocolError as error:  # rejected input: nothing recorded, nothing changed
            return error
        row = StoredEvent(
            event.event_id,
            event.kind,
            digest,
            status,
            amount_units,
            self.now_ms,
            self._parties_of(event),
        )
        self._record(row, transfers)
        return row.outcome(replayed=False)

    def _decide(self, event: AnyEvent) -> tuple[EventStatus, int, list[Transfer]]:
        if isinstance(event, Settle):  # the common case first
            return self._settle(event)
        if isinstance(event, Deposit):
            return self._deposit(event)
        if isinstance(event, Reserve):
            return self._reserve(event)
        if isinstance(event, Expire):
            return self._expire(event)
        return self._finish(event)

    def _deposit(self, event: Deposit) -> tuple[EventStatus, int, list[Transfer]]:
        account = self._open_agent(event.agent_id)
        amount = event.amount_units
        return EventStatus.APPLIED, amount, [(FUNDING_ACCOUNT, -amount), (account, amount)]

    def _reserve(self, event: Reserve) -> tuple[EventStatus, int, list[Transfer]]:
        if not self.now_ms < event.expires_at_ms <= self.now_ms + RESERVATION_MS_MAX:
            msg = f"expires_at_ms must be after now and at most {RESERVATION_MS_MAX} ms ahead"
            raise InvalidRequest(msg, details={"field": "expires_at_ms"})
        payer, amount = agent_account(event.payer), event.amount_units
        if self._unfunded(payer, event.validators) or self.balances[payer] < amount:
            return EventStatus.INSUFFICIENT_FUNDS, amount, []
        self._open_agent(event.creator)
        reservation = Reservation(
            event.event_id,
            event.payer,
            event.creator,
            event.validators,
            amount,
            ReservationStatus.PENDING,
            event.expires_at_ms,
        )
        self.reservations[event.event_id] = reservation
        self.plan.reservations_new[event.event_id] = reservation
        return EventStatus.APPLIED, amount, [(payer, -amount), (ESCROW_ACCOUNT, amount)]

    def _settle(self, event: Settle) -> tuple[EventStatus, int, list[Transfer]]:
        payer, amount = agent_account(event.payer), event.amount_units
        if self._unfunded(payer, event.validators) or self.balances[payer] < amount:
            return EventStatus.INSUFFICIENT_FUNDS, amount, []
        self._open_agent(event.creator)
        return EventStatus.APPLIED, amount, _split(payer, amount, event.creator, event.validators)

    def _expire(self, event: Expire) -> tuple[EventStatus, int, list[Transfer]]:
        reservation = self._reservation(event.reservation_id)
        if reservation.status != ReservationStatus.PENDING:  # closed by another node meanwhile
            msg = f"reservation {event.reservation_id!r} is no longer pending"
            status = reservation.status.name.lower()
            raise ReservationClosed(
                msg, details={"reservation_id": event.reservation_id, "status": status}
            )
        if self.now_ms < reservation.expires_at_ms:
            msg = f"reservation {event.reservation_id!r} has not reached its deadline"
            raise InternalError(msg, details={"reservation_id": event.reservation_id})
        return self._close(reservation, ReservationStatus.EXPIRED, event.event_id)

    def _finish(self, event: Post | Void) -> tuple[EventStatus, int, list[Transfer]]:
        """Post or void. A reservation that is no longer pending, or past its deadline, is a
        recorded outcome (RESERVATION_NOT_PENDING / RESERVATION_EXPIRED), not a refusal: the
        event's id is spent and a re-delivery replays it; `raise_for_result` turns either into
        ReservationClosed. An unknown reservation is refused (ReservationNotFound), nothing kept.
        """
        reservation = self._reservation(event.reservation_id)
        if not event.actor_is_service and event.actor != reservation.payer:
            msg = "only the payer or a platform service may post or void a reservation"
            raise Unauthorized(msg, details={"reservation_id": event.reservation_id})
        if reservation.status != ReservationStatus.PENDING:
            return EventStatus.RESERVATION_NOT_PENDING, reservation.amount_units, []
        if self.now_ms >= reservation.expires_at_ms:
            expired = self._one(Expire(event.reservation_id))  # recorded as an event of its own
            if not isinstance(expired, Outcome):
                raise InternalError(f"expiring {event.reservation_id!r} failed: {expired!r}")
            return EventStatus.RESERVATION_EXPIRED, reservation.amount_units, []
        target = ReservationStatus.POSTED if isinstance(event, Post) else ReservationStatus.VOIDED
        return self._close(reservation, target, event.event_id)

    def _close(
        self, reservation: Reservation, status: ReservationStatus, event_id: str
    ) -> tuple[EventStatus, int, list[Transfer]]:
        amount = reservation.amount_units
        if status == ReservationStatus.POSTED:
            transfers = _split(ESCROW_ACCOUNT, amount, reservation.creator, reservation.validators)
        else:
            transfers = [(ESCROW_ACCOUNT, -amount), (agent_account(reservation.payer), amount)]
        rid = reservation.reservation_id
        self.reservations[rid] = replace(reservation, status=status)
        if rid in self.plan.reservations_new:
            self.plan.reservations_new[rid] = self.reservations[rid]
        else:
            self.plan.reservations_closed[rid] = (status, event_id)
        return EventStatus.APPLIED, amount, transfers

    def _parties_of(self, event: AnyEvent) -> tuple[str, ...]:
        """Identities an event concerns (distinct, in order): sender, payer, creator, validators."""
        if isinstance(event, Settle | Reserve):
            return _distinct((event.payer, event.creator, *event.validators))
        if isinstance(event, Deposit):
            return (event.agent_id,)
        reservation = self.reservations[event.reservation_id]  # decided above, so it exists
        names = (reservation.payer, reservation.creator, *reservation.validators)
        return _distinct((event.actor, *names) if isinstance(event, Post | Void) else names)

    def _reservation(self, reservation_id: str) -> Reservation:
        """The reservation a post, void or expiry names; ReservationNotFound if never held (a
        refused reserve holds none either)."""
        reservation = self.reservations.get(reservation_id)
        if reservation is None:
            msg = f"no reservation {reservation_id!r}: reserve first"
            raise ReservationNotFound(msg, details={"reservation_id": reservation_id})
        return reservation

    def _unfunded(self, payer: str, validators: Sequence[str]) -> bool:
        """Whether the payer's account was never opened (funded): an agent never funded has
        nothing, so it pays with INSUFFICIENT_FUNDS like an empty account. Validators must be
        registered (their accounts opened by an operator): InvalidRequest otherwise."""
        self._require_accounts([validator_account(v) for v in validators])
        return payer not in self.kinds

    def _open_agent(self, agent_id: str) -> str:
        """The agent's account, opened at zero if this is the first money it receives (a
        deposit, or a creator's first sale)."""
        account = agent_account(agent_id)
        if account not in self.kinds:
            self.kinds[account] = AccountKind.AGENT
            self.balances[account] = 0
            self.plan.opened.append((account, AccountKind.AGENT))
        return account

    def _require_accounts(self, accounts: Sequence[str]) -> None:
        kinds = self.kinds
        for account in accounts:
            if account not in kinds:
                missing = sorted(a for a in accounts if a not in kinds)
                msg = f"unknown account(s): {', '.join(missing)}"
                raise InvalidRequest(msg, details={"accounts": missing})

    def _check_transfers(self, event_id: str, transfers: list[Transfer]) -> None:
        """Explicit invariants before anything changes: the entries sum to zero, no account but
        funding goes below zero (a bug: payers are checked first), no balance leaves its bound."""
        balances, total = self.balances, 0
        after: dict[str, int] = {}
        for account, units in transfers:
            total += units
            after[account] = (after[account] if account in after else balances[account]) + units
        if total != 0:
            msg = f"event {event_id!r} would not balance: {transfers}"
            raise InternalError(msg)
        for account, balance in after.items():
            if balance < 0 and self.kinds[account] != AccountKind.FUNDING:
                msg = f"event {event_id!r} would take {account} below zero: {balance}"
                raise InternalError(msg)
            if balance > BALANCE_UNITS_MAX or balance < -BALANCE_UNITS_MAX:
                msg = f"event {event_id!r} would take {account} past {BALANCE_UNITS_MAX} units"
                raise InvalidRequest(msg, details={"account": account})

    def _record(self, row: StoredEvent, transfers: list[Transfer]) -> None:
        """Remember the event and apply its (checked) transfers, one journal line each."""
        self.known[row.event_id] = row
        self.plan.event_rows.append(row)
        balances, entries, final = self.balances, self.plan.entries, self.plan.balances
        event_id, now_ms = row.event_id, self.now_ms
        for account, units in transfers:
            if units == 0:
                continue
            balance = balances[account] = balances[account] + units
            entries.append((event_id, account, units, balance, now_ms))
            final[account] = balance


def _distinct(names: tuple[str, ...]) -> tuple[str, ...]:
    return names if len(set(names)) == len(names) else tuple(dict.fromkeys(names))


def _split(source: str, amount: int, creator: str, validators: Sequence[str]) -> list[Transfer]:
    """source pays `amount`; creator, platform and validators receive the 80/15/5 split."""
    # events and reservations hold their validators sorted and distinct, as split_units needs
    creator_units, platform_units, shares = split_units(amount, len(validators))
    return [
        (source, -amount),
        (agent_account(creator), creator_units),
        (PLATFORM_ACCOUNT, platform_units),
        *zip(map(validator_account, validators), shares, strict=True),
    ]
