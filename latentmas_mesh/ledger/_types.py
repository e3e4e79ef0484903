"""Ledger vocabulary: accounts, events, statuses and outcomes, validated when constructed."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from enum import IntEnum, StrEnum
from typing import Any, Final

from latentmas_mesh.errors import InvalidRequest
from latentmas_mesh.market import PRICE_UNITS_MAX, VALIDATORS_MAX

AMOUNT_UNITS_MAX: Final = PRICE_UNITS_MAX
BALANCE_UNITS_MAX: Final = 1 << 62  # every balance stays well inside a signed 64-bit column
ID_CHARS_MAX: Final = 128
BATCH_EVENTS_MAX: Final = 1_024
STATEMENT_ENTRIES_MAX: Final = 1_000
RESERVATION_MS_MAX: Final = 24 * 60 * 60 * 1000

PLATFORM_ACCOUNT: Final = "platform"
FUNDING_ACCOUNT: Final = "funding"
ESCROW_ACCOUNT: Final = "escrow"

# Client event ids never contain ":", so the ledger's own ids ("expire:<reservation>") cannot clash.
_EVENT_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")
_PRINTABLE = re.compile(r"[!-~]{1,128}")  # printable ASCII without spaces: names and CURVE keys


class AccountKind(StrEnum):
    """What an account is for. `funding` is the outside world, the only one allowed below zero."""

    AGENT = "agent"
    PLATFORM = "platform"
    VALIDATOR = "validator"
    FUNDING = "funding"
    ESCROW = "escrow"  # holds reserved funds between reserve and post/void/expire


class EventKind(StrEnum):
    """Kinds of journal-changing events; `expire` is raised by the ledger itself."""

    DEPOSIT = "deposit"
    RESERVE = "reserve"
    POST = "post"
    VOID = "void"
    SETTLE = "settle"
    EXPIRE = "expire"


class EventStatus(IntEnum):
    """The recorded result of an event. Wire-stable values: append, never renumber.

    Every status is final: a re-delivered event gets the same status back.
    """

    APPLIED = 0
    INSUFFICIENT_FUNDS = 1
    RESERVATION_NOT_PENDING = 2  # post/void of a reservation already posted, voided or expired
    RESERVATION_EXPIRED = 3  # post/void arrived after the reservation's deadline


class ReservationStatus(IntEnum):
    """Where a reservation is in its life. Every reservation ends POSTED, VOIDED or EXPIRED."""

    PENDING = 0
    POSTED = 1
    VOIDED = 2
    EXPIRED = 3


def agent_account(agent_id: str) -> str:
    """The account id of an agent: `agent:<identity>`."""
    return f"agent:{agent_id}"


def validator_account(validator_id: str) -> str:
    """The account id of a validator: `validator:<identity>`."""
    return f"validator:{validator_id}"


def expire_event_id(reservation_id: str) -> str:
    """The id of the ledger's own event that expires a reservation."""
    return f"expire:{reservation_id}"


def check_event_id(event_id: object) -> str:
    """1..128 characters of [A-Za-z0-9._-]: callers choose ids (UUIDs fit), the ledger dedups."""
    if not isinstance(event_id, str) or not _EVENT_ID.fullmatch(event_id):
        msg = f"event ids are 1..{ID_CHARS_MAX} characters of [A-Za-z0-9._-], got {event_id!r}"
        raise InvalidRequest(msg, details={"field": "event_id"})
    return event_id


def check_identity(name: str, value: object) -> str:
    """An agent or validator identity: 1..128 printable ASCII characters, no spaces."""
    if not isinstance(value, str) or not _PRINTABLE.fullmatch(value):
        msg = f"{name} must be 1..{ID_CHARS_MAX} printable ASCII characters, got {value!r}"
        raise InvalidRequest(msg, details={"field": name})
    return value


def check_amount(name: str, value: object, minimum: int = 1) -> int:
    """An amount of money: an int (never a bool, float or string) in [minimum, AMOUNT_UNITS_MAX]."""
    if type(value) is not int or not minimum <= value <= AMOUNT_UNITS_MAX:
        msg = f"{name} must be an int in [{minimum}, {AMOUNT_UNITS_MAX}] units, got {value!r}"
        raise InvalidRequest(msg, details={"field": name})
    return value


