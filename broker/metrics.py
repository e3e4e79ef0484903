"""Prometheus metrics and structlog events of one broker: the routing state's observer."""

from __future__ import annotations

import bisect
import contextlib
import itertools
import math
import time
from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from broker.state import OUTCOME_OK, Body, ServiceStats
from latentmas_mesh import mdp
from latentmas_mesh.log import get_logger

LATENCY_BUCKETS_S = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
LOG_EVERY_S = 1.0
"""A flood (bad frames, refusals, expiries, worker churn) is counted in full but logged at most
once a second per reason."""
OTHER = "other"
"""The one label of every service that has never had a worker: any peer can name a service, so
its own label would let a flood of names grow /metrics without bound."""
FIXED_LABELS = {mdp.MMI_SERVICE: mdp.MMI_SERVICE.decode()}
"""Names that keep their own label although no worker serves them (one name each, so bounded)."""
DEBUG, INFO, WARNING = 10, 20, 30


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

    def forget(self, service: str) -> None:
        """Drop every figure of `service` (gone from the broker); the next publish shows it."""
        for key in [key for key in self._counts if key[0] == service]:
            del self._counts[key]
        self._hits.pop(service, None)
        self._sums_us.pop(service, None)

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


class LogLimit:
    """At most one log line per (event, reason) every `every_s`; later lines count the skipped.

    The line after skipped ones carries `suppressed=<count>`; `flush()` writes a `suppressed`
    line for a reason whose skipped lines no later line has reported within the interval, so the
    counts add up even when a flood stops. Keys are fixed strings of the broker's (events,
    error codes, drop reasons), so the tables stay small.
    """

    __slots__ = ("_clock", "_every_s", "_last_s", "_levels", "_log", "_skipped")

    def __init__(
        self, every_s: float = LOG_EVERY_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._every_s = every_s
        self._clock = clock
        self._log = get_logger("broker")
        self._last_s: dict[tuple[str, str], float] = {}
        self._skipped: dict[tuple[str, str], int] = {}
        self._levels: dict[tuple[str, str], int] = {}

    def admit(self, level: int, event: str, reason: str) -> dict[str, int] | None:
        """The extra fields for a line now (`suppressed` when lines were skipped), or None: skip."""
        key = (event, reason)
        now_s = self._clock()
        if now_s - self._last_s.get(key, -math.inf) < self._every_s:
            self._skipped[key] = self._skipped.get(key, 0) + 1
            self._levels[key] = level
            return None
        self._last_s[key] = now_s
        skipped = self._skipped.pop(key, 0)
        return {"suppressed": skipped} if skipped else {}

    def flush(self) -> None:
        """Report skipped lines that no later line reported within the interval."""
        now_s = self._clock()
        due = [key for key in self._skipped if now_s - self._last_s[key] >= self._every_s]
        for key in due:
            self._last_s[key] = now_s
            event, reason = key
            self._log.log(
                self._levels[key],
                "suppressed",
                of=event,
                reason=reason,
                suppressed=self._skipped.pop(key),
            )


class BrokerMetrics:
    """Counts requests, latency, requeues and rejected frames; gauges queue depth and workers.

    Metrics live in their own registry so that several brokers can run in one process (tests).
    A service is labelled by its name from a worker's READY until the routing state drops it
    (then every series of it goes); requests for any other name count under `OTHER`, so what a
    scrape renders is bounded by the state's own `services_max`. Per-request log events are
    emitted at debug level only; refusals and expiries at info, rate-limited per error code. The
    request id is read from the body (`request_id_of`, which never raises) only when such an
    event will be written.
    """

    def __init__(
        self,
        registry: CollectorRegistry | None = None,
        *,
        request_id_of: Callable[[Body], str | None] = lambda body: None,
        log_requests: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.registry = registry or CollectorRegistry()
        self._request_id_of = request_id_of
        self._log_requests = log_requests
        self._log = get_logger("broker")
        self.log_limit = LogLimit(LOG_EVERY_S, clock)
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
        self.held_bytes = Gauge(
            "latentmas_broker_held_bytes",
            "Request bodies held plus unread replies, against the broker's byte budget.",
            registry=self.registry,
        )
        self._labels: dict[bytes, str] = dict(FIXED_LABELS)

    # ------------------------------------------------------------------------ Observer protocol

    def request_done(
        self, service: bytes, outcome: str, elapsed_us: int, request_body: Body
    ) -> None:
        """Count one answered request and its latency; log a refusal or expiry (rate-limited)."""
        self.requests.add(self._labels.get(service, OTHER), outcome, elapsed_us)
        if outcome != OUTCOME_OK:
            extra = self.log_limit.admit(INFO, "request", outcome)
        elif self._log_requests:
            extra = {}
        else:
            return
        if extra is not None:
            self._log.log(
                DEBUG if outcome == OUTCOME_OK else INFO,
                "request",
                request_id=self._request_id_of(request_body),
                service=service.decode(errors="replace"),
                outcome=outcome,
                elapsed_ms=round(elapsed_us / 1000, 3),
                **extra,
            )

    def requeued(self, service: bytes, request_body: Body) -> None:
        """Count a requeue; log it with the request id (rate-limited)."""
        self.requeues.labels(self._labels.get(service, OTHER)).inc()
        extra = self.log_limit.admit(INFO, "requeued", "")
        if extra is not None:
            self._log.info(
                "requeued",
                request_id=self._request_id_of(request_body),
                service=service.decode(errors="replace"),
                **extra,
            )

    def rejected_frame(self, reason: str, peer: bytes, detail: str = "") -> None:
        """Count a dropped message; log it (rate-limited per reason)."""
        self.rejected_frames.labels(reason).inc()
        extra = self.log_limit.admit(WARNING, "dropped", reason)
        if extra is not None:
            self._log.warning("dropped", reason=reason, peer=peer.hex(), detail=detail, **extra)

    def rejected(self, reason: str, peer: bytes) -> None:
        """Observer hook: the routing state dropped a message."""
        self.rejected_frame(reason, peer)

    def worker_changed(self, change: str, service: bytes, peer: bytes) -> None:
        """Label a service once a worker registers for it; log the change (rate-limited)."""
        if change == "ready" and service not in self._labels:
            name = service.decode(errors="replace")
            if name != OTHER:  # a service named "other" is counted in that bucket, never erases it
                self._labels[service] = name
        extra = self.log_limit.admit(INFO, "worker", change)
        if extra is not None:
            self._log.info(
                "worker",
                change=change,
                service=service.decode(errors="replace"),
                peer=peer.hex(),
                **extra,
            )

    # ---------------------------------------------------------------------------------- gauges

    def update_gauges(self, stats: dict[bytes, ServiceStats]) -> None:
        """Set queue depth and worker gauges, drop gone services' series, publish, flush logs.

        Unlabelled services have no worker (a READY labels one), so `OTHER` has only a queue
        depth: the sum of theirs.
        """
        for service in [s for s in self._labels if s not in stats and s not in FIXED_LABELS]:
            self._forget(self._labels.pop(service))
        other_queued = 0
        for service, numbers in stats.items():
            name = self._labels.get(service)
            if name is None:
                other_queued += numbers.queued
                continue
            self.queue_depth.labels(name).set(numbers.queued)
            self.workers.labels(name, "idle").set(numbers.idle_workers)
            self.workers.labels(name, "busy").set(numbers.busy_workers)
        self.queue_depth.labels(OTHER).set(other_queued)
        self.requests.publish()
        self.log_limit.flush()

    def _forget(self, name: str) -> None:
        """Remove every series of a service the routing state no longer holds."""
        self.requests.forget(name)
        for metric, labels in (
            (self.queue_depth, (name,)),
            (self.workers, (name, "idle")),
            (self.workers, (name, "busy")),
            (self.requeues, (name,)),
        ):
            # Older prometheus-client raise KeyError for a series never set (came and went).
            with contextlib.suppress(KeyError):
                metric.remove(*labels)


__all__ = ["LATENCY_BUCKETS_S", "OTHER", "BrokerMetrics", "LogLimit", "RequestCollector"]
