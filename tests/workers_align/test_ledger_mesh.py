"""A paid exchange through a CURVE mesh: broker, ledger worker and align worker as processes."""

from __future__ import annotations

import json
import time

import pytest

from latentmas_mesh.errors import (
    InsufficientFunds,
    InvalidRequest,
    ReservationClosed,
    ReservationNotFound,
)
from latentmas_mesh.protocol.align import ExchangeMemoryRequest
from latentmas_mesh.protocol.ledger import ReserveEvent
from latentmas_mesh.settlement.ledger_client import LedgerClient
from latentmas_mesh.settlement.payments import settlement_event_ids
from latentmas_mesh.testing.ledger_mesh import LedgerNet
from tests.workers_align.conftest import SMOL, kv_cache

ALIGN = "latentmas.align"
PRICE = 200
TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    """Broker + ledger worker + align worker, all CURVE; the align worker runs under its own key
    (listed for latentmas.align only), which the ledger lists as a trusted service, and checks
    the ledger's sealed answers with the net's ledger keys; exchanges cost PRICE units."""
    root = tmp_path_factory.mktemp("paid-align")
    ledger_net = LedgerNet(root, clients=("alice", "creator", "validator"))
    ledger_net.extra_env = {
        "LATENTMAS_LEDGER_SERVICES": json.dumps([ledger_net.worker_identity("align")]),
        "LATENTMAS_CACHE_DIR": str(root / "cache"),
        "LATENTMAS_ALIGNMENT_PRICE_UNITS": str(PRICE),
        "LATENTMAS_ALIGNMENT_CREATOR": ledger_net.identity("creator"),
        "LATENTMAS_ALIGNMENT_VALIDATORS": json.dumps([ledger_net.identity("validator")]),
    }
    mesh = ledger_net.start()
    try:
        mesh.start_worker("align")
        mesh.wait_for_workers(2, timeout_s=120)
        yield ledger_net
    finally:
        ledger_net.stop()


def exchange(rng, reservation_id: str | None) -> ExchangeMemoryRequest:
    return ExchangeMemoryRequest(
        kv_source=kv_cache(SMOL, rng), source_model=SMOL, target_model=SMOL,
        reservation_id=reservation_id,
    )  # fmt: skip


def fund(operator: LedgerClient, payer: str, creator: str, validator: str, units: int) -> None:
    """The operator funds the payer and opens the creator's and the validator's accounts."""
    operator.deposit(payer, units)
    operator.open_account("agent", creator)
    operator.open_account("validator", validator)


