"""Pay-then-deliver for priced exchanges: check the caller's ledger reservation, post or void it."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from latentmas_mesh.errors import (
    Conflict,
    InsufficientFunds,
    InternalError,
    ProtocolError,
    ReservationClosed,
    ReservationNotFound,
    ServiceUnavailable,
    Unauthorized,
)
from latentmas_mesh.ledger import EventStatus
from latentmas_mesh.protocol.ledger import (
    LEDGER_SERVICE,
    EventResult,
    LedgerWireEvent,
    PostEvent,
    ReservationReply,
    VoidEvent,
)
from latentmas_mesh.settlement.ledger_client import raise_for_result
from latentmas_mesh.settlement.outbox import Outbox, is_retryable
from latentmas_mesh.transport import UnverifiedReply


class Ledger(Protocol):
    """What payments need of the ledger (`settlement.ledger_client.LedgerClient` has it)."""

    def reservation(self, reservation_id: str) -> ReservationReply: ...

    def send_events(self, events: Sequence[LedgerWireEvent]) -> list[EventResult]: ...


@dataclass(frozen=True, slots=True)
class Terms:
    """What one exchange costs and whom the caller's reservation must name (spec 7.4)."""

    price_units: int
    creator: str
    validators: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Payment:
    """A checked reservation and the ids of the one post (or void) that will close it.

    Both ids derive from (payer, request id), so a retried request closes the same reservation
    with the same event: the ledger answers it from its record, nothing is charged twice, and a
    retry naming another reservation is refused as a conflict.
    """

    reservation_id: str
    post_event_id: str
    void_event_id: str


def settlement_event_ids(identity: str, request_id: str) -> tuple[str, str]:
    """(post id, void id): `align-post-<h>`, `align-void-<h>`; h = SHA-256(payer, request id)."""
    digest = hashlib.sha256(f"{identity}\x1f{request_id}".encode()).hexdigest()[:40]
    return f"align-post-{digest}", f"align-void-{digest}"


class Payments:
    """Reservation check before the work, post (confirmed) before the reply, void on failure.

    Every post and void is written to the durable `outbox` before it is sent, so an event whose
    delivery fails is re-sent later (by whoever drains the outbox) and applied exactly once.
    A post is confirmed by the ledger before the work is delivered: a reservation that was
    already spent, voided or expired gets RESERVATION_CLOSED and no result.
    """

    def __init__(self, outbox: Outbox, ledger: Ledger) -> None:
        self.outbox = outbox
        self.ledger = ledger

    def open(
        self, terms: Terms, reservation_id: str | None, identity: str | None, request_id: str
    ) -> Payment:
        """A payment for this request, once the ledger shows `reservation_id` holding the price
        for this service's terms, paid by `identity`.

        Raises Unauthorized without an authenticated identity (nobody to charge) or when the
        reservation's payer is someone else; InsufficientFunds when the request carries no
        reservation, or one whose amount, creator or validators differ from `terms`;
        ReservationNotFound when the ledger holds no reservation of that id (never made, or
        refused for funds); ReservationClosed (details["status"]: posted, voided or expired)
        when it is no longer pending, unless this same request already spooled its post;
        Conflict only when this request id was already paid with another reservation. Details
        of each say what to reserve. Ledger unreachable: its Timeout / ServiceUnavailable; this
        worker not a ledger service: InternalError.
        """
        details = {
            "price_units": terms.price_units,
            "creator": terms.creator,
            "validators": list(terms.validators),
            "ledger_service": LEDGER_SERVICE,
            "reservation_id": reservation_id,
        }
        if identity is None:
            msg = "a paid exchange needs an authenticated identity (CURVE) to charge"
            raise Unauthorized(msg, details=details)
        if reservation_id is None:
            msg = (
                f"this exchange costs {terms.price_units} units: reserve them on {LEDGER_SERVICE}"
                f" (creator {terms.creator}) and send the reservation's event id as reservation_id"
            )
            raise InsufficientFunds(msg, details=details)
        reserved = self._lookup(reservation_id, details)
        _check_reservation(reserved, terms, identity, details)
        post_id, void_id = settlement_event_ids(identity, request_id)
        spooled = self.outbox.spooled(post_id)  # set: this request was paid for before (a retry)
        if isinstance(spooled, PostEvent) and spooled.reservation_id != reservation_id:
            msg = f"request {request_id!r} was already paid with another reservation"
            raise Conflict(msg, details={**details, "post_event_id": post_id})
        if reserved.status != "pending" and spooled is None:
            msg = f"reservation {reservation_id!r} is {reserved.status}: reserve again"
            raise ReservationClosed(msg, details={**details, "status": reserved.status})
        return Payment(reservation_id, post_id, void_id)

    def _lookup(self, reservation_id: str, details: dict[str, object]) -> ReservationReply:
        """The ledger's record of the reservation; unknown -> ReservationNotFound (our terms)."""
        try:
            return self.ledger.reservation(reservation_id)
        except ReservationNotFound as error:
            msg = (
                f"no reservation {reservation_id!r} on {LEDGER_SERVICE}: reserve"
                f" {details['price_units']} units for {details['creator']} first"
            )
            raise ReservationNotFound(msg, details=details) from error
        except Unauthorized as error:
            details = {"reservation_id": reservation_id}
            raise _operator_error(error, "lookup", details) from error

    def post(self, payment: Payment) -> EventResult:
        """Spool the post durably, then have the ledger apply it; its typed error if refused.

        A reservation closed while the work ran (its deadline passed, or another request spent
        it) is recorded by the ledger as such and raises ReservationClosed with its state.
        """
        event = PostEvent(event_id=payment.post_event_id, reservation_id=payment.reservation_id)
        self.outbox.add(event)  # Conflict: this request was paid with another reservation
        try:
            return raise_for_result(self._deliver(event))
        except Unauthorized as error:
            raise _operator_error(error, "post", {"event_id": event.event_id}) from error
        except ReservationClosed as error:
            rid = payment.reservation_id
            details: dict[str, object] = {
                "reservation_id": rid,
                "post_event_id": event.event_id,
                "event_status": error.details.get("status"),
            }
            state = self._closed_state(rid, error)
            if state is not None:
                details["status"] = state
            msg = f"reservation {rid!r} closed before this exchange was paid: reserve again"
            raise ReservationClosed(msg, details=details) from error

    def _closed_state(self, reservation_id: str, error: ReservationClosed) -> str | None:
        """posted, voided or expired: from the post's status, else asked of the ledger (None if
        it cannot say now; the code alone tells the caller what to do)."""
        if error.details.get("status") == EventStatus.RESERVATION_EXPIRED:
            return "expired"
        try:
            return self.ledger.reservation(reservation_id).status
        except ProtocolError:
            return None

    def void(self, payment: Payment, *, now: bool = False) -> None:
        """Spool a void (the work failed: the payer gets the funds back); delivered when drained,
        or `now`: sent at once too (the drain re-sends it if the ledger does not answer)."""
        event = VoidEvent(event_id=payment.void_event_id, reservation_id=payment.reservation_id)
        self.outbox.add(event)
        if not now:
            return
        with contextlib.suppress(ProtocolError):  # unreachable now: the drain sends it later
            self.outbox.acknowledge(self.ledger.send_events([event]))

    def _deliver(self, event: PostEvent) -> EventResult:
        """The ledger's final answer: recorded in the outbox already, or asked for now."""
        recorded = self.outbox.result(event.event_id)
        if recorded is not None:
            return recorded
        (result,) = self.ledger.send_events([event])  # Timeout etc.: stays pending, re-sent
        self.outbox.acknowledge([result])
        if is_retryable(result):
            msg = "the ledger could not confirm the payment; retry with the same request id"
            raise ServiceUnavailable(msg, details={"event_id": event.event_id})
        return result


