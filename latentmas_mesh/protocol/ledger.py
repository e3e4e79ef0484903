"""Wire messages of the `latentmas.ledger` service: settlement events, queries, quotes, replies.

Nothing here names a payer: the ledger takes the paying account from the authenticated identity
the request arrives with (spec 7.4; issue "never taken from the message body").
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

from pydantic import Field, Strict, model_validator

from latentmas_mesh.protocol.base import WireModel, register_message
from latentmas_mesh.protocol.errors import ErrorBody
from latentmas_mesh.units import PRICE_UNITS_MAX, QUOTE_TTL_MS_MAX, VALIDATORS_MAX, AssetType

LEDGER_SERVICE: Final = "latentmas.ledger"
EVENTS_PER_REQUEST_MAX: Final = 1_024
STATEMENT_ENTRIES_MAX: Final = 1_000

# Strict: a float, a bool or a numeric string is refused, never coerced into an amount.
AmountUnits = Annotated[int, Strict(), Field(ge=1, le=PRICE_UNITS_MAX)]
Milliseconds = Annotated[int, Strict(), Field(ge=0, le=(1 << 62))]
EventId = Annotated[str, Field(pattern=r"^[A-Za-z0-9._-]{1,128}$")]
Identity = Annotated[str, Field(pattern=r"^[!-~]{1,128}$")]
Validators = Annotated[tuple[Identity, ...], Field(max_length=VALIDATORS_MAX)]


@register_message("ledger.quote")
class Quote(WireModel):
    """A signed price (HMAC-SHA256 of its terms, ledger's key), valid until expires_at_ms."""

    quote_id: EventId
    asset_type: AssetType
    asset_id: Identity
    creator: Identity
    validators: Validators
    price_units: Annotated[int, Strict(), Field(ge=0, le=PRICE_UNITS_MAX)]
    currency: str = Field(min_length=1, max_length=16)
    issued_at_ms: Milliseconds
    expires_at_ms: Milliseconds
    signature: str = Field(pattern=r"^[0-9a-f]{64}$")


class _Priced(WireModel):
    """Terms of a payment: an explicit amount to a creator, or a quote that fixes both."""

    creator: Identity | None = None
    validators: Validators = ()
    amount_units: AmountUnits | None = None
    quote: Quote | None = None

    @model_validator(mode="after")
    def _amount_or_quote(self) -> _Priced:
        explicit = self.amount_units is not None and self.creator is not None
        if explicit == (self.quote is not None) or (self.quote is not None and self.creator):
            msg = "give either amount_units with creator (and validators), or a quote"
            raise ValueError(msg)
        return self


class DepositEvent(WireModel):
    """Funding from outside into an agent's account (operators only, unless open deposits)."""

    type: Literal["deposit"] = "deposit"
    event_id: EventId
    agent_id: Identity
    amount_units: AmountUnits


class ReserveEvent(_Priced):
    """Hold the sender's funds until post, void or `expires_at_ms` (absolute, so re-deliveries
    carry identical content)."""

    type: Literal["reserve"] = "reserve"
    event_id: EventId
    expires_at_ms: Milliseconds


class PostEvent(WireModel):
    """Deliver: pay a reservation out 80/15/5 (by its payer or a platform service)."""

    type: Literal["post"] = "post"
    event_id: EventId
    reservation_id: EventId


class VoidEvent(WireModel):
    """Fail: give a reservation back to its payer (by its payer or a platform service)."""

    type: Literal["void"] = "void"
    event_id: EventId
    reservation_id: EventId


class SettleEvent(_Priced):
    """Pay at once from the sender's account: reserve and post in one step."""

    type: Literal["settle"] = "settle"
    event_id: EventId


LedgerWireEvent = Annotated[
    DepositEvent | ReserveEvent | PostEvent | VoidEvent | SettleEvent,
    Field(discriminator="type"),
]


@register_message("ledger.events")
class LedgerEventsRequest(WireModel):
    """A batch of settlement events, applied in order in one transaction (group commit)."""

    events: Annotated[
        tuple[LedgerWireEvent, ...], Field(min_length=1, max_length=EVENTS_PER_REQUEST_MAX)
    ]


class EventResult(WireModel):
    """One event's answer: its recorded outcome, or the error that rejected it (nothing recorded).

    `status` is `EventStatus` (0 applied, 1 insufficient funds, 2 reservation not pending,
    3 reservation expired); `replayed` says this is the answer recorded at an earlier delivery.
    Statuses 1-3 are outcomes, kept and replayed under the event id; a client raising for them
    (`ledger.client.raise_for_result`) raises INSUFFICIENT_FUNDS for 1 and RESERVATION_CLOSED
    for 2 and 3. `error` codes: INVALID_REQUEST (bad terms, unknown account, bad deadline),
    UNAUTHORIZED (not the payer, service or operator this needs), CONFLICT (the id was used with
    other content), RESERVATION_NOT_FOUND (a post or void naming a reservation the ledger does
    not hold).
    """

    event_id: str
    kind: str | None = None
    status: int | None = None
    amount_units: int | None = None
    applied_at_ms: int | None = None
    replayed: bool = False
    error: ErrorBody | None = None


@register_message("ledger.events_reply")
class LedgerEventsReply(WireModel):
    """One result per event, in the request's order."""

    results: tuple[EventResult, ...]


@register_message("ledger.balance_request")
class BalanceRequest(WireModel):
    """The sender's balance; or `account`'s (`validator:<id>`, `platform`) for owner/operator."""

    account: str | None = Field(default=None, max_length=160)


@register_message("ledger.balance_reply")
class BalanceReply(WireModel):
    """A balance in minor units of `currency`."""

    account: str
    balance_units: int
    currency: str


@register_message("ledger.statement_request")
class StatementRequest(WireModel):
    """A page of the sender's journal (or `account`'s, for its owner/operator), oldest first."""

    account: str | None = Field(default=None, max_length=160)
    after_entry_id: Annotated[int, Strict(), Field(ge=0)] = 0
    limit: Annotated[int, Strict(), Field(ge=1, le=STATEMENT_ENTRIES_MAX)] = 100


class StatementEntry(WireModel):
    """One journal line: signed amount, balance after it, the event that wrote it."""

    entry_id: int
    event_id: str
    amount_units: int
    balance_after_units: int
    at_ms: int


@register_message("ledger.statement_reply")
class StatementReply(WireModel):
    """Entries after the cursor; pass `next_after` as `after_entry_id` for the next page."""

    account: str
    currency: str
    entries: tuple[StatementEntry, ...]
    next_after: int | None


@register_message("ledger.quote_request")
class QuoteRequest(WireModel):
    """Ask the price of one use (memory, reasoning) or purchase (capability) of an asset.

    The tier comes from the registry entry of `source_model`; `quality` is the alignment quality
    in [0, 1]; `similar_assets` is how many near-duplicates the market lists.
    """

    asset_type: AssetType
    asset_id: Identity
    creator: Identity
    validators: Validators = ()
    tokens: Annotated[int, Strict(), Field(ge=0, le=1 << 40)]
    source_model: str = Field(min_length=1, max_length=128)
    quality: float = Field(ge=0.0, le=1.0)
    similar_assets: Annotated[int, Strict(), Field(ge=0, le=1 << 40)] = 0
    ttl_ms: Annotated[int, Strict(), Field(ge=1, le=QUOTE_TTL_MS_MAX)] = 60_000


@register_message("ledger.open_account_request")
class OpenAccountRequest(WireModel):
    """Operators open validator (or agent) accounts; an agent's also opens with its first deposit.

    Payments to an account that was never opened are refused (unknown account).
    """

    kind: Literal["agent", "validator"]
    owner: Identity


@register_message("ledger.status_request")
class SettlementStatusRequest(WireModel):
    """The recorded outcome of an event id (did my settlement happen?).

    Answered for the event's parties only (whoever sent it, the payer, the creator, the
    validators; for post, void and expiry those of the reservation) and for operators.
    """

    event_id: EventId


@register_message("ledger.status_reply")
class SettlementStatusReply(WireModel):
    """`result` is None when the ledger holds no event with this id that the caller is a party
    to: an unknown id and someone else's event get the same answer, so a stranger learns
    nothing, not even that the id exists."""

    event_id: str
    result: EventResult | None


@register_message("ledger.reservation_request")
class ReservationRequest(WireModel):
    """A reservation's payer and terms, so a service can check it before delivering.

    Only platform services (`LATENTMAS_LEDGER_SERVICES`) and the reservation's payer may ask:
    anyone else gets UNAUTHORIZED. An id the ledger does not hold (never reserved, or a reserve
    refused for funds) gets RESERVATION_NOT_FOUND. A closed reservation is answered, its state
    in the reply's `status`.
    """

    reservation_id: EventId


ReservationState = Literal["pending", "posted", "voided", "expired"]


@register_message("ledger.reservation_reply")
class ReservationReply(WireModel):
    """Who pays, whom the post will credit, how much, and where the reservation stands.

    `status` is "expired" once `expires_at_ms` has passed even if the sweep has not run yet:
    a post would be refused either way.
    """

    reservation_id: str
    payer: str
    creator: str
    validators: tuple[str, ...]
    amount_units: int
    status: ReservationState
    expires_at_ms: int


__all__ = [
    "EVENTS_PER_REQUEST_MAX",
    "LEDGER_SERVICE",
    "BalanceReply",
    "BalanceRequest",
    "DepositEvent",
    "EventResult",
    "LedgerEventsReply",
    "LedgerEventsRequest",
    "LedgerWireEvent",
    "OpenAccountRequest",
    "PostEvent",
    "Quote",
    "QuoteRequest",
    "ReservationReply",
    "ReservationRequest",
    "ReservationState",
    "ReserveEvent",
    "SettleEvent",
    "SettlementStatusReply",
    "SettlementStatusRequest",
    "StatementEntry",
    "StatementReply",
    "StatementRequest",
    "VoidEvent",
]
