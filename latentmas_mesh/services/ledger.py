"""The `latentmas.ledger` request handler: wire messages + the caller's identity in, replies out."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from pydantic import BaseModel

from latentmas_mesh.errors import InvalidRequest, ProtocolError, ReservationNotFound, Unauthorized
from latentmas_mesh.ledger._types import (
    AccountKind,
    Deposit,
    LedgerEvent,
    Outcome,
    Post,
    Reservation,
    ReservationStatus,
    Reserve,
    Settle,
    Void,
    agent_account,
    validator_account,
)
from latentmas_mesh.ledger.store import LedgerStore
from latentmas_mesh.market import (
    PriceSchedule,
    QuoteTerms,
    SignedQuote,
    verify_quote,
)
from latentmas_mesh.protocol.errors import ErrorBody
from latentmas_mesh.protocol.ledger import (
    BalanceReply,
    BalanceRequest,
    DepositEvent,
    LedgerEventsReply,
    LedgerEventsRequest,
    LedgerWireEvent,
    OpenAccountRequest,
    PostEvent,
    Quote,
    QuoteRequest,
    ReservationReply,
    ReservationRequest,
    ReservationState,
    ReserveEvent,
    SettleEvent,
    SettlementStatusReply,
    SettlementStatusRequest,
    StatementEntry,
    StatementReply,
    StatementRequest,
    VoidEvent,
)
from latentmas_mesh.registry import Registry, default_registry
from latentmas_mesh.services.quotes import Pricing, QuoteSigner


@dataclass(slots=True)
class LedgerPolicy:
    """Who may do what, and the market's configuration."""

    quote_key: bytes
    currency: str = "credit"
    quote_ttl_ms: int = 60_000
    services: frozenset[str] = frozenset()
    operators: frozenset[str] = frozenset()
    open_deposits: bool = False
    schedule: PriceSchedule = field(default_factory=PriceSchedule)


