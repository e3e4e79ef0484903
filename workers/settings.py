"""A worker process's settings: broker endpoint, heartbeats, reconnect backoff, framing, CURVE."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

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


__all__ = ["WorkerSettings"]
