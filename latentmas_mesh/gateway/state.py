"""What every route of one gateway process shares: settings, the agent registry, the mesh
connection, the job table and the metrics."""

from __future__ import annotations

from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, Counter, Histogram

from latentmas_mesh.agents import AgentRegistry
from latentmas_mesh.gateway.jobs import JobTable
from latentmas_mesh.gateway.mesh import GatewayMesh
from latentmas_mesh.gateway.settings import GatewaySettings

LATENCY_BUCKETS_S = (0.001, 0.005, 0.02, 0.1, 0.5, 2.0, 10.0, 60.0, 600.0)


@dataclass
class GatewayMetrics:
    """Prometheus series of the gateway, in a registry of its own (`GET /metrics`)."""

    registry: CollectorRegistry = field(default_factory=CollectorRegistry)

    def __post_init__(self) -> None:
        self.requests = Counter(
            "latentmas_gateway_requests",
            "HTTP requests answered, by route template, method and status",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.seconds = Histogram(
            "latentmas_gateway_request_seconds",
            "Time to the response's first byte, by route template",
            ["route"],
            buckets=LATENCY_BUCKETS_S,
            registry=self.registry,
        )


@dataclass
class GatewayState:
    settings: GatewaySettings
    registry: AgentRegistry
    mesh: GatewayMesh
    jobs: JobTable = field(default_factory=JobTable)
    metrics: GatewayMetrics = field(default_factory=GatewayMetrics)


__all__ = ["GatewayMetrics", "GatewayState"]
