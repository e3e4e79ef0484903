"""Paid exchanges against the real ledger service, in process: reserve, post on delivery, void."""

from __future__ import annotations

import pytest

from latentmas_mesh.errors import (
    Conflict,
    InsufficientFunds,
    InternalError,
    InvalidRequest,
    ReservationClosed,
    ReservationNotFound,
    Timeout,
    Unauthorized,
)
from latentmas_mesh.ledger import ReservationStatus
from latentmas_mesh.ledger.sqlite import SqliteLedgerStore
from latentmas_mesh.protocol.align import ExchangeMemoryRequest
from latentmas_mesh.protocol.ledger import (
    BalanceRequest,
    DepositEvent,
    EventResult,
    LedgerEventsRequest,
    OpenAccountRequest,
    PostEvent,
    ReservationReply,
    ReservationRequest,
    ReserveEvent,
    VoidEvent,
)
from latentmas_mesh.services.ledger import LedgerPolicy, LedgerService
from latentmas_mesh.settlement.outbox import Outbox
from latentmas_mesh.settlement.payments import Payments, settlement_event_ids
from latentmas_mesh.transport import UnverifiedReply
from tests.workers_align.conftest import GEMMA, SMOL, kv_cache, make_service

NOW_MS = 1_000_000
PRICE = 200
WORKER, OPERATOR, PAYER, CREATOR, VALIDATOR = "align-worker", "op", "payer", "maps-owner", "val-1"


class InProcessLedger:
    """`latentmas.ledger` without a broker: each call reaches the service as `identity` would."""

    def __init__(self, service: LedgerService, identity: str) -> None:
        self.service, self.identity = service, identity
        self.sent = 0

    def reservation(self, reservation_id: str) -> ReservationReply:
        request = ReservationRequest(reservation_id=reservation_id)
        return self.service.handle(request, self.identity)

    def send_events(self, events) -> list[EventResult]:
        self.sent += len(events)
        request = LedgerEventsRequest(events=tuple(events))
        return list(self.service.handle(request, self.identity).results)

    def balance(self, account: str) -> int:
        return self.service.handle(BalanceRequest(account=account), OPERATOR).balance_units


class FlakyLedger(InProcessLedger):
    """Unreachable for its first `failures` event batches (a Timeout, as a transport raises)."""

    def __init__(self, service: LedgerService, identity: str, failures: int) -> None:
        super().__init__(service, identity)
        self.failures = failures

    def send_events(self, events) -> list[EventResult]:
        if self.failures:
            self.failures -= 1
            raise Timeout("the ledger did not answer")
        return super().send_events(events)


class ForgedLedger(InProcessLedger):
    """The answers to `forged` calls ("reservation" or "send_events") come unsealed by a trusted
    ledger key: the SDK's ledger client raises UnverifiedReply for them, as over the wire."""

    def __init__(self, service: LedgerService, identity: str, forged: str) -> None:
        super().__init__(service, identity)
        self.forged = forged

    def reservation(self, reservation_id: str) -> ReservationReply:
        if self.forged == "reservation":
            raise UnverifiedReply("no seal", details={"reason": "missing"})
        return super().reservation(reservation_id)

    def send_events(self, events) -> list[EventResult]:
        if self.forged == "send_events":
            raise UnverifiedReply("sealed by a stranger", details={"reason": "untrusted_key"})
        return super().send_events(events)


class Clock:
    """The ledger's clock, moved by hand."""

    def __init__(self) -> None:
        self.now_ms = NOW_MS

    def __call__(self) -> int:
        return self.now_ms


class LateLedger(InProcessLedger):
    """Its event batches arrive `late_ms` after the ledger's clock said: the work took that long."""

    def __init__(self, service: LedgerService, identity: str, clock: Clock, late_ms: int) -> None:
        super().__init__(service, identity)
        self.clock, self.late_ms = clock, late_ms

    def send_events(self, events) -> list[EventResult]:
        self.clock.now_ms += self.late_ms
        return super().send_events(events)