class LedgerService:
    """Answers every ledger message. The paying account is always `agent:<identity>`, where
    identity is the authenticated CURVE key of the request (None: nothing may be spent or read)."""

    def __init__(
        self,
        store: LedgerStore,
        policy: LedgerPolicy,
        *,
        clock: Callable[[], int],
        registry: Registry | None = None,
    ) -> None:
        self.store = store
        self.policy = policy
        self.clock = clock
        self.registry = registry or default_registry()
        self.signer = QuoteSigner(
            key=policy.quote_key, pricing=Pricing(policy.schedule, self.registry),
            currency=policy.currency, ttl_ms_max=policy.quote_ttl_ms,
        )  # fmt: skip

    def handle(self, message: BaseModel, identity: str | None) -> BaseModel:
        """Dispatch on the message type; raises a ProtocolError for a refused request."""
        now_ms = self.clock()
        if isinstance(message, QuoteRequest):
            return self.quote(message, now_ms)
        if identity is None:
            msg = "the ledger needs an authenticated identity (CURVE) for this request"
            raise Unauthorized(msg)
        if isinstance(message, ReservationRequest):
            return self.reservation(message.reservation_id, identity, now_ms)
        return self._answer(message, identity, now_ms)

    def _answer(self, message: BaseModel, identity: str, now_ms: int) -> BaseModel:
        """The requests that spend or read an account (identity known)."""
        if isinstance(message, LedgerEventsRequest):
            return self.events(message.events, identity, now_ms)
        if isinstance(message, BalanceRequest):
            account = self._readable(message.account, identity)
            units = self._balance_units(account, identity) or 0
            return BalanceReply(account=account, balance_units=units, currency=self.policy.currency)
        if isinstance(message, StatementRequest):
            return self.statement(message, identity)
        if isinstance(message, OpenAccountRequest):
            return self.open_account(message, identity, now_ms)
        if isinstance(message, SettlementStatusRequest):
            return self.settlement_status(message.event_id, identity)
        msg = f"the ledger does not answer {type(message).__name__}"
        raise InvalidRequest(msg)

    def events(
        self, events: Sequence[LedgerWireEvent], identity: str, now_ms: int
    ) -> LedgerEventsReply:
        """Convert each event (payer = identity) and apply the valid ones in one batch."""
        results: list[dict[str, object] | None] = []
        converted: list[LedgerEvent] = []
        for wire in events:
            try:
                converted.append(self._convert(wire, identity, now_ms))
                results.append(None)
            except ProtocolError as error:
                results.append(_error(wire.event_id, error))
        applied = iter(self.store.apply_batch(converted, now_ms))
        final = [
            result if result is not None else _answer(wire.event_id, next(applied))
            for wire, result in zip(events, results, strict=True)
        ]
        # one validation of plain dicts in pydantic's core: a third of the cost of building
        # each EventResult in Python, and the ledger's own answers are still checked
        return LedgerEventsReply.model_validate({"results": final})

    def settlement_status(self, event_id: str, identity: str) -> SettlementStatusReply:
        """The recorded outcome of an event, for its parties (sender, payer, creator, validators)
        and operators only.

        Anyone else gets exactly the answer an id the ledger never saw gets (`result` None), so
        this query neither shows a stranger what was paid nor tells it that the id exists.
        """
        stored = self.store.event_record(event_id)
        visible = stored is not None and (
            identity in stored.parties or identity in self.policy.operators
        )
        result = _result(stored.outcome(replayed=True)) if stored is not None and visible else None
        return SettlementStatusReply.model_validate({"event_id": event_id, "result": result})

    def open_account(self, request: OpenAccountRequest, identity: str, now_ms: int) -> BalanceReply:
        """Operators only: open `validator:<owner>` or `agent:<owner>` at zero (idempotent)."""
        if identity not in self.policy.operators:
            raise Unauthorized("only an operator may open accounts")
        if request.kind == "validator":
            account, kind = validator_account(request.owner), AccountKind.VALIDATOR
        else:
            account, kind = agent_account(request.owner), AccountKind.AGENT
        self.store.open_account(account, kind, now_ms)
        units = self.store.balance_units(account)
        return BalanceReply(account=account, balance_units=units, currency=self.policy.currency)

    def reservation(self, reservation_id: str, identity: str, now_ms: int) -> ReservationReply:
        """Payer and terms of a reservation, for platform services and its payer only.

        Unknown id (never reserved, or a reserve refused for funds): ReservationNotFound with
        details {"reservation_id"}; someone else's: Unauthorized. That tells a stranger the id is
        taken, as reusing it for another event (a Conflict) would anyway; the terms stay private.
        A closed reservation is answered with its state, not an error: the caller decides.
        """
        found = self.store.reservation(reservation_id)
        if found is None:
            msg = f"no reservation {reservation_id!r} on this ledger"
            raise ReservationNotFound(msg, details={"reservation_id": reservation_id})
        if identity != found.payer and identity not in self.policy.services:
            msg = "only the reservation's payer or a platform service may read it"
            raise Unauthorized(msg, details={"reservation_id": reservation_id})
        return _reservation_reply(found, now_ms)

    def statement(self, request: StatementRequest, identity: str) -> StatementReply:
        account = self._readable(request.account, identity)
        if self._balance_units(account, identity) is None:  # never funded: no entries
            return StatementReply(
                account=account, currency=self.policy.currency, entries=(), next_after=None
            )
        page = self.store.statement(account, request.after_entry_id, request.limit)
        entries = tuple(
            StatementEntry(
                entry_id=e.entry_id,
                event_id=e.event_id,
                amount_units=e.amount_units,
                balance_after_units=e.balance_after_units,
                at_ms=e.at_ms,
            )
            for e in page.entries
        )
        return StatementReply(
            account=account,
            currency=self.policy.currency,
            entries=entries,
            next_after=page.next_after,
        )

    def quote(self, request: QuoteRequest, now_ms: int) -> Quote:
        """Price by spec 7.4.2 with the registry's tier for the source model; sign the terms."""
        return self.signer.quote(request, now_ms)

    # --- helpers ---------------------------------------------------------------------------
    def _balance_units(self, account: str, identity: str) -> int | None:
        """The account's balance; None for the sender's own agent account not yet opened (its
        first deposit opens it): an agent never funded has nothing, where anyone else's
        unknown account stays an error (InvalidRequest)."""
        try:
            return self.store.balance_units(account)
        except InvalidRequest:
            if account != agent_account(identity):
                raise
            return None

    def _readable(self, account: str | None, identity: str) -> str:
        """The sender's own account, or one it owns, or any account for an operator."""
        if account is None:
            return agent_account(identity)
        owned = {agent_account(identity), validator_account(identity)}
        if account in owned or identity in self.policy.operators:
            return account
        msg = "only the account's owner (or an operator) may read it"
        raise Unauthorized(msg, details={"account": account})

    def _convert(self, wire: LedgerWireEvent, identity: str, now_ms: int) -> LedgerEvent:
        if isinstance(wire, SettleEvent):  # the common case first
            creator, validators, amount = self._terms(wire, now_ms)
            return Settle(wire.event_id, identity, creator, validators, amount)
        if isinstance(wire, DepositEvent):
            own = self.policy.open_deposits and wire.agent_id == identity
            if not (own or identity in self.policy.operators):
                raise Unauthorized("only an operator may fund accounts")
            return Deposit(wire.event_id, wire.agent_id, wire.amount_units)
        if isinstance(wire, PostEvent):
            is_service = identity in self.policy.services
            return Post(wire.event_id, wire.reservation_id, identity, is_service)
        if isinstance(wire, ReserveEvent):
            creator, validators, amount = self._terms(wire, now_ms)
            return Reserve(wire.event_id, identity, creator, validators, amount, wire.expires_at_ms)
        if isinstance(wire, VoidEvent):
            is_service = identity in self.policy.services
            return Void(wire.event_id, wire.reservation_id, identity, is_service)
        raise InvalidRequest(f"unknown event type {type(wire).__name__}")

    def _terms(
        self, wire: ReserveEvent | SettleEvent, now_ms: int
    ) -> tuple[str, tuple[str, ...], int]:
        """(creator, validators, amount) from the explicit fields or a genuine quote."""
        if wire.quote is None:
            if wire.creator is None or wire.amount_units is None:
                raise InvalidRequest("give amount_units with creator, or a quote")
            return wire.creator, tuple(wire.validators), wire.amount_units
        terms = verify_quote(_signed(wire.quote), key=self.policy.quote_key, now_ms=None)
        if now_ms >= terms.expires_at_ms and self.store.event_outcome(wire.event_id) is None:
            verify_quote(_signed(wire.quote), key=self.policy.quote_key, now_ms=now_ms)  # raises
        return terms.creator, terms.validators, terms.price_units