@pytest.mark.slow
class TestPaidExchangeThroughTheMesh:
    def test_reserve_exchange_retry_pays_once_80_15_5(self, net, rng):
        """Alice reserves, exchanges, retries the same request id: the reservation is posted
        once, she paid exactly the price, creator/platform/validator got 160/30/10; without a
        reservation the exchange is refused with INSUFFICIENT_FUNDS."""
        alice, creator, validator = (net.identity(n) for n in ("alice", "creator", "validator"))
        accounts = (f"agent:{alice}", f"agent:{creator}", "platform", f"validator:{validator}")
        with net.transport("operator") as t_operator, net.transport("alice") as t_alice:
            operator, payer = LedgerClient(t_operator), LedgerClient(t_alice)
            fund(operator, alice, creator, validator, 1_000)
            with pytest.raises(InsufficientFunds):
                t_alice.call(ALIGN, exchange(rng, None), timeout_ms=TIMEOUT_MS)
            payer.apply(ReserveEvent(
                event_id="alice-res-1", creator=creator, validators=(validator,),
                amount_units=PRICE, expires_at_ms=time.time_ns() // 1_000_000 + 60_000,
            ))  # fmt: skip
            request = exchange(rng, "alice-res-1")
            first = t_alice.call(ALIGN, request, request_id="alice-x-1", timeout_ms=TIMEOUT_MS)
            retry = t_alice.call(ALIGN, request, request_id="alice-x-1", timeout_ms=TIMEOUT_MS)
            posted = operator.status(settlement_event_ids(alice, "alice-x-1")[0])
            balances = tuple(operator.balance(a).balance_units for a in accounts)

        assert (request.kv_source.keys == first.message.kv_aligned.keys).all()
        assert (request.kv_source.keys == retry.message.kv_aligned.keys).all()
        assert ("post", 0, PRICE) == (posted.kind, posted.status, posted.amount_units)
        assert (1_000 - PRICE, 160, 30, 10) == balances

    def test_failed_exchange_is_voided_by_the_workers_outbox_drain(self, net, rng):
        """An exchange that fails spools a void; the worker's background drain delivers it and
        the payer's held funds come back (polled for at most 10 s)."""
        alice, creator, validator = (net.identity(n) for n in ("alice", "creator", "validator"))
        with net.transport("operator") as t_operator, net.transport("alice") as t_alice:
            operator, payer = LedgerClient(t_operator), LedgerClient(t_alice)
            fund(operator, alice, creator, validator, PRICE)
            before = payer.balance().balance_units
            payer.apply(ReserveEvent(
                event_id="alice-res-void", creator=creator, validators=(validator,),
                amount_units=PRICE, expires_at_ms=time.time_ns() // 1_000_000 + 60_000,
            ))  # fmt: skip
            held = payer.balance().balance_units
            wrong = exchange(rng, "alice-res-void")
            wrong = wrong.model_copy(update={"source_model": "gemma-3-270m"})
            with pytest.raises(InvalidRequest):
                t_alice.call(ALIGN, wrong, request_id="alice-x-void", timeout_ms=TIMEOUT_MS)
            deadline = time.monotonic() + 10
            while payer.balance().balance_units != before and time.monotonic() < deadline:
                time.sleep(0.05)
            after = payer.balance().balance_units
            voided = operator.status(settlement_event_ids(alice, "alice-x-void")[1])

        assert (before - PRICE, before) == (held, after)
        assert ("void", 0) == (voided.kind, voided.status)

    def test_unknown_and_spent_reservations_reach_the_payer_as_their_codes(self, net, rng):
        """Over the wire, an exchange naming a reservation the ledger never held answers
        RESERVATION_NOT_FOUND, and one naming a reservation already posted answers
        RESERVATION_CLOSED (status posted); neither is charged."""
        alice, creator, validator = (net.identity(n) for n in ("alice", "creator", "validator"))
        with net.transport("operator") as t_operator, net.transport("alice") as t_alice:
            operator, payer = LedgerClient(t_operator), LedgerClient(t_alice)
            fund(operator, alice, creator, validator, PRICE)
            with pytest.raises(ReservationNotFound) as missing:
                t_alice.call(ALIGN, exchange(rng, "alice-never-made"), timeout_ms=TIMEOUT_MS)
            payer.apply(ReserveEvent(
                event_id="alice-res-spent", creator=creator, validators=(validator,),
                amount_units=PRICE, expires_at_ms=time.time_ns() // 1_000_000 + 60_000,
            ))  # fmt: skip
            request = exchange(rng, "alice-res-spent")
            t_alice.call(ALIGN, request, request_id="alice-x-spent-1", timeout_ms=TIMEOUT_MS)
            after_paying = payer.balance().balance_units
            with pytest.raises(ReservationClosed) as closed:
                t_alice.call(ALIGN, request, request_id="alice-x-spent-2", timeout_ms=TIMEOUT_MS)
            after_refusal = payer.balance().balance_units

        assert ("RESERVATION_NOT_FOUND", "alice-never-made") == (
            missing.value.code, missing.value.details["reservation_id"]
        )  # fmt: skip
        assert ("RESERVATION_CLOSED", "posted") == (
            closed.value.code, closed.value.details["status"]
        )  # fmt: skip
        assert after_paying == after_refusal
