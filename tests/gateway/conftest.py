"""The gateway's fixtures: a running gateway process in front of a CURVE mesh of broker,
ledger, align and wmatrix processes (`AgentMesh`), agents alice, bob and an operator."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import numpy as np
import pytest

from latentmas_mesh.agents import AgentRegistry, Enrolment
from latentmas_mesh.artifacts.kv_map_store import KVMapStore
from latentmas_mesh.protocol.anchors import RegisterAnchorsRequest
from latentmas_mesh.protocol.ledger import LEDGER_SERVICE
from latentmas_mesh.protocol.registry import WMATRIX_SERVICE
from latentmas_mesh.settlement.ledger_client import LedgerClient
from latentmas_mesh.testing.agent_mesh import MESH_KEYS, AgentMesh
from latentmas_mesh.transport import Transport, TransportSettings
from tests.workers_align.conftest import GEMMA, SMOL, fitted_smol_to_gemma, paired_anchors

MAPS_VERSION = "1.0.0"
JSON_BODY_BYTES_MAX = 8 << 20
TIMEOUT_S = 60.0
DEPOSIT = "/api/latentmas/ledger/deposit"


@dataclass
class Site:
    """The running gateway and what the tests need to reach it."""

    url: str
    agents: dict[str, Enrolment]
    state_dir: object
    mesh: AgentMesh

    def client(self, name: str | None = None, **headers: str) -> httpx.Client:
        """An HTTP client of the gateway, with `name`'s bearer token when given."""
        if name is not None:
            headers["authorization"] = f"Bearer {self.agents[name].token}"
        return httpx.Client(base_url=self.url, headers=headers, timeout=TIMEOUT_S)

    def agent_id(self, name: str) -> str:
        return self.agents[name].agent.agent_id


@contextlib.contextmanager
def running_site(root, extra_env: dict[str, str] | None = None) -> Iterator[Site]:
    """A gateway in front of a fresh CURVE mesh under `root`, prepared as `_prepare` says."""
    state = root / "state"
    with AgentRegistry(state) as registry:
        agents = {
            "alice": registry.add("alice"),
            "bob": registry.add("bob"),
            "ops": registry.add("ops", operator=True),
        }
    env = {
        "LATENTMAS_CACHE_DIR": str(root / "cache"),
        "LATENTMAS_ALIGNMENT_UNIFIED_DIM": "16",
        "LATENTMAS_JSON_BODY_BYTES_MAX": str(JSON_BODY_BYTES_MAX),
        "LATENTMAS_LOG_LEVEL": "warning",
        "LATENTMAS_MARKET_VALIDATORS": json.dumps([agents["ops"].agent.agent_id]),
        **(extra_env or {}),
    }
    mesh = AgentMesh(state, extra_env=env)
    mesh.start(timeout_s=120)
    try:
        found = Site(mesh.mesh.gateway_url, agents, state, mesh)
        _prepare(found, root, np.random.default_rng(20261203))
        yield found
    finally:
        mesh.stop()


@pytest.fixture(scope="package")
def site(tmp_path_factory) -> Iterator[Site]:
    with running_site(tmp_path_factory.mktemp("gateway")) as running:
        yield running


def operator_transport(site: Site, **overrides: object) -> Transport:
    """The operator agent's own CURVE connection (anchors are registered over ZeroMQ)."""
    state = site.state_dir
    settings = TransportSettings.model_validate({
        "broker_url": site.mesh.mesh.broker_url,
        "curve_secret_key_file": state / "keys" / "secrets" / "ops.key_secret",
        "curve_server_key_file": state / MESH_KEYS / "keys" / "broker" / "broker.key",
        "request_timeout_ms": 60_000,
        **overrides,
    })  # fmt: skip
    return Transport(settings)


def _prepare(site: Site, root, rng) -> None:
    """Anchors of both models registered, smollm2 -> gemma-3 KV maps stored, alice funded."""
    x, y = paired_anchors(rng)
    with operator_transport(site) as operator:
        for model, rows in ((SMOL, x), (GEMMA, y)):
            request = RegisterAnchorsRequest(model=model, anchor_set="corpus:v1", activations=rows)
            operator.call(WMATRIX_SERVICE, request)
    KVMapStore(root / "cache" / "kvmaps").put(
        fitted_smol_to_gemma(rng), source=SMOL, target=GEMMA, version=MAPS_VERSION
    )
    with site.client("ops") as ops:
        body = {
            "event_id": "fund-alice-0001",
            "agent_id": site.agent_id("alice"),
            "amount_units": 500,
        }
        response = ops.post(DEPOSIT, json=body)
        assert 200 == response.status_code, response.text
    ledger_keys = site.state_dir / MESH_KEYS / "keys" / "workers" / LEDGER_SERVICE
    with operator_transport(site, ledger_keys_dir=ledger_keys) as operator:
        LedgerClient(operator).open_account("validator", site.agent_id("ops"))  # paid its 5%


def error_of(response: httpx.Response) -> tuple[int, str]:
    """(status, protocol code) of an error answer, checking it has the one error body."""
    body = response.json()
    assert {"code", "message", "resolution", "details"} <= set(body), response.text
    return response.status_code, body["code"]


def cache_json(cache) -> dict:
    """A KVCache as the spec's JSON (nested lists)."""
    from latentmas_mesh.protocol.json_edge import to_jsonable

    return to_jsonable(cache)


__all__ = [
    "DEPOSIT", "MAPS_VERSION", "Site", "cache_json", "error_of", "operator_transport",
    "running_site",
]  # fmt: skip
