"""Broker metrics and logs stay bounded under floods: labels for served services, limited lines."""

from __future__ import annotations

import time
import urllib.request

import pytest
import structlog
import zmq
from prometheus_client import generate_latest

from broker.metrics import OTHER, BrokerMetrics, LogLimit
from broker.state import BrokerState, Limits
from latentmas_mesh import mdp
from latentmas_mesh.errors import ErrorCode
from tests.broker.conftest import InProcessMesh
from workers.echo import SERVICE as ECHO

FLOOD_NAMES = 20_000
SCRAPE_BYTES_MAX = 100_000
REFUSALS = 5_000
FLOOD_TIMEOUT_S = 60.0
SERVICE_UNAVAILABLE = ErrorCode.SERVICE_UNAVAILABLE.value


class FakeClock:
    """Seconds that move only when a test says so."""

    def __init__(self) -> None:
        self.now_s = 0.0

    def __call__(self) -> float:
        return self.now_s


def error_reply(code, message, request_body):
    return [b"ERR", code.value.encode()]


def in_process(**limits):
    """Routing state and metrics wired together, with integer clocks and no socket."""
    metrics = BrokerMetrics()
    state = BrokerState(Limits(**limits), error_reply=error_reply, observer=metrics)
    return state, metrics


def request(state, service, now=0):
    return state.apply(b"C", mdp.parse(mdp.client_request(service, [b"x"])), now)


def rendered(metrics) -> str:
    return generate_latest(metrics.registry).decode()


def series_of(text, service) -> set[str]:
    """The metric names that have a sample labelled with `service`."""
    label = f'service="{service}"'
    return {line.split("{", 1)[0] for line in text.splitlines() if label in line}


def scrape(mesh) -> tuple[str, float]:
    """The broker's /metrics over HTTP, and how long the scrape took."""
    started = time.monotonic()
    url = f"http://127.0.0.1:{mesh.broker.metrics_port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        body = response.read().decode()
    return body, time.monotonic() - started


def scrape_containing(mesh, text) -> str | None:
    """The scraped body when it contains `text`, else None."""
    body, _ = scrape(mesh)
    return body if text in body else None


def flood(mesh, services, *, expected=None, batch=500, timeout_s=FLOOD_TIMEOUT_S) -> int:
    """One request per name from one DEALER, pipelined in batches; returns the replies read.

    Reading stops at `expected` replies (all, unless told), or when the time is up.
    """
    expected = len(services) if expected is None else expected
    socket = mesh.context.socket(zmq.DEALER)
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.RCVHWM, 0)
    socket.connect(mesh.endpoint)
    replies = 0
    try:
        for start in range(0, len(services), batch):
            for service in services[start : start + batch]:
                socket.send_multipart(mdp.client_request(service, [b"x"]))
            replies += _read_waiting(socket)
        deadline = time.monotonic() + timeout_s
        while replies < expected and time.monotonic() < deadline:
            if socket.poll(100):
                replies += _read_waiting(socket)
    finally:
        socket.close()
    return replies


def _read_waiting(socket) -> int:
    count = 0
    while True:
        try:
            socket.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            return count
        count += 1


