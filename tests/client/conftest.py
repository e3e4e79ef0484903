"""The SDK's fixtures: one CURVE mesh (broker, ledger, align, wmatrix) and a client per flavour."""

from __future__ import annotations

import asyncio
import inspect
import json

import numpy as np
import pytest

from latentmas_mesh.artifacts.kv_map_store import KVMapStore
from latentmas_mesh.client import AsyncMeshClient, MeshClient, MeshKeys
from latentmas_mesh.protocol.anchors import RegisterAnchorsRequest
from latentmas_mesh.protocol.registry import WMATRIX_SERVICE
from latentmas_mesh.settlement.ledger_client import LedgerClient
from latentmas_mesh.testing.ledger_mesh import LedgerNet
from tests.registry.conftest import open_entry
from tests.workers_align.conftest import GEMMA, SMOL, fitted_smol_to_gemma, paired_anchors

MAPS_VERSION = "1.0.0"  # smollm2 -> gemma-3 KV maps, information_retention 0.8 (stated)
FUNDS = 1_000
EXTRA_MODEL = "acme-1b"  # in the workers' operator registry file only
TIMEOUT_MS = 60_000


@pytest.fixture(scope="package")
def net(tmp_path_factory):
    """Broker, ledger, align and wmatrix workers, all CURVE, sharing a cache dir; the workers
    read an operator registry file adding EXTRA_MODEL; anchors of smollm2 and gemma-3 are
    registered, smollm2 -> gemma-3 KV maps stored, and agent alice funded with FUNDS."""
    root = tmp_path_factory.mktemp("sdk-mesh")
    extra = root / "operator-models.json"
    extra.write_text(json.dumps({"models": [open_entry(EXTRA_MODEL)]}), encoding="utf-8")
    ledger_net = LedgerNet(root, clients=("alice",))
    ledger_net.extra_env = {
        "LATENTMAS_CACHE_DIR": str(root / "cache"),
        "LATENTMAS_ALIGNMENT_UNIFIED_DIM": "16",
        "LATENTMAS_REGISTRY_PATH": str(extra),
    }
    mesh = ledger_net.start()
    try:
        mesh.start_worker("align")
        mesh.start_worker("wmatrix")
        mesh.wait_for_workers(3, timeout_s=120)
        _prepare(ledger_net, root, np.random.default_rng(20260125))
        yield ledger_net
    finally:
        ledger_net.stop()


def _prepare(ledger_net: LedgerNet, root, rng) -> None:
    x, y = paired_anchors(rng)
    with ledger_net.transport("operator") as operator:
        for model, rows in ((SMOL, x), (GEMMA, y)):
            request = RegisterAnchorsRequest(model=model, anchor_set="corpus:v1", activations=rows)
            operator.call(WMATRIX_SERVICE, request, timeout_ms=TIMEOUT_MS)
        LedgerClient(operator).deposit(ledger_net.identity("alice"), FUNDS)
    KVMapStore(root / "cache" / "kvmaps").put(
        fitted_smol_to_gemma(rng), source=SMOL, target=GEMMA, version=MAPS_VERSION
    )


@pytest.fixture(scope="package")
def alice_keys(net) -> MeshKeys:
    """Alice's CURVE files, as LedgerNet lays them out."""
    settings = net.transport("alice").settings
    return MeshKeys(
        secret_key_file=settings.curve_secret_key_file,
        broker_key_file=settings.curve_server_key_file,
        ledger_keys_dir=settings.ledger_keys_dir,
    )


class Blocking:
    """An AsyncMeshClient driven from a test: each coroutine method runs to completion on the
    adapter's own event loop (its sockets belong to that loop), everything else passes."""

    def __init__(self, client: AsyncMeshClient) -> None:
        self._client = client
        self._loop = asyncio.new_event_loop()

    def __getattr__(self, name: str):
        attribute = getattr(self._client, name)
        if not inspect.iscoroutinefunction(attribute):
            return attribute
        return lambda *args, **kwargs: self._loop.run_until_complete(attribute(*args, **kwargs))

    def close(self) -> None:
        self._client.close()
        self._loop.run_until_complete(self._loop.shutdown_default_executor())
        self._loop.close()


def open_client(flavour: str, url: str, **options):
    """A MeshClient, or an AsyncMeshClient behind `Blocking`: one test body for both."""
    if flavour == "sync":
        return MeshClient(url, **options)
    return Blocking(AsyncMeshClient(url, **options))


@pytest.fixture(params=["sync", "asyncio"])
def flavour(request) -> str:
    return request.param


@pytest.fixture
def client(net, alice_keys, flavour):
    """Alice's client of the net, in each flavour."""
    opened = open_client(flavour, net.mesh.broker_url, keys=alice_keys, timeout_ms=TIMEOUT_MS)
    yield opened
    opened.close()
