"""A worker process's settings: broker endpoint, heartbeats, backoff, framing, CURVE, gateways."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator

from latentmas_mesh.codec import is_agent_id
from latentmas_mesh.settings import MeshSettings


class WorkerSettings(MeshSettings):
    """`latentmas worker` options; each also reads `LATENTMAS_<FIELD>` from the environment.

    `heartbeat_ms` and `liveness` share their variable names with the broker's settings on
    purpose: RFC 18 warns that peers with different heartbeat rates disconnect each other falsely.
    """

    connect: str = Field(default="tcp://127.0.0.1:5555", description="The broker's endpoint.")
    heartbeat_ms: int = Field(default=2_500, gt=0)
    liveness: int = Field(default=3, ge=2, le=10)
    reconnect_ms_min: int = Field(default=100, gt=0, description="First reconnect delay.")
    reconnect_ms_max: int = Field(default=5_000, gt=0, description="Backoff ceiling.")
    dialect: Literal["rfc18", "majortomo"] = Field(
        default="rfc18",
        description="Worker framing: RFC 18, or a leading empty frame (majortomo's broker).",
    )
    handler_thread: bool = Field(
        default=True,
        description="Run the handler on its own thread so heartbeats go on during long work.",
    )
    drain_ms_max: int = Field(
        default=10_000, ge=0, description="On SIGTERM, how long the request in hand may finish."
    )
    check_finite: bool = Field(default=True, description="Refuse NaN/Inf in decoded requests.")
    curve_secret_key_file: Path | None = Field(
        default=None, description="This worker's .key_secret file (CURVE on when set)."
    )
    curve_server_key_file: Path | None = Field(
        default=None, description="The broker's public .key file."
    )
    gateway_keys: frozenset[str] = Field(
        default=frozenset(),
        description=(
            "Z85 public keys of the HTTP gateways (JSON list): only a request authenticated with "
            "one of them may act on behalf of an agent; anyone else sending on_behalf_of is "
            "refused UNAUTHORIZED."
        ),
    )

    @field_validator("gateway_keys")
    @classmethod
    def _gateway_keys_are_public_keys(cls, keys: frozenset[str]) -> frozenset[str]:
        """A typo here would silently refuse every gateway call: fail at start instead."""
        wrong = sorted(key for key in keys if not is_agent_id(key))
        if wrong:
            msg = f"gateway keys must be 40-character Z85 public keys, not {wrong[:3]}"
            raise ValueError(msg)
        return keys


__all__ = ["WorkerSettings"]