def check_validators(validators: object) -> tuple[str, ...]:
    """A sorted tuple of distinct validator identities, at most VALIDATORS_MAX of them."""
    if not isinstance(validators, tuple | list):
        msg = "validators must be a list of identities"
        raise InvalidRequest(msg, details={"field": "validators"})
    if len(validators) > VALIDATORS_MAX:
        msg = f"validators must be distinct and at most {VALIDATORS_MAX}"
        raise InvalidRequest(msg, details={"field": "validators"})
    for validator in validators:
        if not (isinstance(validator, str) and _PRINTABLE.fullmatch(validator)):
            check_identity("validator", validator)  # raises, naming the field
    checked = tuple(sorted(validators))
    if len(set(checked)) != len(checked):
        msg = f"validators must be distinct and at most {VALIDATORS_MAX}"
        raise InvalidRequest(msg, details={"field": "validators"})
    return checked


def _check_time(name: str, value: object) -> int:
    if type(value) is not int or value < 0:
        msg = f"{name} must be a non-negative int of milliseconds, got {value!r}"
        raise InvalidRequest(msg, details={"field": name})
    return value


@dataclass(frozen=True, slots=True)
class Deposit:
    """Funding from outside: `amount_units` move from the funding account to an agent's account.

    Funding is how an agent account comes into being; a deposit opens it when missing.
    """

    event_id: str
    agent_id: str
    amount_units: int
    kind: EventKind = field(default=EventKind.DEPOSIT, init=False)

    def __post_init__(self) -> None:
        check_event_id(self.event_id)
        check_identity("agent_id", self.agent_id)
        check_amount("amount_units", self.amount_units)


@dataclass(frozen=True, slots=True)
class Reserve:
    """Phase one of pay-then-deliver: hold the payer's funds until post, void or `expires_at_ms`.

    The reservation's id is this event's id; post and void name it.
    """

    event_id: str
    payer: str
    creator: str
    validators: tuple[str, ...]
    amount_units: int
    expires_at_ms: int
    kind: EventKind = field(default=EventKind.RESERVE, init=False)

    def __post_init__(self) -> None:
        check_event_id(self.event_id)
        check_identity("payer", self.payer)
        check_identity("creator", self.creator)
        object.__setattr__(self, "validators", check_validators(self.validators))
        check_amount("amount_units", self.amount_units)
        _check_time("expires_at_ms", self.expires_at_ms)


@dataclass(frozen=True, slots=True)
class Post:
    """Phase two on delivery: split the held funds 80/15/5 among creator, platform, validators.

    `actor` is the authenticated identity asking; it must be the payer unless `actor_is_service`
    (a platform service, such as the alignment worker that delivered).
    """

    event_id: str
    reservation_id: str
    actor: str
    actor_is_service: bool = False
    kind: EventKind = field(default=EventKind.POST, init=False)

    def __post_init__(self) -> None:
        check_event_id(self.event_id)
        check_event_id(self.reservation_id)
        check_identity("actor", self.actor)


@dataclass(frozen=True, slots=True)
class Void:
    """Phase two on failure: give the held funds back to the payer (same authority as Post)."""

    event_id: str
    reservation_id: str
    actor: str
    actor_is_service: bool = False
    kind: EventKind = field(default=EventKind.VOID, init=False)

    def __post_init__(self) -> None:
        check_event_id(self.event_id)
        check_event_id(self.reservation_id)
        check_identity("actor", self.actor)


@dataclass(frozen=True, slots=True)
class Settle:
    """Reserve and post in one step: the payer pays `amount_units`, split 80/15/5 at once."""

    event_id: str
    payer: str
    creator: str
    validators: tuple[str, ...]
    amount_units: int
    kind: EventKind = field(default=EventKind.SETTLE, init=False)

    def __post_init__(self) -> None:
        check_event_id(self.event_id)
        check_identity("payer", self.payer)
        check_identity("creator", self.creator)
        object.__setattr__(self, "validators", check_validators(self.validators))
        check_amount("amount_units", self.amount_units)


