"""The SDK across a broker restart: the call in flight is answered, retried under its own id."""

from __future__ import annotations

import json
import threading
import time

import numpy as np
import pytest

from latentmas_mesh.testing.mesh import LocalMesh
from tests.client.conftest import open_client
from tests.workers_align.conftest import SMOL, kv_cache

pytestmark = pytest.mark.slow
BROKER_DOWN_S = 1.5  # longer than one attempt: the first one is certainly lost


@pytest.fixture(scope="module")
def mesh(tmp_path_factory):
    """A plaintext broker and one align worker (its log at info level, one line per request)."""
    env = {"LATENTMAS_CACHE_DIR": str(tmp_path_factory.mktemp("reconnect-cache"))}
    with LocalMesh({"align": 1}, env=env).start(timeout_s=120) as local:
        yield local


def request_ids_served(mesh: LocalMesh) -> list[str]:
    """The request id of every request the align worker logged as handled."""
    lines = mesh.worker_processes[0].log_path.read_text().splitlines()
    events = [json.loads(line) for line in lines if line.startswith("{")]
    return [event["request_id"] for event in events if event.get("event") == "request"]


@pytest.mark.parametrize("flavour", ["sync", "asyncio"])
def test_an_exchange_survives_a_broker_restart_under_one_request_id(mesh, flavour, rng):
    """SIGKILL the broker, call, restart it 1.5 s later: the exchange is answered within the
    deadline after at least two attempts, and every request the worker served meanwhile
    carried the call's own id."""
    request_id = f"reconnect-{flavour}"
    served_before = len(request_ids_served(mesh))
    cache = kv_cache(SMOL, rng, seq=3)
    client = open_client(flavour, mesh.broker_url, timeout_ms=30_000, attempt_timeout_ms=1_000)
    mesh.kill(mesh.broker)
    restart = threading.Timer(BROKER_DOWN_S, mesh.start_broker)
    restart.start()
    started = time.monotonic()
    try:
        reply = client.exchange_memory(cache, SMOL, SMOL, request_id=request_id)
        attempts = client.transport.attempts_total
    finally:
        restart.join()
        client.close()
    elapsed_s = time.monotonic() - started
    mesh.wait_for_workers(1, timeout_s=10)  # the module's next test finds the mesh whole

    np.testing.assert_array_equal(cache.keys, reply.kv_aligned.keys)
    assert attempts >= 2
    assert BROKER_DOWN_S < elapsed_s < 30
    assert {request_id} == set(request_ids_served(mesh)[served_before:])