_STATES: dict[ReservationStatus, ReservationState] = {
    ReservationStatus.PENDING: "pending",
    ReservationStatus.POSTED: "posted",
    ReservationStatus.VOIDED: "voided",
    ReservationStatus.EXPIRED: "expired",
}


def _reservation_reply(found: Reservation, now_ms: int) -> ReservationReply:
    state = _STATES[found.status]
    if state == "pending" and now_ms >= found.expires_at_ms:  # a post now would be refused
        state = "expired"
    return ReservationReply(
        reservation_id=found.reservation_id,
        payer=found.payer,
        creator=found.creator,
        validators=tuple(found.validators),
        amount_units=found.amount_units,
        status=state,
        expires_at_ms=found.expires_at_ms,
    )


def _signed(quote: Quote) -> SignedQuote:
    fields = quote.model_dump(exclude={"signature"})
    fields["validators"] = tuple(fields["validators"])
    return SignedQuote(QuoteTerms(**fields), quote.signature)


def _terms_fields(terms: QuoteTerms) -> dict[str, object]:
    return {f.name: getattr(terms, f.name) for f in dataclasses.fields(terms)}


def _result(outcome: Outcome) -> dict[str, object]:
    """The fields of an EventResult for a recorded outcome."""
    return {
        "event_id": outcome.event_id,
        "kind": outcome.kind.value,
        "status": int(outcome.status),
        "amount_units": outcome.amount_units,
        "applied_at_ms": outcome.applied_at_ms,
        "replayed": outcome.replayed,
    }


def _error(event_id: str, error: ProtocolError) -> dict[str, object]:
    """The fields of an EventResult for an event refused with `error` (nothing recorded)."""
    return {"event_id": event_id, "error": ErrorBody.from_error(error)}


def _answer(event_id: str, answer: Outcome | ProtocolError) -> dict[str, object]:
    return _error(event_id, answer) if isinstance(answer, ProtocolError) else _result(answer)


__all__ = ["LedgerPolicy", "LedgerService"]