def eventually(check, timeout_s=5.0):
    """Poll `check` until it returns a truthy value or the time is up; returns its last value."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


class TestServiceLabels:
    def test_request_for_a_service_no_worker_serves_counts_under_other(self):
        """A name no worker registered for never becomes a label of its own."""
        state, metrics = in_process(request_queue_us_max=10)
        request(state, b"nobody")
        request(state, b"mmi.whatever")
        state.tick(100)
        metrics.update_gauges(state.stats())

        text = rendered(metrics)

        assert "nobody" not in text
        assert "mmi.whatever" not in text
        assert f'latentmas_broker_requests_total{{outcome="ok",service="{OTHER}"}} 1.0' in text
        assert f'outcome="{SERVICE_UNAVAILABLE}",service="{OTHER}"}} 1.0' in text

    def test_mmi_service_keeps_its_own_label(self):
        """`mmi.service` is one fixed name, so it keeps its label without a worker."""
        state, metrics = in_process()
        state.apply(b"C", mdp.parse(mdp.client_request(b"mmi.service", [b"svc"])), 0)
        metrics.update_gauges(state.stats())

        assert 'outcome="ok",service="mmi.service"} 1.0' in rendered(metrics)

    def test_service_with_a_worker_is_labelled_by_its_name(self):
        """Once a worker registered, the service's requests and gauges carry its name."""
        state, metrics = in_process()
        state.apply(b"W", mdp.WorkerReady(b"svc", False), 0)
        request(state, b"svc")
        metrics.update_gauges(state.stats())

        text = rendered(metrics)

        assert 'latentmas_broker_workers{service="svc",state="busy"} 1.0' in text
        assert 'latentmas_broker_request_seconds_count{service="svc"}' not in text  # no FINAL yet
        assert 'latentmas_broker_queue_depth{service="svc"} 0.0' in text

    def test_every_series_of_a_gone_service_is_removed(self):
        """A worker leaves, the state drops its service: queue, workers, requeues, requests go."""
        state, metrics = in_process()
        state.apply(b"W1", mdp.WorkerReady(b"svc", False), 0)
        request(state, b"svc")
        state.apply(b"W1", mdp.WorkerDisconnect(False), 1)  # the request is requeued
        state.apply(b"W2", mdp.WorkerReady(b"svc", False), 2)
        address = state._workers[b"W2"].address
        state.apply(b"W2", mdp.WorkerFinal(address, (b"r",)), 3)
        metrics.update_gauges(state.stats())
        before = rendered(metrics)
        state.apply(b"W2", mdp.WorkerDisconnect(False), 4)
        metrics.update_gauges(state.stats())

        after = rendered(metrics)

        assert {
            "latentmas_broker_queue_depth",
            "latentmas_broker_workers",
            "latentmas_broker_requeues_total",
            "latentmas_broker_requests_total",
            "latentmas_broker_request_seconds_count",
        } <= series_of(before, "svc")
        assert set() == series_of(after, "svc")
        assert f'latentmas_broker_queue_depth{{service="{OTHER}"}} 0.0' in after

    def test_a_worker_for_a_service_named_other_cannot_erase_that_bucket(self):
        """A service named like the shared label stays in it, so its departure forgets nothing."""
        state, metrics = in_process(request_queue_us_max=10)
        request(state, b"nobody")
        state.tick(100)
        state.apply(b"W", mdp.WorkerReady(OTHER.encode(), False), 200)
        state.apply(b"W", mdp.WorkerDisconnect(False), 300)
        metrics.update_gauges(state.stats())

        assert f'outcome="{SERVICE_UNAVAILABLE}",service="{OTHER}"}} 1.0' in rendered(metrics)

    def test_a_worker_returning_after_its_service_was_dropped_labels_it_again(self):
        """A worker that comes back after its service was dropped gets a fresh label."""
        state, metrics = in_process()
        state.apply(b"W1", mdp.WorkerReady(b"svc", False), 0)
        state.apply(b"W1", mdp.WorkerDisconnect(False), 1)
        metrics.update_gauges(state.stats())
        state.apply(b"W2", mdp.WorkerReady(b"svc", False), 2)
        metrics.update_gauges(state.stats())

        assert 'latentmas_broker_workers{service="svc",state="idle"} 1.0' in rendered(metrics)


class TestLogLimit:
    def test_one_line_per_reason_per_interval_and_the_next_counts_the_skipped(self):
        """Within the interval lines are skipped; the first after it says how many."""
        clock = FakeClock()
        limit = LogLimit(1.0, clock)
        first = limit.admit(20, "request", "X")
        skipped = [limit.admit(20, "request", "X") for _ in range(3)]
        clock.now_s = 1.0

        assert ({}, [None] * 3, {"suppressed": 3}) == (
            first,
            skipped,
            limit.admit(20, "request", "X"),
        )

    def test_reasons_are_limited_separately(self):
        """One flooded reason does not silence another."""
        limit = LogLimit(1.0, FakeClock())
        limit.admit(20, "request", "A")

        assert ({}, {}) == (limit.admit(20, "request", "B"), limit.admit(20, "dropped", "A"))

    def test_worker_churn_and_requeues_are_limited_too_and_counted_in_full(self):
        """50 workers joining, leaving and requeueing write one line per reason, then the counts."""
        clock = FakeClock()
        metrics = BrokerMetrics(clock=clock)
        state = BrokerState(Limits(), error_reply=error_reply, observer=metrics)
        with structlog.testing.capture_logs() as logs:
            for n in range(50):
                state.apply(b"W%d" % n, mdp.WorkerReady(b"svc", False), 0)
                request(state, b"svc")  # each worker holds one request
            for n in range(50):
                state.apply(b"W%d" % n, mdp.WorkerDisconnect(False), 1)  # and it is requeued
            clock.now_s = 1.0
            metrics.update_gauges(state.stats())
        flushed = {
            (line["of"], line["reason"]): line["suppressed"]
            for line in logs
            if line["event"] == "suppressed"
        }

        assert 3 == len(logs) - len(flushed)  # ready, disconnected, requeued: one line each
        assert {
            ("worker", "ready"): 49,
            ("worker", "disconnected"): 49,
            ("requeued", ""): 49,
        } == flushed
        assert 50 == metrics.requeues.labels("svc")._value.get()

    def test_flush_reports_skipped_lines_no_later_line_reported(self):
        """When a flood stops, `flush` writes its count once the interval has passed."""
        clock = FakeClock()
        limit = LogLimit(1.0, clock)
        for _ in range(5):
            limit.admit(30, "dropped", "bad_header")
        with structlog.testing.capture_logs() as early:
            limit.flush()
        clock.now_s = 1.0
        with structlog.testing.capture_logs() as due:
            limit.flush()
            limit.flush()

        assert [] == early
        assert 1 == len(due)
        assert ("suppressed", "dropped", "bad_header", 4, "warning") == (
            due[0]["event"],
            due[0]["of"],
            due[0]["reason"],
            due[0]["suppressed"],
            due[0]["log_level"],
        )


