"""The gateway process's settings (`latentmas gateway`; each also `LATENTMAS_<FIELD>`)."""

from __future__ import annotations

from pydantic import Field

from latentmas_mesh.settings import MIB, MeshSettings


class GatewaySettings(MeshSettings):
    """Where the gateway listens, which broker it calls, and what it accepts."""

    connect: str = Field(
        default="tcp://127.0.0.1:5555", description="The broker the gateway is a client of."
    )
    http_host: str = Field(default="127.0.0.1", description="Address the HTTP server binds.")
    http_port: int = Field(default=8080, ge=0, le=65535, description="0 picks a free port.")
    json_body_bytes_max: int = Field(
        default=256 * MIB,
        gt=0,
        description="Largest JSON request body (nested lists cost ~10x their binary size).",
    )
    binary_body_bytes_max: int = Field(
        default=1024 * MIB + MIB,
        gt=0,
        description="Largest binary (codec frames) request body: one message of the mesh.",
    )
    job_wait_ms: int = Field(
        default=2_000,
        ge=0,
        description="How long a call may take before the gateway answers 202 with a job.",
    )
    call_timeout_ms: int = Field(
        default=600_000, gt=0, description="Deadline of one call through the mesh."
    )


__all__ = ["GatewaySettings"]
