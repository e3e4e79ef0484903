"""The broker's memory is bounded in bytes: the probes of issue 12, against a broker process.

Peak RSS (VmHWM) of the broker process is read before and after a flood; its growth must stay
within the configured budget plus the documented overhead: while one message is handed to the
routing state, ZeroMQ's I/O thread may already hold the next ones it read from the socket.
"""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

import pytest
import zmq

from latentmas_mesh import codec, mdp
from latentmas_mesh.errors import ErrorCode
from latentmas_mesh.testing.mesh import LocalMesh
from workers.echo import SERVICE as ECHO

pytestmark = pytest.mark.slow
MIB = 1 << 20
IN_TRANSIT_MESSAGES = 3
"""Overhead allowed on top of the budget: this many of the flood's messages held by ZeroMQ
(read from TCP, or not yet written to it) beside what the state counts."""
TIMEOUT_S = 60


def peak_rss_bytes(pid: int) -> int:
    """VmHWM: the largest resident set the process has had."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM in /proc status")


def dealer(url: str, **options: int) -> zmq.Socket[bytes]:
    socket = zmq.Context.instance().socket(zmq.DEALER)
    socket.setsockopt(zmq.LINGER, 0)
    for name, value in options.items():
        socket.setsockopt(getattr(zmq, name), value)
    socket.connect(url)
    return socket


def error_code(frames: list[bytes]) -> ErrorCode:
    reply = mdp.parse_reply(frames)
    return codec.decode(list(reply.body)).message.code


def test_a_gibibyte_of_queued_requests_stays_within_the_budget():
    """The probe: 16 requests of 64 MiB to a service with no worker once took the broker from
    82 to 1,106 MiB. With a 256 MiB budget, 4 are queued (then expire), 12 are refused at
    once with SERVICE_UNAVAILABLE, every one is answered, and RSS grows by the budget plus at
    most IN_TRANSIT_MESSAGES requests."""
    budget, size, count = 256 * MIB, 64 * MIB, 16
    env = {"LATENTMAS_BROKER_BYTES_MAX": str(budget), "LATENTMAS_REQUEST_QUEUE_MS_MAX": "3000"}
    with LocalMesh({}, env=env) as mesh:
        assert mesh.broker is not None
        before = peak_rss_bytes(mesh.broker.pid)
        client = dealer(mesh.broker_url)
        payload = b"\x01" * size
        for _ in range(count):
            client.send_multipart(mdp.client_request(b"tests.nobody", [payload]), copy=False)
        codes = []
        deadline = time.monotonic() + TIMEOUT_S
        while len(codes) < count and time.monotonic() < deadline:
            if client.poll(500):
                codes.append(error_code(client.recv_multipart()))
        growth = peak_rss_bytes(mesh.broker.pid) - before
        print(f"broker peak RSS {before / MIB:.0f} -> {(before + growth) / MIB:.0f} MiB")
        client.close()

    assert [ErrorCode.SERVICE_UNAVAILABLE] * count == codes
    assert growth <= budget + IN_TRANSIT_MESSAGES * size, f"grew {growth / MIB:.0f} MiB"


def test_a_client_that_never_reads_costs_its_share_then_loses_its_replies():
    """The probe: a client that never read 300 replies of 1 MiB took the broker from 77 to
    376 MiB. With a 32 MiB share, the broker grows by about the share, discards the rest
    (counted slow_consumer), and a well-behaved client is served throughout."""
    share, size, count = 32 * MIB, MIB, 300
    env = {"LATENTMAS_PEER_UNREAD_BYTES_MAX": str(share)}
    with LocalMesh({"echo": 1}, env=env) as mesh:
        assert mesh.broker is not None
        before = peak_rss_bytes(mesh.broker.pid)
        slow = dealer(mesh.broker_url, RCVHWM=1, RCVBUF=64 * 1024)
        payload = b"\x02" * size
        for _ in range(count):  # paced, so the queue stays short: what grows is unread replies
            slow.send_multipart(mdp.client_request(ECHO.encode(), [payload]), copy=False)
            time.sleep(0.004)
        with mesh.transport() as transport:
            served = transport.request(ECHO, [b"still served"], timeout_ms=10_000)
        discarded = wait_for_metric(mesh, 'reason="slow_consumer"', minimum=count // 2)
        growth = peak_rss_bytes(mesh.broker.pid) - before
        print(f"broker peak RSS {before / MIB:.0f} -> {(before + growth) / MIB:.0f} MiB")
        slow.close()

    assert [b"still served"] == [frame.bytes for frame in served]
    assert discarded >= count // 2
    assert growth <= share + IN_TRANSIT_MESSAGES * 8 * size, f"grew {growth / MIB:.0f} MiB"


def wait_for_metric(mesh: LocalMesh, label: str, *, minimum: int) -> int:
    """The broker's rejected_frames count for `label`, once it reaches `minimum` (or timeout)."""
    value = 0
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        with urllib.request.urlopen(mesh.metrics_url, timeout=5) as response:
            for line in response.read().decode().splitlines():
                if line.startswith("latentmas_broker_rejected_frames_total{") and label in line:
                    value = int(float(line.rsplit(" ", 1)[1]))
        if value >= minimum:
            break
        time.sleep(0.2)
    return value