@pytest.fixture
def flood_mesh():
    """A TCP mesh whose queued requests expire fast, with one echo worker."""
    mesh = InProcessMesh("tcp://127.0.0.1:*", request_queue_ms_max=200)
    mesh.echo()
    yield mesh
    mesh.close()


class TestFloodOverLoopback:
    def test_flood_of_service_names_keeps_the_scrape_small_and_fast(self, flood_mesh):
        """20,000 distinct names (plain and mmi.<n>): /metrics stays under 100 KB."""
        with flood_mesh.transport() as transport:
            transport.request(ECHO, [b"served"])
        half = FLOOD_NAMES // 2
        names = [f"flood.{n}".encode() for n in range(half)]
        names += [f"mmi.{n}".encode() for n in range(half)]

        answered = flood(flood_mesh, names)
        eventually(
            lambda: not any(n.startswith(b"flood.") for n in flood_mesh.broker.state.stats())
        )
        time.sleep(0.6)  # one gauge update after the state dropped the flooded names
        body, scrape_s = scrape(flood_mesh)

        assert FLOOD_NAMES == answered
        assert len(body.encode()) < SCRAPE_BYTES_MAX
        assert scrape_s < 1.0  # the old liveness probe's timeout
        assert f'service="{OTHER}"' in body
        assert f'latentmas_broker_requests_total{{outcome="ok",service="{ECHO}"}} 1.0' in body
        assert "flood." not in body
        assert 'service="mmi.1' not in body

    def test_series_of_a_service_go_when_its_last_worker_leaves(self, flood_mesh):
        """The echo service keeps its label while served, and loses every series after."""
        with flood_mesh.transport() as transport:
            transport.request(ECHO, [b"served"])
        idle = f'latentmas_broker_workers{{service="{ECHO}",state="idle"}} 1.0'
        served = eventually(lambda: scrape_containing(flood_mesh, idle))
        for worker, thread in flood_mesh.workers:
            worker.stop()
            thread.join(5)
        gone = eventually(lambda: ECHO not in scrape(flood_mesh)[0])

        assert served
        assert ECHO.encode() not in flood_mesh.broker.state.stats()
        assert gone


class TestLogFlood:
    def test_five_thousand_refusals_write_a_handful_of_lines_that_count_them_all(self):
        """Refusals are rate-limited per error code; the lines' suppressed counts add up."""
        mesh = InProcessMesh("tcp://127.0.0.1:*", service_queue_depth_max=1)
        try:
            with structlog.testing.capture_logs() as logs:
                # The first request waits in the queue (for 30 s), the other 5,000 are refused.
                answered = flood(mesh, [b"nobody"] * (REFUSALS + 1), expected=REFUSALS)
                eventually(lambda: _refusals_counted(_refusal_lines(logs)) >= REFUSALS)
        finally:
            mesh.close()
        lines = _refusal_lines(logs)

        assert REFUSALS == answered
        assert 1 <= len(lines) <= 10
        assert REFUSALS == _refusals_counted(lines)
        assert all("suppressed" in line for line in lines[1:])


def _refusal_lines(logs):
    """The refusal lines, and the lines that flush counts of skipped ones."""
    return [
        line
        for line in list(logs)
        if (line["event"] == "request" and line.get("outcome") == SERVICE_UNAVAILABLE)
        or (line["event"] == "suppressed" and line.get("reason") == SERVICE_UNAVAILABLE)
    ]


def _refusals_counted(lines) -> int:
    """Refusals the lines account for: one per request line, plus every suppressed count."""
    return sum((line["event"] == "request") + line.get("suppressed", 0) for line in lines)