@pytest.fixture
def ledger(tmp_path):
    """A funded payer (1,000 units), an open creator and validator; the worker is a service.
    The ledger's clock is `ledger.clock` (a Clock at NOW_MS)."""
    policy = LedgerPolicy(
        quote_key=b"k" * 32, services=frozenset({WORKER}), operators=frozenset({OPERATOR})
    )
    service = LedgerService(SqliteLedgerStore(tmp_path / "ledger.db"), policy, clock=Clock())
    operator = InProcessLedger(service, OPERATOR)
    operator.send_events([DepositEvent(event_id="fund", agent_id=PAYER, amount_units=1_000)])
    service.handle(OpenAccountRequest(kind="agent", owner=CREATOR), OPERATOR)
    service.handle(OpenAccountRequest(kind="validator", owner=VALIDATOR), OPERATOR)
    return service


def reserve(
    service: LedgerService,
    event_id: str,
    amount_units: int = PRICE,
    *,
    creator: str = CREATOR,
    validators: tuple[str, ...] = (VALIDATOR,),
    payer: str = PAYER,
) -> None:
    event = ReserveEvent(
        event_id=event_id, creator=creator, validators=validators,
        amount_units=amount_units, expires_at_ms=NOW_MS + 60_000,
    )  # fmt: skip
    (result,) = InProcessLedger(service, payer).send_events([event])
    assert result.error is None


def paid_service(tmp_path, ledger_client):
    outbox = Outbox(tmp_path / "outbox.sqlite3")
    payments = Payments(outbox, ledger_client)
    return make_service(tmp_path, PRICE, payments, validators=(VALIDATOR,)), outbox


def exchange(rng, reservation_id, source=SMOL):
    return ExchangeMemoryRequest(
        kv_source=kv_cache(SMOL, rng), source_model=source, target_model=SMOL,
        reservation_id=reservation_id,
    )  # fmt: skip


def balances(client: InProcessLedger) -> tuple[int, int, int, int]:
    return (
        client.balance(f"agent:{PAYER}"),
        client.balance(f"agent:{CREATOR}"),
        client.balance("platform"),
        client.balance(f"validator:{VALIDATOR}"),
    )


