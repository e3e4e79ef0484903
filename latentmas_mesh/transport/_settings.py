"""Settings of a client of the mesh: where the broker is, timeouts, retries, dialect, CURVE."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from latentmas_mesh.settings import MeshSettings


class TransportSettings(MeshSettings):
    """How a client reaches the broker; each field also reads `LATENTMAS_<FIELD>`."""

    broker_url: str = Field(default="tcp://127.0.0.1:5555", description="The broker's endpoint.")
    request_timeout_ms: int = Field(
        default=30_000, gt=0, description="Deadline of one call, all attempts together."
    )
    attempt_timeout_ms: int = Field(
        default=10_000,
        gt=0,
        description="Silence after which a request is sent again on a fresh socket (same id).",
    )
    retries_max: int = Field(default=3, ge=0, description="Resends after the first attempt.")
    dialect: Literal["rfc18", "majortomo"] = Field(
        default="rfc18", description="Client framing: RFC 18, or majortomo 0.2.0's own."
    )
    sockets_max: int = Field(
        default=64, gt=0, description="Concurrent requests of one asyncio transport."
    )
    check_finite: bool = Field(default=True, description="Refuse NaN/Inf in decoded replies.")
    curve_secret_key_file: Path | None = Field(
        default=None, description="This client's .key_secret file (CURVE on when set)."
    )
    curve_server_key_file: Path | None = Field(
        default=None, description="The broker's public .key file."
    )
    ledger_keys_dir: Path | None = Field(
        default=None,
        description=(
            "Public .key files of the ledger workers this client trusts (e.g. the broker's "
            "workers/latentmas.ledger/): under CURVE every ledger reply must carry a seal of one."
        ),
    )
