"""Prometheus metrics and structlog events of one broker: the routing state's observer."""

from __future__ import annotations

import bisect
import itertools
import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from broker.state import Body, ServiceStats
from latentmas_mesh.log import get_logger

LATENCY_BUCKETS_S = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
LOG_EVERY_S = 1.0
"""A flood of bad frames is counted in full but logged at most once a second per reason."""


class RequestCollector(Collector):
    """Request counts and latency histograms kept as plain integers on the broker's thread.

    The hot path adds to dicts (about 0.1 us, no lock); `publish()`, called from the broker's
    timer, swaps in an immutable snapshot that `collect()` (the HTTP thread) reads. Scrapes so
    lag by at most one timer tick. prometheus-client's own Counter and Histogram cost about
    1.7 us per request for the same two updates.
    """

    def __init__(self, buckets_s: tuple[float, ...]) -> None:
        self._bounds_us = [bound * 1e6 for bound in buckets_s]
        self._buckets_s = buckets_s
        self._counts: dict[tuple[str, str], int] = {}
        self._hits: dict[str, list[int]] = {}  # per service: one count per bucket, then +Inf
        self._sums_us: dict[str, int] = {}
        self._snapshot: tuple[dict[tuple[str, str], int], dict[str, list[int]], dict[str, int]]
        self._snapshot = ({}, {}, {})

    def add(self, service: str, outcome: str, elapsed_us: int) -> None:
        """Count one answered request."""
        key = (service, outcome)
        self._counts[key] = self._counts.get(key, 0) + 1
        hits = self._hits.get(service)
        if hits is None:
            hits = self._hits[service] = [0] * (len(self._bounds_us) + 1)
            self._sums_us[service] = 0
        hits[bisect.bisect_left(self._bounds_us, elapsed_us)] += 1
        self._sums_us[service] += elapsed_us

    def publish(self) -> None:
        """Make the current figures visible to scrapes."""
        self._snapshot = (
            dict(self._counts),
            {service: list(hits) for service, hits in self._hits.items()},
            dict(self._sums_us),
        )

    def collect(self) -> Iterator[Metric]:
        """What /metrics shows: a counter and a histogram, by service (and outcome)."""
        counts, hits, sums_us = self._snapshot
        requests = CounterMetricFamily(
            "latentmas_broker_requests",
            "Requests answered, by service and outcome (ok or the broker's error code).",
            labels=["service", "outcome"],
        )
        for (service, outcome), count in sorted(counts.items()):
            requests.add_metric([service, outcome], count)
        yield requests
        latency = HistogramMetricFamily(
            "latentmas_broker_request_seconds",
            "Time from accepting a request to sending its FINAL.",
            labels=["service"],
        )
        bounds = [str(bound) for bound in self._buckets_s] + ["+Inf"]
        for service, per_bucket in sorted(hits.items()):
            cumulative = list(itertools.accumulate(per_bucket))
            latency.add_metric(
                [service], list(zip(bounds, cumulative, strict=True)), sums_us[service] / 1e6
            )
        yield latency


class BrokerMetrics:
    """Counts requests, latency, requeues and rejected frames; gauges queue depth and workers.

    Metrics live in their own registry so that several brokers can run in one process (tests).
    Per-request log events are emitted at debug level only, and the request id is read from the
    body (`request_id_of`, which never raises) only when such an event will be written.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        request_id_of: Callable[[Body], str | None] = lambda body: None,
        log_requests: bool = False,
    ) -> None:
        self.registry = registry or CollectorRegistry()
        self._request_id_of = request_id_of
        self._log_requests = log_requests
        self._log = get_logger("broker")
        self._last_logged: dict[str, float] = {}
        self.requests = RequestCollector(LATENCY_BUCKETS_S)
        self.registry.register(self.requests)
        self.queue_depth = Gauge(
            "latentmas_broker_queue_depth",
            "Requests waiting for a worker, per service (scale worker pools on this).",
            ["service"],
            registry=self.registry,
        )
        self.workers = Gauge(
            "latentmas_broker_workers",
            "Registered workers per service and state (idle or busy).",
            ["service", "state"],
            registry=self.registry,
        )
        self.requeues = Counter(
            "latentmas_broker_requeues",
            "Requests handed to another worker after theirs died.",
            ["service"],
            registry=self.registry,
        )
        self.rejected_frames = Counter(
            "latentmas_broker_rejected_frames",
            "Messages dropped as malformed, unexpected or unauthorized, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self._names: dict[bytes, str] = {}
        self._gauged: set[str] = set()

    # ------------------------------------------------------------------------ Observer protocol

    def request_done(
        self, service: bytes, outcome: str, elapsed_us: int, request_body: Body
    ) -> None:
        """Count one answered request and its latency; log it when asked to (debug)."""
        name = self._names.get(service)
        if name is None:
            name = self._names[service] = service.decode(errors="replace")
        self.requests.add(name, outcome, elapsed_us)
        if self._log_requests or outcome != "ok":
            self._log.log(
                10 if outcome == "ok" else 20,
                "request",
                request_id=self._request_id_of(request_body),
                service=name,
                outcome=outcome,
                elapsed_ms=round(elapsed_us / 1000, 3),
            )

    def requeued(self, service: bytes, request_body: Body) -> None:
        """Count a requeue and log it with the request id."""
        name = service.decode(errors="replace")
        self.requeues.labels(name).inc()
        self._log.info("requeued", request_id=self._request_id_of(request_body), service=name)

    def rejected_frame(self, reason: str, peer: bytes, detail: str = "") -> None:
        """Count a dropped message; log it unless this reason was logged within the last second."""
        self.rejected_frames.labels(reason).inc()
        now = time.monotonic()
        if now - self._last_logged.get(reason, -LOG_EVERY_S) >= LOG_EVERY_S:
            self._last_logged[reason] = now
            self._log.warning("dropped", reason=reason, peer=peer.hex(), detail=detail)

    def rejected(self, reason: str, peer: bytes) -> None:
        """Observer hook: the routing state dropped a message."""
        self.rejected_frame(reason, peer)

    def worker_changed(self, change: str, service: bytes, peer: bytes) -> None:
        """Log a worker joining or leaving."""
        self._log.info(
            "worker", change=change, service=service.decode(errors="replace"), peer=peer.hex()
        )

    # ---------------------------------------------------------------------------------- gauges

    def update_gauges(self, stats: dict[bytes, ServiceStats]) -> None:
        """Publish request figures; set queue depth and worker gauges (gone services: zero)."""
        self.requests.publish()
        names = set()
        for service, numbers in stats.items():
            name = service.decode(errors="replace")
            names.add(name)
            self.queue_depth.labels(name).set(numbers.queued)
            self.workers.labels(name, "idle").set(numbers.idle_workers)
            self.workers.labels(name, "busy").set(numbers.busy_workers)
        for name in self._gauged - names:
            self.queue_depth.labels(name).set(0)
            self.workers.labels(name, "idle").set(0)
            self.workers.labels(name, "busy").set(0)
        self._gauged = names


__all__ = ["LATENCY_BUCKETS_S", "BrokerMetrics", "RequestCollector"]
