"""The gateway process's settings (`latentmas gateway`; each also `LATENTMAS_<FIELD>`)."""

from __future__ import annotations

from pydantic import Field

from latentmas_mesh.agents.settings import AgentSettings
from latentmas_mesh.settings import MIB


class GatewaySettings(AgentSettings):
    """Where the gateway listens, which broker it calls, and what it accepts. The agent
    registry it authenticates against is `state_dir`'s; its CURVE key is the registry's
    gateway pair; the broker's public key and the ledger keys come as for every client
    (LATENTMAS_CURVE_SERVER_KEY_FILE, LATENTMAS_LEDGER_KEYS_DIR)."""

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
        description="How long a generate may take before the gateway answers 202 with a job.",
    )
    call_timeout_ms: int = Field(
        default=600_000, gt=0, description="Deadline of one call through the mesh."
    )
    attempt_timeout_ms: int = Field(
        default=120_000,
        gt=0,
        description=(
            "Silence after which a call is sent again under the same request id (a broker "
            "restart); long enough that a slow fit is not sent to a second worker."
        ),
    )


__all__ = ["GatewaySettings"]
