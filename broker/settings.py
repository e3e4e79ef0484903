"""The broker process's settings: endpoints, heartbeats, bounds, metrics port and CURVE keys."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from broker.state import Limits
from latentmas_mesh.settings import MIB, MeshSettings

FRAME_BYTES_MAX_DEFAULT = 1024 * MIB + MIB
"""One frame may carry a whole array; 1 GiB plus room, the decoder's own message limit."""


class BrokerSettings(MeshSettings):
    """`latentmas broker` options; each also reads `LATENTMAS_<FIELD>` from the environment."""

    bind: list[str] = Field(
        default_factory=lambda: ["tcp://127.0.0.1:5555"],
        description="Endpoints the one ROUTER socket binds (e.g. clients on one, workers on one).",
    )
    heartbeat_ms: int = Field(
        default=2_500, gt=0, description="Heartbeat interval; workers must use the same value."
    )
    liveness: int = Field(
        default=3, ge=2, le=10, description="Missed heartbeats before a peer is dead."
    )
    service_queue_depth_max: int = Field(default=1024, gt=0)
    request_queue_ms_max: int = Field(
        default=30_000, gt=0, description="How long a request may wait for a worker."
    )
    request_in_flight_ms_max: int = Field(
        default=300_000,
        gt=0,
        description="How long one worker may hold a request before it is answered TIMEOUT.",
    )
    requeue_max: int = Field(default=2, ge=0, description="Re-dispatches when a worker dies.")
    services_max: int = Field(
        default=1024, gt=0, description="Distinct service names held at once; more are refused."
    )
    workers_max: int = Field(
        default=4096, gt=0, description="Registered workers at once; one more gets DISCONNECT."
    )
    frame_bytes_max: int = Field(
        default=FRAME_BYTES_MAX_DEFAULT,
        gt=0,
        description="ZeroMQ drops a peer that sends a larger frame, before allocating it.",
    )
    socket_hwm_max: int = Field(
        default=100_000, gt=0, description="Messages queued per peer before sends are dropped."
    )
    broker_bytes_max: int = Field(
        default=512 * MIB,
        gt=0,
        description=(
            "Request bodies held plus replies not yet taken by ZeroMQ; a request that would "
            "pass it is refused SERVICE_UNAVAILABLE at once."
        ),
    )
    peer_unread_bytes_max: int = Field(
        default=128 * MIB,
        gt=0,
        description="A client's unread replies beyond which they are discarded (slow consumer).",
    )
    drain_ms_max: int = Field(
        default=10_000, ge=0, description="On SIGTERM, how long in-flight requests may finish."
    )
    metrics_host: str = "127.0.0.1"
    metrics_port: int | None = Field(
        default=9100, ge=0, le=65535, description="Prometheus /metrics port; 0 picks one; None off."
    )
    curve_secret_key_file: Path | None = Field(
        default=None, description="The broker's `.key_secret` file; turns CURVE + ZAP on."
    )
    curve_client_keys_dir: Path | None = Field(
        default=None, description="Public `.key` files of clients allowed to connect."
    )
    curve_worker_keys_dir: Path | None = Field(
        default=None,
        description=(
            "Workers' public keys as `DIR/<service>/<name>.key`: a key registers only for the "
            "services whose subdirectory holds it; a key directly under DIR is refused at start."
        ),
    )

    def limits(self) -> Limits:
        """The routing state's limits in its own units (microseconds)."""
        return Limits(
            heartbeat_us=self.heartbeat_ms * 1000,
            liveness=self.liveness,
            service_queue_depth_max=self.service_queue_depth_max,
            request_queue_us_max=self.request_queue_ms_max * 1000,
            requeue_max=self.requeue_max,
            request_in_flight_us_max=self.request_in_flight_ms_max * 1000,
            bytes_max=self.broker_bytes_max,
            peer_unread_bytes_max=self.peer_unread_bytes_max,
            services_max=self.services_max,
            workers_max=self.workers_max,
        )


__all__ = ["BrokerSettings"]