class TestPaidExchange:
    def test_delivery_posts_the_reservation_80_15_5(self, tmp_path, ledger, rng):
        """The reply comes once the post is applied: the payer paid the price, split 160/30/10."""
        client = InProcessLedger(ledger, WORKER)
        service, outbox = paid_service(tmp_path, client)
        reserve(ledger, "res-1")

        reply = service.handle_align(exchange(rng, "res-1"), PAYER, "req-1")

        post_id, _ = settlement_event_ids(PAYER, "req-1")
        assert (SMOL, 0) == (reply.kv_aligned.source_model, outbox.pending_count())
        assert (800, 160, 30, 10) == balances(client)
        assert ReservationStatus.POSTED == ledger.store.reservation("res-1").status
        assert "post" == outbox.result(post_id).kind

    def test_retry_with_the_same_request_id_charges_once(self, tmp_path, ledger, rng):
        """A re-delivered request is answered again from the outbox's record, not charged."""
        client = InProcessLedger(ledger, WORKER)
        service, _ = paid_service(tmp_path, client)
        reserve(ledger, "res-1")

        service.handle_align(exchange(rng, "res-1"), PAYER, "req-1")
        sent_once = client.sent
        again = service.handle_align(exchange(rng, "res-1"), PAYER, "req-1")

        assert (SMOL, sent_once) == (again.kv_aligned.source_model, client.sent)
        assert (800, 160, 30, 10) == balances(client)

    def test_retry_naming_another_reservation_is_a_conflict(self, tmp_path, ledger, rng):
        """Same request, second reservation: refused, and the second reservation is not spent."""
        client = InProcessLedger(ledger, WORKER)
        service, _ = paid_service(tmp_path, client)
        reserve(ledger, "res-1")
        reserve(ledger, "res-2")
        service.handle_align(exchange(rng, "res-1"), PAYER, "req-1")

        with pytest.raises(Conflict):
            service.handle_align(exchange(rng, "res-2"), PAYER, "req-1")

        assert ReservationStatus.PENDING == ledger.store.reservation("res-2").status

    def test_a_spent_reservation_buys_nothing_more(self, tmp_path, ledger, rng):
        """Another request naming an already posted reservation gets no result:
        RESERVATION_CLOSED, status posted."""
        client = InProcessLedger(ledger, WORKER)
        service, _ = paid_service(tmp_path, client)
        reserve(ledger, "res-1")
        service.handle_align(exchange(rng, "res-1"), PAYER, "req-1")

        with pytest.raises(ReservationClosed) as caught:
            service.handle_align(exchange(rng, "res-1"), PAYER, "req-2")

        assert "posted" == caught.value.details["status"]
        assert (800, 160, 30, 10) == balances(client)

    def test_failed_work_voids_the_reservation(self, tmp_path, ledger, rng):
        """An exchange that fails spools a void; once drained the payer has every unit back."""
        client = InProcessLedger(ledger, WORKER)
        service, outbox = paid_service(tmp_path, client)
        reserve(ledger, "res-1")

        with pytest.raises(InvalidRequest):
            service.handle_align(exchange(rng, "res-1", source=GEMMA), PAYER, "req-1")
        pending = outbox.pending_count()
        left = outbox.drain(client.send_events, deadline_s=5.0)

        assert (1, 0) == (pending, left)
        assert (1_000, 0, 0, 0) == balances(client)
        assert ReservationStatus.VOIDED == ledger.store.reservation("res-1").status

    def test_unconfirmed_post_is_delivered_later_and_the_retry_is_free(self, tmp_path, ledger, rng):
        """Ledger away at post time: TIMEOUT, the post waits in the outbox; drained, it charges
        once, and the retry (same request id) gets the result without a second charge."""
        client = FlakyLedger(ledger, WORKER, failures=1)
        service, outbox = paid_service(tmp_path, client)
        reserve(ledger, "res-1")

        with pytest.raises(Timeout):
            service.handle_align(exchange(rng, "res-1"), PAYER, "req-1")
        left = outbox.drain(client.send_events, deadline_s=5.0)
        again = service.handle_align(exchange(rng, "res-1"), PAYER, "req-1")

        assert (0, SMOL) == (left, again.kv_aligned.source_model)
        assert (800, 160, 30, 10) == balances(client)


