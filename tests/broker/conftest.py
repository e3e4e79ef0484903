"""In-process meshes for the broker tests: a broker thread, worker threads, one zmq context."""

from __future__ import annotations

import threading
import time

import pytest
import zmq

from broker.server import Broker
from broker.settings import BrokerSettings
from latentmas_mesh.transport import AsyncTransport, Transport, TransportSettings
from workers import echo
from workers.base import RawWorker, Worker
from workers.settings import WorkerSettings

pytest.register_assert_rewrite("tests.broker.behaviour")  # before test modules import it

HEARTBEAT_MS = 100
LIVENESS = 8  # generous: broker, workers and clients share one interpreter's GIL here


class InProcessMesh:
    """A broker on `endpoint` in a thread, plus workers in threads, sharing one context."""

    def __init__(self, endpoint: str, **broker_options):
        self.context = zmq.Context()
        options = {
            "metrics_port": 0,
            "heartbeat_ms": HEARTBEAT_MS,
            "liveness": LIVENESS,
            "drain_ms_max": 2_000,
        }
        options.update(broker_options)
        self.broker_settings = BrokerSettings(bind=[endpoint], **options)
        self.workers: list[tuple[RawWorker, threading.Thread]] = []
        self.broker = None
        self.broker_thread = None
        self.start_broker()

    def start_broker(self):
        self.broker = Broker(self.broker_settings, context=self.context)
        self.endpoint = self.broker.bind()[0]
        self.broker_thread = threading.Thread(target=self.broker.run, daemon=True)
        self.broker_thread.start()
        self.broker.ready.wait(5)

    def restart_broker(self, **options):
        """Stop the broker and start a new one on the same endpoint with changed settings."""
        self.stop_broker()
        self.broker_settings = self.broker_settings.model_copy(
            update={"bind": [self.endpoint], **options}
        )
        self.start_broker()

    def stop_broker(self):
        self.broker.stop()
        self.broker_thread.join(10)

    def worker_settings(self, **overrides) -> WorkerSettings:
        fields = {
            "connect": self.endpoint,
            "heartbeat_ms": HEARTBEAT_MS,
            "liveness": LIVENESS,
            "reconnect_ms_max": 300,
        }
        fields.update(overrides)
        return WorkerSettings(**fields)

    def run_worker(self, worker: RawWorker, *, registered: bool = True) -> RawWorker:
        """Start a worker thread; with `registered`, return once this broker has counted it."""
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        self.workers.append((worker, thread))
        assert worker.ready.wait(5)
        if registered and worker.settings.connect == self.endpoint:
            same = [w for w, _ in self.workers if w.service == worker.service]
            self.wait_for_service(worker.service, workers=len(same))
        return worker

    def echo(self, **overrides) -> RawWorker:
        return self.raw(echo.SERVICE, echo.echo, handler_thread=False, **overrides)

    def typed(self, service, handler, **overrides) -> Worker:
        return self.run_worker(
            Worker(service, handler, self.worker_settings(**overrides), context=self.context)
        )

    def raw(self, service, handler, *, registered=True, **overrides) -> RawWorker:
        worker = RawWorker(
            service, handler, self.worker_settings(**overrides), context=self.context
        )
        return self.run_worker(worker, registered=registered)

    def transport(self, **overrides) -> Transport:
        fields = {"broker_url": self.endpoint, "request_timeout_ms": 5_000}
        fields.update(overrides)
        return Transport(TransportSettings(**fields), context=self.context)

    def async_transport(self, **overrides) -> AsyncTransport:
        fields = {"broker_url": self.endpoint, "request_timeout_ms": 5_000}
        fields.update(overrides)
        return AsyncTransport(TransportSettings(**fields), context=self.context)

    def wait_for_service(self, service: str, workers: int = 1, timeout_s: float = 5.0):
        """Until the broker's routing table shows `workers` idle or busy workers of `service`."""
        deadline = time.monotonic() + timeout_s
        name = service.encode()
        while time.monotonic() < deadline:
            stats = self.broker.state.stats().get(name)
            if stats and stats.idle_workers + stats.busy_workers >= workers:
                return
            time.sleep(0.01)
        raise AssertionError(f"{service} has fewer than {workers} workers")

    def close(self):
        for worker, _ in self.workers:
            worker.stop()
        for _, thread in self.workers:
            thread.join(5)
        if self.broker_thread.is_alive():
            self.stop_broker()
        self.context.destroy(linger=0)


@pytest.fixture
def mesh(request):
    """An in-process mesh on the test class's `endpoint` (inproc or tcp)."""
    endpoint = getattr(request.cls, "endpoint", "tcp://127.0.0.1:*")
    if endpoint.startswith("inproc://"):
        endpoint = f"{endpoint}-{request.node.name}-{time.monotonic_ns()}"
    built = InProcessMesh(endpoint)
    yield built
    built.close()


from latentmas_mesh.testing.fixtures import local_mesh, local_mesh_factory, pytest_configure  # noqa: E402

__all__ = ["local_mesh", "local_mesh_factory", "pytest_configure"]
