"""Paid exchanges over HTTP (a priced align worker): an agent reserves through the gateway and
pays with its reservation; another agent's token can neither use it nor spend its balance."""

from __future__ import annotations

import time

import httpx
import numpy as np
import pytest

from latentmas_mesh.agents import AgentRegistry
from latentmas_mesh.artifacts.kv_map_store import KVMapStore
from latentmas_mesh.ledger import EventStatus
from latentmas_mesh.testing.agent_mesh import AgentMesh
from tests.gateway.conftest import DEPOSIT, cache_json, error_of
from tests.workers_align.conftest import GEMMA, SMOL, fitted_smol_to_gemma, kv_cache

pytestmark = pytest.mark.slow
API = "/api/latentmas"
PRICE = 10
FUNDS = 25


@pytest.fixture(scope="module")
def paid(tmp_path_factory):
    """A mesh whose align worker charges PRICE per exchange to the operator (creator); alice
    funded with FUNDS, bob with nothing."""
    root = tmp_path_factory.mktemp("paid")
    state = root / "state"
    with AgentRegistry(state) as registry:
        agents = {
            name: registry.add(name, operator=name == "ops") for name in ("alice", "bob", "ops")
        }
    creator = agents["ops"].agent.agent_id
    env = {
        "LATENTMAS_CACHE_DIR": str(root / "cache"),
        "LATENTMAS_ALIGNMENT_PRICE_UNITS": str(PRICE),
        "LATENTMAS_ALIGNMENT_CREATOR": creator,
        "LATENTMAS_LOG_LEVEL": "warning",
    }
    KVMapStore(root / "cache" / "kvmaps").put(
        fitted_smol_to_gemma(np.random.default_rng(7)), source=SMOL, target=GEMMA, version="1.0.0"
    )
    mesh = AgentMesh(state, extra_env=env)
    local = mesh.start(timeout_s=120)
    try:
        clients = {
            name: httpx.Client(
                base_url=local.gateway_url,
                timeout=60,
                headers={"authorization": f"Bearer {enrolment.token}"},
            )
            for name, enrolment in agents.items()
        }
        for name, units in (("alice", FUNDS), ("ops", 1)):  # ops: the creator's account opens
            body = {"event_id": f"fund-{name}", "agent_id": agents[name].agent.agent_id,
                    "amount_units": units}  # fmt: skip
            assert 200 == clients["ops"].post(DEPOSIT, json=body).status_code
        yield clients, creator
        for client in clients.values():
            client.close()
    finally:
        mesh.stop()


def reserve(client, event_id, creator, amount=PRICE):
    event = {"type": "reserve", "event_id": event_id, "creator": creator, "amount_units": amount,
             "expires_at_ms": int(time.time() * 1000) + 60_000}  # fmt: skip
    response = client.post(f"{API}/ledger/events", json={"events": [event]})
    assert 200 == response.status_code, response.text
    return response.json()["results"][0]


def align(client, rng, reservation_id=None):
    body = {"kv_cache": cache_json(kv_cache(SMOL, rng, seq=2)), "target_model": GEMMA,
            "reservation_id": reservation_id}  # fmt: skip
    return client.post(f"{API}/kv-cache/align", json=body)


def balance(client) -> int:
    return client.get(f"{API}/ledger/balance").json()["balance_units"]


def test_an_agent_pays_for_its_exchange_with_its_own_reservation(paid, rng):
    clients, creator = paid
    alice = clients["alice"]
    before = balance(alice)

    unpaid = align(alice, rng)
    reserved = reserve(alice, "alice-r1", creator)
    served = align(alice, rng, "alice-r1")

    assert (402, "INSUFFICIENT_FUNDS") == error_of(unpaid)  # says what to reserve
    assert (0, None) == (reserved["status"], reserved["error"])
    assert 200 == served.status_code, served.text
    assert before - PRICE == balance(alice)


def test_another_agents_token_neither_uses_a_reservation_nor_spends_a_balance(paid, rng):
    clients, creator = paid
    alice, bob = clients["alice"], clients["bob"]
    reserve(alice, "alice-r2", creator)
    before = balance(alice)

    stolen = align(bob, rng, "alice-r2")
    bobs_own = reserve(bob, "bob-r1", creator)

    assert (403, "UNAUTHORIZED") == error_of(stolen)
    # bob was never funded: his own reservation draws on his account alone, which holds nothing
    assert (EventStatus.INSUFFICIENT_FUNDS, None) == (bobs_own["status"], bobs_own["error"])
    assert before == balance(alice)
    assert 0 == balance(bob)
