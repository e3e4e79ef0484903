"""The broker's HTTP endpoint: /healthz answers from the loop's pulse, never renders metrics."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request

import pytest
import zmq
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

import broker.server
from broker.http import HEALTH_PATH, start_http
from broker.server import Broker
from broker.settings import BrokerSettings

HEALTH_ANSWER_S_MAX = 0.5
WAIT_S = 10.0


class SlowCollector(Collector):
    """A scrape that renders until released: stands in for a huge /metrics."""

    def __init__(self) -> None:
        self.calls = 0
        self.entered = threading.Event()
        self.release = threading.Event()

    def collect(self):
        self.calls += 1
        self.entered.set()
        self.release.wait(WAIT_S)
        yield GaugeMetricFamily("slow_gauge", "A gauge that takes long to render.", value=1)


def get(port: int, path: str) -> tuple[int, bytes, float]:
    """Status, body and seconds of one GET on loopback."""
    started = time.monotonic()
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=WAIT_S) as response:
            status, body = response.status, response.read()
    except urllib.error.HTTPError as error:
        status, body = error.code, error.read()
    return status, body, time.monotonic() - started


@pytest.fixture
def serve():
    """Starts `start_http` servers on loopback and stops them after the test."""
    servers = []

    def start(registry, healthy):
        server, port = start_http("127.0.0.1", 0, registry, healthy)
        servers.append(server)
        return port

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


class TestEndpoints:
    def test_metrics_serves_the_registry_as_prometheus_text(self, serve):
        """GET /metrics renders the registry, as prometheus_client's own server did."""
        registry = CollectorRegistry()
        Counter("probe_hits", "Hits.", registry=registry).inc()
        port = serve(registry, lambda: True)

        status, body, _ = get(port, "/metrics")

        assert 200 == status
        assert b"probe_hits_total 1.0" in body

    def test_healthz_is_503_when_not_healthy(self, serve):
        """An unhealthy broker answers 503, so a liveness probe restarts it."""
        port = serve(CollectorRegistry(), lambda: False)

        status, body, _ = get(port, HEALTH_PATH)

        assert (503, b"stalled\n") == (status, body)

    def test_healthz_answers_at_once_while_a_scrape_is_rendering(self, serve):
        """A scrape still rendering holds up neither /healthz nor its answer; it renders nothing."""
        registry = CollectorRegistry()
        slow = SlowCollector()
        registry.register(slow)
        port = serve(registry, lambda: True)
        scraped: list[tuple[int, bytes, float]] = []
        scraper = threading.Thread(target=lambda: scraped.append(get(port, "/metrics")))
        scraper.start()
        assert slow.entered.wait(WAIT_S)

        status, body, elapsed_s = get(port, HEALTH_PATH)
        slow.release.set()
        scraper.join(WAIT_S)

        assert (200, b"ok\n") == (status, body)
        assert elapsed_s < HEALTH_ANSWER_S_MAX
        assert 1 == slow.calls
        assert 200 == scraped[0][0]


class TestBrokerHealth:
    def test_healthz_follows_the_broker_loop(self, monkeypatch):
        """503 while the loop has not run for the limit; 200 once it runs, even mid-scrape."""
        monkeypatch.setattr(broker.server, "LOOP_SILENT_US_MAX", 100_000)
        context = zmq.Context()
        settings = BrokerSettings(bind=["tcp://127.0.0.1:*"], metrics_port=0, drain_ms_max=0)
        server = Broker(settings, context=context)
        thread = threading.Thread(target=server.run, daemon=True)
        slow = SlowCollector()
        scraper = threading.Thread(target=lambda: get(server.metrics_port or 0, "/metrics"))
        try:
            server.bind()
            assert server.metrics_port is not None
            time.sleep(0.2)  # bound, but the loop has not started
            before = get(server.metrics_port, HEALTH_PATH)[0]
            thread.start()
            assert server.ready.wait(WAIT_S)
            server.metrics.registry.register(slow)
            scraper.start()
            assert slow.entered.wait(WAIT_S)
            during, _, elapsed_s = get(server.metrics_port, HEALTH_PATH)
        finally:
            slow.release.set()
            if scraper.is_alive():
                scraper.join(WAIT_S)
            server.stop()
            thread.join(WAIT_S)
            server.close()
            context.destroy(linger=0)

        assert (503, 200) == (before, during)
        assert elapsed_s < HEALTH_ANSWER_S_MAX
