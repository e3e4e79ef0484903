"""Prometheus metrics and structlog events of one broker: the routing state's observer."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from broker.state import Body, ServiceStats
from latentmas_mesh.log import get_logger

LATENCY_BUCKETS_S = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
LOG_EVERY_S = 1.0
"""A flood of bad frames is counted in full but logged at most once a second per reason."""


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
        self.requests = Counter(
            "latentmas_broker_requests",
            "Requests answered, by service and outcome (ok or the broker's error code).",
            ["service", "outcome"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "latentmas_broker_request_seconds",
            "Time from accepting a request to sending its FINAL.",
            ["service"],
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )
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
        self._done: dict[tuple[bytes, str], tuple[Any, Any]] = {}
        self._gauged: set[str] = set()

    # ------------------------------------------------------------------------ Observer protocol

    def request_done(
        self, service: bytes, outcome: str, elapsed_us: int, request_body: Body
    ) -> None:
        """Count one answered request and observe its latency."""
        children = self._done.get((service, outcome))
        if children is None:
            name = service.decode(errors="replace")
            children = (self.requests.labels(name, outcome), self.latency.labels(name))
            self._done[(service, outcome)] = children
        children[0].inc()
        children[1].observe(elapsed_us / 1e6)
        if self._log_requests or outcome != "ok":
            self._log.log(
                10 if outcome == "ok" else 20,
                "request",
                request_id=self._request_id_of(request_body),
                service=service.decode(errors="replace"),
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
        """Set queue depth and worker gauges; services that disappeared are reset to zero."""
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


__all__ = ["LATENCY_BUCKETS_S", "BrokerMetrics"]