@dataclass(frozen=True, slots=True)
class Expire:
    """The ledger's own event: a reservation passed its deadline; funds go back to the payer."""

    reservation_id: str
    kind: EventKind = field(default=EventKind.EXPIRE, init=False)

    @property
    def event_id(self) -> str:
        return expire_event_id(self.reservation_id)


LedgerEvent = Deposit | Reserve | Post | Void | Settle
AnyEvent = LedgerEvent | Expire


def content_sha256(event: AnyEvent) -> str:
    """Hex SHA-256 of the event's canonical form: equal content, equal hash; any change, another.

    The form is the kind, then every field in declaration order, joined by the unit separator
    (0x1F; a tuple's items by 0x1E). Ids and identities are printable ASCII, so the joins are
    unambiguous; this runs once per event, hence no JSON.
    """
    form = _FAST_FORMS.get(type(event))
    text = canonical_form(event) if form is None else form(event)
    return hashlib.sha256(text.encode()).hexdigest()


def canonical_form(event: AnyEvent) -> str:
    """The text `content_sha256` hashes, built field by field: the reference the fast forms of
    the busiest events must equal (a test checks them against it)."""
    parts = [event.kind.value]
    for name in _field_names(type(event)):
        value = getattr(event, name)
        parts.append("\x1e".join(value) if isinstance(value, tuple) else str(value))
    return "\x1f".join(parts)


def _settle_form(e: Settle) -> str:
    validators = "\x1e".join(e.validators)
    return f"settle\x1f{e.event_id}\x1f{e.payer}\x1f{e.creator}\x1f{validators}\x1f{e.amount_units}"


def _reserve_form(e: Reserve) -> str:
    validators = "\x1e".join(e.validators)
    return (
        f"reserve\x1f{e.event_id}\x1f{e.payer}\x1f{e.creator}\x1f{validators}"
        f"\x1f{e.amount_units}\x1f{e.expires_at_ms}"
    )


# One f-string instead of a loop over fields: half the cost of hashing a settlement.
_FAST_FORMS: dict[type, Callable[[Any], str]] = {Settle: _settle_form, Reserve: _reserve_form}


_FIELD_NAMES: dict[str, tuple[str, ...]] = {}


def _field_names(cls: type[AnyEvent]) -> tuple[str, ...]:
    names = _FIELD_NAMES.get(cls.__name__)
    if names is None:
        names = _FIELD_NAMES[cls.__name__] = tuple(f.name for f in fields(cls) if f.name != "kind")
    return names


@dataclass(frozen=True, slots=True)
class Outcome:
    """What an event did. `replayed` is true when this answer is the recorded one of an earlier
    delivery of the same event (nothing changed this time)."""

    event_id: str
    kind: EventKind
    status: EventStatus
    amount_units: int
    applied_at_ms: int
    replayed: bool = False


@dataclass(frozen=True, slots=True)
class Entry:
    """One journal line: `amount_units` (signed) on one account, and its balance afterwards."""

    entry_id: int
    event_id: str
    account_id: str
    amount_units: int
    balance_after_units: int
    at_ms: int


@dataclass(frozen=True, slots=True)
class StatementPage:
    """Entries of one account after `after_entry_id`, oldest first; `next_after` pages on."""

    account_id: str
    entries: tuple[Entry, ...]
    next_after: int | None


@dataclass(frozen=True, slots=True)
class Reservation:
    """A hold on a payer's funds and the terms it will be posted with."""

    reservation_id: str
    payer: str
    creator: str
    validators: tuple[str, ...]
    amount_units: int
    status: ReservationStatus
    expires_at_ms: int


@dataclass(frozen=True, slots=True)
class AuditReport:
    """Whole-ledger checks: all balances sum to zero, none but funding below zero, every account's
    balance equals the sum of its journal, every event's entries sum to zero, escrow equals the
    pending reservations."""

    accounts: int
    events: int
    entries: int
    pending_reservations: int
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems
