"""Client helpers for the `latentmas.ledger` service: typed calls, outcome checks, outbox sender."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Literal, Protocol, TypeVar

from pydantic import BaseModel

from latentmas_mesh.codec import Decoded
from latentmas_mesh.errors import InsufficientFunds, InvalidRequest, ReservationClosed, Unauthorized
from latentmas_mesh.ledger._types import EventStatus
from latentmas_mesh.protocol.ledger import (
    LEDGER_SERVICE,
    BalanceReply,
    BalanceRequest,
    DepositEvent,
    EventResult,
    LedgerEventsReply,
    LedgerEventsRequest,
    LedgerWireEvent,
    OpenAccountRequest,
    Quote,
    QuoteRequest,
    ReservationReply,
    ReservationRequest,
    SettlementStatusReply,
    SettlementStatusRequest,
    StatementReply,
    StatementRequest,
)
from latentmas_mesh.settlement.outbox import RETRYABLE_CODES
from latentmas_mesh.transport import ReplyVerifier, Transport, TransportSettings, trusted_keys

R = TypeVar("R", bound=BaseModel)


class Caller(Protocol):
    """What the client needs of a transport (`latentmas_mesh.transport.Transport` has it)."""

    def call(
        self,
        service: str,
        message: BaseModel,
        *,
        request_id: str | None = None,
        timeout_ms: int | None = None,
    ) -> Decoded: ...


def new_event_id() -> str:
    """A fresh event id (32 hex digits): choose it once, before the first delivery, and keep it."""
    return uuid.uuid4().hex


def raise_for_result(result: EventResult) -> EventResult:
    """The result itself if the event was applied; else its typed error.

    A refused event raises the error the ledger sent (e.g. RESERVATION_NOT_FOUND for a post or
    void of an unknown reservation, CONFLICT for a reused id). A recorded status that is not
    APPLIED maps to a code: INSUFFICIENT_FUNDS -> InsufficientFunds; RESERVATION_NOT_PENDING and
    RESERVATION_EXPIRED -> ReservationClosed. Details: {"event_id", "status": the EventStatus}.
    """
    if result.error is not None:
        raise result.error.to_exception()
    if result.status == EventStatus.APPLIED:
        return result
    details = {"event_id": result.event_id, "status": result.status}
    if result.status == EventStatus.INSUFFICIENT_FUNDS:
        raise InsufficientFunds(f"event {result.event_id}: insufficient funds", details=details)
    if result.status in (EventStatus.RESERVATION_NOT_PENDING, EventStatus.RESERVATION_EXPIRED):
        status = EventStatus(result.status).name.lower()
        raise ReservationClosed(f"event {result.event_id}: {status}", details=details)
    raise InvalidRequest(f"event {result.event_id}: unknown status {result.status}")


def reply_verifier(settings: TransportSettings) -> ReplyVerifier | None:
    """How this client checks that a ledger worker wrote each answer; None without CURVE.

    Under CURVE the broker routes the answers but is not trusted for them: each must carry the
    seal of a key in `ledger_keys_dir` (LATENTMAS_LEDGER_KEYS_DIR), or it is refused. Left
    unset, that is Unauthorized here, before any call (fail closed). Without CURVE there are no
    keys to seal with: a plaintext mesh's ledger answers cannot be verified, only trusted.
    """
    if settings.curve_secret_key_file is None:
        return None
    if settings.ledger_keys_dir is None:
        msg = (
            "CURVE is on but LATENTMAS_LEDGER_KEYS_DIR is not set: without the ledger workers'"
            " public keys this client cannot tell a ledger answer from a forged one"
        )
        raise Unauthorized(msg)
    trusted = trusted_keys(settings.ledger_keys_dir)
    return ReplyVerifier(settings.curve_secret_key_file, trusted, unsealed_codes=RETRYABLE_CODES)


class LedgerClient:
    """Typed calls to the ledger over any `Caller`; the caller's identity is the payer.

    Over a `Transport` with CURVE on, every answer is checked against its seal before it is
    decoded (`reply_verifier`): one not sealed by a trusted ledger key for this request raises
    `UnverifiedReply` (an Unauthorized), never a result; the broker's own "not answered" errors
    (SERVICE_UNAVAILABLE, INTERNAL, TIMEOUT) pass unsealed, as they settle nothing. Other
    callers (in-process tests) are taken as they answer.
    """

    def __init__(
        self, caller: Caller, *, service: str = LEDGER_SERVICE, timeout_ms: int | None = None
    ) -> None:
        self.caller = caller
        self.service = service
        self.timeout_ms = timeout_ms
        self._sealed: tuple[Transport, ReplyVerifier] | None = None
        if isinstance(caller, Transport):
            verifier = reply_verifier(caller.settings)
            self._sealed = None if verifier is None else (caller, verifier)

    def _call(self, message: BaseModel, reply_type: type[R]) -> R:
        if self._sealed is None:
            reply = self.caller.call(self.service, message, timeout_ms=self.timeout_ms).message
        else:
            transport, verifier = self._sealed
            decoded = verifier.call(transport, self.service, message, timeout_ms=self.timeout_ms)
            reply = decoded.message
        if not isinstance(reply, reply_type):
            msg = f"expected {reply_type.__name__}, got {type(reply).__name__}"
            raise InvalidRequest(msg)
        return reply

    def send_events(self, events: Sequence[LedgerWireEvent]) -> list[EventResult]:
        """One batch, one result per event in order (an Outbox `Sender`)."""
        request = LedgerEventsRequest(events=tuple(events))
        return list(self._call(request, LedgerEventsReply).results)

    def apply(self, event: LedgerWireEvent) -> EventResult:
        """One event; raises its typed error unless it was applied."""
        (result,) = self.send_events([event])
        return raise_for_result(result)

    def deposit(
        self, agent_id: str, amount_units: int, *, event_id: str | None = None
    ) -> EventResult:
        """Fund an agent's account (operators, or the agent itself with open deposits)."""
        return self.apply(
            DepositEvent(
                event_id=event_id or new_event_id(), agent_id=agent_id, amount_units=amount_units
            )
        )

    def open_account(self, kind: Literal["agent", "validator"], owner: str) -> BalanceReply:
        """Operators: open an agent or validator account so that it can be paid."""
        return self._call(OpenAccountRequest(kind=kind, owner=owner), BalanceReply)

    def balance(self, account: str | None = None) -> BalanceReply:
        return self._call(BalanceRequest(account=account), BalanceReply)

    def statement(
        self, account: str | None = None, *, after_entry_id: int = 0, limit: int = 100
    ) -> StatementReply:
        request = StatementRequest(account=account, after_entry_id=after_entry_id, limit=limit)
        return self._call(request, StatementReply)

    def quote(self, request: QuoteRequest) -> Quote:
        return self._call(request, Quote)

    def status(self, event_id: str) -> EventResult | None:
        """The recorded outcome of an event, or None if the ledger never applied it (or the
        caller is not one of its parties nor an operator: the ledger answers both alike)."""
        return self._call(SettlementStatusRequest(event_id=event_id), SettlementStatusReply).result

    def reservation(self, reservation_id: str) -> ReservationReply:
        """Payer, terms and state of a reservation (services and its payer only: else
        Unauthorized; an id the ledger does not hold: ReservationNotFound)."""
        request = ReservationRequest(reservation_id=reservation_id)
        return self._call(request, ReservationReply)