def _operator_error(error: Unauthorized, action: str, details: dict[str, object]) -> InternalError:
    """An Unauthorized met while settling is the operator's to fix, never the payer's: the
    ledger does not trust this service's identity, or its answer (an UnverifiedReply) bore no
    seal of a trusted ledger key and was refused, so nothing is delivered on its word."""
    if isinstance(error, UnverifiedReply):
        msg = (
            f"the ledger's answer to this service's {action} is not sealed by a trusted ledger"
            " key: does LATENTMAS_LEDGER_KEYS_DIR hold the ledger workers' keys?"
        )
        return InternalError(msg, details={**details, "reason": error.details.get("reason")})
    msg = f"the ledger refused this service's {action}: is it in LATENTMAS_LEDGER_SERVICES?"
    return InternalError(msg, details=details)


def _check_reservation(
    reserved: ReservationReply,
    terms: Terms,
    identity: str,
    details: dict[str, object],
) -> None:
    """The requester is the payer and the reservation carries exactly the service's terms."""
    rid = reserved.reservation_id
    if reserved.payer != identity:
        msg = f"reservation {rid!r} is not yours: pay with a reservation of your own"
        raise Unauthorized(msg, details={"reservation_id": rid})
    held = (reserved.creator, tuple(sorted(reserved.validators)), reserved.amount_units)
    if held != (terms.creator, tuple(sorted(terms.validators)), terms.price_units):
        msg = (
            f"reservation {rid!r} pays {reserved.amount_units} units to {reserved.creator}"
            f" (validators {list(reserved.validators)}); this exchange costs exactly"
            f" {terms.price_units} to {terms.creator} (validators {list(terms.validators)})"
        )
        reserved_terms = {
            "reserved_units": reserved.amount_units,
            "reserved_creator": reserved.creator,
            "reserved_validators": list(reserved.validators),
        }
        raise InsufficientFunds(msg, details={**details, **reserved_terms})


__all__ = ["Ledger", "Payment", "Payments", "Terms", "settlement_event_ids"]