class TestPaymentRefused:
    def test_request_without_reservation_gets_insufficient_funds_with_terms(
        self, tmp_path, ledger, rng
    ):
        """No reservation_id: INSUFFICIENT_FUNDS whose details say what to reserve, for whom."""
        service, _ = paid_service(tmp_path, InProcessLedger(ledger, WORKER))

        with pytest.raises(InsufficientFunds) as caught:
            service.handle_align(exchange(rng, None), PAYER, "req-1")

        details = caught.value.details
        assert (PRICE, CREATOR, [VALIDATOR], "latentmas.ledger") == (
            details["price_units"], details["creator"], details["validators"],
            details["ledger_service"],
        )  # fmt: skip

    def test_reservation_of_another_amount_gets_insufficient_funds(self, tmp_path, ledger, rng):
        """A reservation holding less than the price is refused before any work."""
        client = InProcessLedger(ledger, WORKER)
        service, outbox = paid_service(tmp_path, client)
        reserve(ledger, "res-1", amount_units=PRICE - 1)

        with pytest.raises(InsufficientFunds):
            service.handle_align(exchange(rng, "res-1"), PAYER, "req-1")

        assert 0 == outbox.pending_count()

    @pytest.mark.parametrize("reservation", ["never-made", "refused"])
    def test_reservation_the_ledger_does_not_hold_gets_reservation_not_found(
        self, tmp_path, ledger, rng, reservation
    ):
        """An id never reserved, or a reserve the ledger refused for funds: RESERVATION_NOT_FOUND
        before any work (not INSUFFICIENT_FUNDS, not INVALID_REQUEST), details give the terms."""
        client = InProcessLedger(ledger, WORKER)
        service, outbox = paid_service(tmp_path, client)
        if reservation == "refused":
            event = ReserveEvent(  # more than the payer has: the ledger records a refusal
                event_id=reservation, creator=CREATOR, validators=(VALIDATOR,),
                amount_units=5_000, expires_at_ms=NOW_MS + 60_000,
            )  # fmt: skip
            InProcessLedger(ledger, PAYER).send_events([event])

        with pytest.raises(ReservationNotFound) as caught:
            service.handle_align(exchange(rng, reservation), PAYER, "req-1")

        details = caught.value.details
        assert ("RESERVATION_NOT_FOUND", reservation, PRICE, CREATOR, 0) == (
            caught.value.code, details["reservation_id"], details["price_units"],
            details["creator"], outbox.pending_count(),
        )  # fmt: skip

    def test_someone_elses_reservation_is_unauthorized(self, tmp_path, ledger, rng):
        """A caller naming another agent's reservation id is refused; that reservation stays."""
        service, outbox = paid_service(tmp_path, InProcessLedger(ledger, WORKER))
        reserve(ledger, "res-1")

        with pytest.raises(Unauthorized):
            service.handle_align(exchange(rng, "res-1"), "thief", "req-1")

        assert (0, ReservationStatus.PENDING) == (
            outbox.pending_count(),
            ledger.store.reservation("res-1").status,
        )

    @pytest.mark.parametrize(
        ("creator", "validators"),
        [(PAYER, (VALIDATOR,)), (CREATOR, ()), (PAYER, ())],
        ids=["self-as-creator", "no-validators", "both"],
    )
    def test_reservation_crediting_other_parties_gets_insufficient_funds_with_terms(
        self, tmp_path, ledger, rng, creator, validators
    ):
        """Naming oneself creator (80% back) or dropping validators is refused before any work;
        details give the service's terms."""
        service, outbox = paid_service(tmp_path, InProcessLedger(ledger, WORKER))
        reserve(ledger, "res-1", creator=creator, validators=validators)

        with pytest.raises(InsufficientFunds) as caught:
            service.handle_align(exchange(rng, "res-1"), PAYER, "req-1")

        details = caught.value.details
        assert (PRICE, CREATOR, [VALIDATOR], 0, ReservationStatus.PENDING) == (
            details["price_units"], details["creator"], details["validators"],
            outbox.pending_count(), ledger.store.reservation("res-1").status,
        )  # fmt: skip

    @pytest.mark.parametrize("closing", ["posted", "voided", "expired", "swept"])
    def test_closed_reservation_is_reservation_closed_before_any_work(
        self, tmp_path, ledger, rng, closing
    ):
        """A reservation its payer posted or voided, or one past its deadline (swept or not),
        buys nothing: RESERVATION_CLOSED with its state, nothing spooled, no balance moves."""
        client = InProcessLedger(ledger, WORKER)
        service, outbox = paid_service(tmp_path, client)
        reserve(ledger, "res-1")
        payer = InProcessLedger(ledger, PAYER)
        if closing == "posted":
            payer.send_events([PostEvent(event_id="post-1", reservation_id="res-1")])
        if closing == "voided":
            payer.send_events([VoidEvent(event_id="void-1", reservation_id="res-1")])
        if closing in ("expired", "swept"):
            ledger.clock.now_ms = NOW_MS + 60_000
        if closing == "swept":
            ledger.store.expire_due(ledger.clock.now_ms)
        before = balances(client)

        with pytest.raises(ReservationClosed) as caught:
            service.handle_align(exchange(rng, "res-1"), PAYER, "req-1")

        state = "expired" if closing == "swept" else closing
        assert ("RESERVATION_CLOSED", state, 0, before) == (
            caught.value.code, caught.value.details["status"], outbox.pending_count(),
            balances(client),
        )  # fmt: skip

    def test_reservation_expiring_during_the_work_is_reservation_closed(
        self, tmp_path, ledger, rng
    ):
        """The deadline passes while the exchange runs: the post is refused as expired, the
        caller gets RESERVATION_CLOSED and no result, and the payer keeps every unit."""
        client = LateLedger(ledger, WORKER, ledger.clock, late_ms=60_000)
        service, outbox = paid_service(tmp_path, client)
        reserve(ledger, "res-1")

        with pytest.raises(ReservationClosed) as caught:
            service.handle_align(exchange(rng, "res-1"), PAYER, "req-1")

        post_id, _ = settlement_event_ids(PAYER, "req-1")
        assert ("expired", post_id, 0) == (
            caught.value.details["status"], caught.value.details["post_event_id"],
            outbox.pending_count(),
        )  # fmt: skip
        assert (1_000, 0, 0, 0) == balances(client)

    def test_reservation_spent_by_a_concurrent_request_is_reservation_closed(
        self, tmp_path, ledger, rng
    ):
        """Two requests check the same pending reservation; the one posting second is refused
        with RESERVATION_CLOSED (status posted, as the ledger says) and is charged nothing."""
        client = InProcessLedger(ledger, WORKER)
        service, outbox = paid_service(tmp_path, client)
        payments = Payments(outbox, client)
        reserve(ledger, "res-1")
        second = payments.open(service.policy.terms, "res-1", PAYER, "req-2")
        service.handle_align(exchange(rng, "res-1"), PAYER, "req-1")

        with pytest.raises(ReservationClosed) as caught:
            payments.post(second)

        assert ("posted", 0) == (caught.value.details["status"], outbox.pending_count())
        assert (800, 160, 30, 10) == balances(client)

    def test_paid_exchange_without_identity_is_unauthorized(self, tmp_path, ledger, rng):
        """Nobody to charge: refused before any work, nothing spooled."""
        service, outbox = paid_service(tmp_path, InProcessLedger(ledger, WORKER))
        reserve(ledger, "res-1")

        with pytest.raises(Unauthorized):
            service.handle_align(exchange(rng, "res-1"), None, "req-1")

        assert 0 == outbox.pending_count()

    def test_worker_not_trusted_by_the_ledger_is_an_internal_error(self, tmp_path, ledger, rng):
        """A worker identity missing from LATENTMAS_LEDGER_SERVICES is the operator's error."""
        service, _ = paid_service(tmp_path, InProcessLedger(ledger, "stranger"))
        reserve(ledger, "res-1")

        with pytest.raises(InternalError):
            service.handle_align(exchange(rng, "res-1"), PAYER, "req-1")

        assert ReservationStatus.PENDING == ledger.store.reservation("res-1").status

    @pytest.mark.parametrize("forged", ["reservation", "send_events"])
    def test_a_ledger_answer_without_a_trusted_seal_delivers_nothing(
        self, tmp_path, ledger, rng, forged
    ):
        """The reservation lookup or the post is answered by no trusted ledger key: the
        operator's error (INTERNAL, naming LATENTMAS_LEDGER_KEYS_DIR), nothing is delivered,
        and a refused post stays pending in the outbox instead of being taken as applied."""
        service, outbox = paid_service(tmp_path, ForgedLedger(ledger, WORKER, forged))
        reserve(ledger, "res-1")

        with pytest.raises(InternalError, match="LATENTMAS_LEDGER_KEYS_DIR") as caught:
            service.handle_align(exchange(rng, "res-1"), PAYER, "req-1")

        pending = 1 if forged == "send_events" else 0
        assert (pending, ReservationStatus.PENDING) == (
            outbox.pending_count(),
            ledger.store.reservation("res-1").status,
        )
        assert caught.value.details["reason"] in {"missing", "untrusted_key"}

    def test_priced_service_without_a_ledger_delivers_nothing(self, tmp_path, rng):
        """A price with no payments configured is refused plainly, never delivered unpaid."""
        service = make_service(tmp_path, PRICE)

        with pytest.raises(InternalError):
            service.handle_align(exchange(rng, "res-1"), PAYER, "req-1")

    def test_free_exchanges_touch_no_ledger(self, tmp_path, ledger, rng):
        """Price 0: no reservation needed, nothing sent or spooled."""
        client = InProcessLedger(ledger, WORKER)
        outbox = Outbox(tmp_path / "outbox.sqlite3")
        service = make_service(tmp_path, 0, Payments(outbox, client))

        service.handle_align(exchange(rng, None), PAYER, "req-1")

        assert (0, 0) == (client.sent, outbox.pending_count())
