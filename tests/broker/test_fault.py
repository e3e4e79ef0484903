"""Fault test: thousands of requests while workers are SIGKILLed at random and restarted."""

from __future__ import annotations

import random
import threading
import time
import urllib.request
from collections import Counter

import pytest

from latentmas_mesh import codec
from latentmas_mesh.errors import ProtocolError
from latentmas_mesh.testing.mesh import LocalMesh

from .kinds import SLOW_SERVICE
from .test_processes import ENV

pytestmark = pytest.mark.slow

CLIENTS = 4
REQUESTS_PER_CLIENT = 1_250
WORKERS = 4
KILL_PAUSE_S = (0.3, 0.9)
RUN_S_MAX = 90.0
WORK_S = b"0.002"  # each request holds its worker a little, so kills hit requests in flight


def client_run(mesh, client, outcomes, lock):
    """Sends REQUESTS_PER_CLIENT requests one by one and files each call's single outcome."""
    transport = mesh.transport(attempt_timeout_ms=1_500, request_timeout_ms=30_000, retries_max=20)
    local = Counter()
    try:
        for index in range(REQUESTS_PER_CLIENT):
            body = [WORK_S, b"c%d-r%d" % (client, index)]
            try:
                reply = transport.request(SLOW_SERVICE, body)
            except ProtocolError as error:
                local[f"error:{error.code.value}"] += 1
                continue
            frames = [frame.bytes for frame in reply]
            if frames == body:
                local["ok"] += 1
            else:
                try:  # a typed error made by the broker (e.g. requeues exhausted)
                    local[f"error:{codec.decode(reply).message.code.value}"] += 1
                except ProtocolError:
                    local["wrong_answer"] += 1  # someone else's reply, or a duplicate
        local["attempts"] += transport.attempts_total
    finally:
        transport.close()
        with lock:
            outcomes.update(local)


def broker_counter(mesh, name):
    """A counter's total over its labels, scraped from the broker's /metrics."""
    with urllib.request.urlopen(mesh.metrics_url, timeout=5) as response:
        lines = response.read().decode().splitlines()
    return sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith(name + "{"))


def killer(mesh, stop, kills):
    """SIGKILLs a random worker every little while and starts a replacement."""
    rng = random.Random(20260125)
    while not stop.wait(rng.uniform(*KILL_PAUSE_S)):
        alive = [p for p in mesh.worker_processes if p.alive()]
        if not alive:
            continue
        mesh.kill(rng.choice(alive))
        kills.append(time.monotonic())
        mesh.start_worker("slow")


def test_every_request_gets_exactly_one_answer_while_workers_are_killed():
    """5,000 requests from 4 clients while workers die by SIGKILL: none lost, none doubled."""
    outcomes: Counter[str] = Counter()
    lock = threading.Lock()
    kills: list[float] = []
    stop = threading.Event()
    with LocalMesh({"slow": WORKERS}, heartbeat_ms=100, env=ENV) as mesh:
        clients = [
            threading.Thread(target=client_run, args=(mesh, index, outcomes, lock))
            for index in range(CLIENTS)
        ]
        chaos = threading.Thread(target=killer, args=(mesh, stop, kills))
        started = time.monotonic()
        for thread in clients:
            thread.start()
        chaos.start()
        for thread in clients:
            thread.join(RUN_S_MAX)
        stop.set()
        chaos.join(30)
        elapsed = time.monotonic() - started
        time.sleep(0.6)  # the broker publishes its counters on its timer
        requeues = broker_counter(mesh, "latentmas_broker_requeues_total")
        broker_answers = broker_counter(mesh, "latentmas_broker_requests_total")
    answered = sum(n for key, n in outcomes.items() if key not in ("attempts",))
    print(
        f"\nfault test: {CLIENTS * REQUESTS_PER_CLIENT} requests in {elapsed:.1f} s, "
        f"{len(kills)} workers SIGKILLed, {requeues:.0f} requests requeued by the broker, "
        f"{broker_answers:.0f} answers sent by the broker; client outcomes {dict(outcomes)}"
    )

    assert CLIENTS * REQUESTS_PER_CLIENT == answered
    assert 0 == outcomes["wrong_answer"]
    assert broker_answers >= outcomes["ok"]  # every answer a client took, the broker counted
    assert len(kills) >= 5
    assert CLIENTS * REQUESTS_PER_CLIENT == outcomes["ok"] + sum(
        n for key, n in outcomes.items() if key.startswith("error:")
    )
