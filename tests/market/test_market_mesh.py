"""The markets end to end through the SDK over the real multiprocess CURVE mesh: broker,
ledger, align and market workers as processes; a SIGKILLed market worker recovers."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import threading
import time

import numpy as np
import pytest

from latentmas_mesh.artifacts.kv_map_store import KVMapStore
from latentmas_mesh.client import AsyncMeshClient, MeshClient, MeshKeys
from latentmas_mesh.errors import InsufficientFunds, QualityBelowThreshold, Unauthorized
from latentmas_mesh.market import split_revenue
from latentmas_mesh.protocol.market import ReasoningChain, ReasoningStep
from latentmas_mesh.settlement.ledger_client import LedgerClient
from latentmas_mesh.testing.ledger_mesh import LedgerNet
from tests.workers_align.conftest import GEMMA, SMOL, fitted_smol_to_gemma, kv_cache

FUNDS = 200_000
TIMEOUT_MS = 60_000


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def net(request, tmp_path_factory):
    """Broker, ledger, align (synthetic smollm2 -> gemma maps, free) and market workers; the
    ledger trusts the market worker as a service; "validator" may attest. The market's catalog
    is a SQLite file, or a PostgreSQL schema (both backends run every test)."""
    root = tmp_path_factory.mktemp("market-mesh")
    catalog_url = ""
    if request.param == "postgres":
        catalog_url = f"{request.getfixturevalue('postgres_dsn')}#market_mesh_{os.getpid()}"
    ledger_net = LedgerNet(root, clients=("buyer", "creator", "validator", "poor"))
    KVMapStore(root / "cache" / "kvmaps").put(
        fitted_smol_to_gemma(np.random.default_rng(5)), source=SMOL, target=GEMMA, version="1.0.0"
    )
    ledger_net.extra_env = {
        "LATENTMAS_LEDGER_SERVICES": json.dumps([ledger_net.worker_identity("market")]),
        "LATENTMAS_CACHE_DIR": str(root / "cache"),
        "LATENTMAS_MARKET_VALIDATORS": json.dumps([ledger_net.identity("validator")]),
        "LATENTMAS_MARKET_CATALOG_URL": catalog_url,
    }
    mesh = ledger_net.start()
    try:
        mesh.start_worker("align")
        mesh.start_worker("market")
        mesh.wait_for_workers(3, timeout_s=120)
        transport = ledger_net.transport("operator")
        operator = LedgerClient(transport)
        operator.deposit(ledger_net.identity("buyer"), FUNDS)
        operator.deposit(ledger_net.identity("poor"), 1)
        operator.open_account("agent", ledger_net.identity("creator"))
        operator.open_account("validator", ledger_net.identity("validator"))
        transport.close()
        yield ledger_net
    finally:
        ledger_net.stop()


def keys(net: LedgerNet, name: str) -> MeshKeys:
    folder = net.root / "keys"
    return MeshKeys(
        secret_key_file=folder / "clients" / f"{name}.key_secret",
        broker_key_file=folder / "broker" / "broker.key",
        ledger_keys_dir=net.ledger_keys_dir,
    )


def client(net: LedgerNet, name: str) -> MeshClient:
    return MeshClient(net.mesh.broker_url, keys=keys(net, name), timeout_ms=TIMEOUT_MS)


@pytest.mark.slow
class TestMarketsThroughTheMesh:
    def test_publish_find_buy_use_attest_and_the_split(self, net, rng):
        with client(net, "creator") as creator, client(net, "buyer") as buyer, \
                client(net, "validator") as validator:  # fmt: skip
            listed = creator.publish_memory(kv_cache(SMOL, rng), SMOL, "Q3 supplier contract",
                                            description="payment terms, penalties")  # fmt: skip
            validator.attest(listed.listing_id, GEMMA, 0.9, method="held-out anchors")
            found = buyer.search("memory", q="supplier contract")
            before = buyer.balance().balance_units

            delivery = buyer.use_memory(found.listings[0].listing_id, GEMMA, request_id="m-1")
            again = buyer.use_memory(listed.listing_id, GEMMA, request_id="m-1")

            split = split_revenue(delivery.charged_units, [net.identity("validator")])
            assert listed.listing_id == found.listings[0].listing_id
            assert GEMMA == delivery.kv_cache.source_model
            assert delivery == again
            assert before - delivery.charged_units == buyer.balance().balance_units
            assert split.creator_units == creator.balance().balance_units
            account = f"validator:{net.identity('validator')}"
            assert split.validators_units == validator.balance(account).balance_units

    def test_a_reasoning_chain_in_the_buyers_space_and_a_capability_bought_once(self, net, rng):
        chain = ReasoningChain(model=SMOL, steps=(
            ReasoningStep(text="List the obligations.", tokens=4, kv_cache=kv_cache(SMOL, rng)),
            ReasoningStep(text="Check each deadline.", tokens=4),
        ))  # fmt: skip
        embedding = rng.standard_normal(576).astype(np.float32)
        with client(net, "creator") as creator, client(net, "buyer") as buyer:
            chain_id = creator.publish_reasoning_chain(chain, "contract review").listing_id
            skill = creator.publish_capability(embedding, SMOL, "summarise").listing_id

            used = buyer.use_reasoning_chain(chain_id, GEMMA)
            first = buyer.buy_capability(skill, SMOL)
            balance = buyer.balance().balance_units
            second = buyer.buy_capability(skill, SMOL)

            assert (GEMMA, GEMMA) == (used.chain.model, used.chain.steps[0].kv_cache.source_model)
            assert (first.charged_units > 0, 0) == (True, second.charged_units)
            assert balance == buyer.balance().balance_units

    def test_refusals_charge_nothing(self, net, rng):
        with client(net, "creator") as creator, client(net, "buyer") as buyer, \
                client(net, "poor") as poor:  # fmt: skip
            listed = creator.publish_memory(kv_cache(SMOL, rng), SMOL, "notes")
            before = buyer.balance().balance_units

            with pytest.raises(InsufficientFunds):
                poor.use_memory(listed.listing_id, GEMMA)
            with pytest.raises(QualityBelowThreshold):
                buyer.use_memory(listed.listing_id, GEMMA, min_quality=0.99)
            with pytest.raises(Unauthorized):
                buyer.withdraw(listed.listing_id)

            assert 1 == poor.balance().balance_units
            deadline = time.monotonic() + 20  # the void reaches the ledger by the outbox drain
            while buyer.balance().balance_units != before and time.monotonic() < deadline:
                time.sleep(0.2)
            assert before == buyer.balance().balance_units

    def test_concurrent_buyers_never_overdraw_one_budget(self, net, rng):
        with client(net, "creator") as creator:
            listed = creator.publish_memory(kv_cache(SMOL, rng), SMOL, "shared budget")

        async def buy_many(count: int) -> list[object]:
            async with AsyncMeshClient(net.mesh.broker_url, keys=keys(net, "buyer"),
                                       timeout_ms=TIMEOUT_MS) as buyer:  # fmt: skip
                start = (await buyer.balance()).balance_units
                results = await asyncio.gather(
                    *(buyer.use_memory(listed.listing_id, GEMMA) for _ in range(count)),
                    return_exceptions=True,
                )
                return [start, (await buyer.balance()).balance_units, *results]

        start, end, *results = asyncio.run(buy_many(6))
        spent = [r.charged_units for r in results if not isinstance(r, BaseException)]
        assert all(not isinstance(r, BaseException) or isinstance(r, InsufficientFunds)
                   for r in results)  # fmt: skip
        assert end >= 0
        assert start - sum(spent) == end

    def test_a_sigkilled_market_worker_is_replaced_and_the_retry_charges_once(self, net, rng):
        with client(net, "creator") as creator, client(net, "buyer") as buyer:
            listed = creator.publish_memory(kv_cache(SMOL, rng), SMOL, "survives kill -9")
            first = buyer.use_memory(listed.listing_id, GEMMA, request_id="k-1")
            balance = buyer.balance().balance_units
            (market,) = [p for p in net.mesh.worker_processes if p.role == "market" and p.alive()]
            net.mesh.kill(market, signal.SIGKILL)
            net.mesh.worker_processes.remove(market)
            net.mesh.start_worker("market")
            net.mesh.wait_for_workers(3, timeout_s=120)

            again = buyer.use_memory(listed.listing_id, GEMMA, request_id="k-1")

            assert first == again
            assert balance == buyer.balance().balance_units

    def test_a_market_worker_killed_between_reserve_and_post_charges_once(self, net, rng):
        """SIGKILL while the use waits on the alignment (reserved, checked, not yet posted):
        the buyer's retry with the same request id reaches the new worker, which delivers and
        posts the same reservation once; nothing is charged twice or without a delivery."""
        with client(net, "creator") as creator:
            listed = creator.publish_memory(kv_cache(SMOL, rng), SMOL, "killed mid-use")
        (align,) = [p for p in net.mesh.worker_processes if p.role == "align" and p.alive()]
        (market,) = [p for p in net.mesh.worker_processes if p.role == "market" and p.alive()]
        with client(net, "buyer") as buyer:
            before = buyer.balance().balance_units
        answers: list[object] = []

        def use() -> None:
            with client(net, "buyer") as late:
                answers.append(late.use_memory(listed.listing_id, GEMMA, request_id="mid-1"))

        os.kill(align.pid, signal.SIGSTOP)
        try:
            worker = threading.Thread(target=use)
            worker.start()
            time.sleep(3)  # quoted, reserved, checked: the market waits on the align worker
            net.mesh.kill(market, signal.SIGKILL)
            net.mesh.worker_processes.remove(market)
        finally:
            os.kill(align.pid, signal.SIGCONT)
        net.mesh.start_worker("market")
        worker.join(timeout=TIMEOUT_MS / 1000)

        (delivery,) = answers
        with client(net, "buyer") as buyer:
            after = buyer.balance().balance_units
        assert GEMMA == delivery.kv_cache.source_model
        assert before - delivery.charged_units == after
