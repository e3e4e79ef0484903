"""Settings of the alignment worker processes (`LATENTMAS_ALIGNMENT_*` and friends)."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from pydantic import Field

from latentmas_mesh.market import PRICE_UNITS_MAX, VALIDATORS_MAX
from latentmas_mesh.settings import MIB, MeshSettings

REQUEST_BYTES_MAX: Final = 2048 * MIB  # twice the codec's default message_bytes_max


class AlignmentSettings(MeshSettings):
    """Where the alignment services keep their files, and what an exchange costs.

    Relative directories are taken under `cache_dir`.
    """

    alignment_wmatrix_dir: Path = Field(default=Path("wmatrices"))
    alignment_anchors_dir: Path = Field(default=Path("anchors"))
    alignment_kv_maps_dir: Path = Field(default=Path("kvmaps"))
    alignment_hub_file: Path = Field(
        default=Path("unified-space.safetensors"),
        description="The unified space (hub) every registered model is charted in.",
    )
    alignment_ledger_outbox: Path = Field(
        default=Path("settlements/align-outbox.sqlite3"),
        description="Durable outbox of the align worker's post/void events to latentmas.ledger.",
    )
    alignment_unified_dim: int = Field(default=128, ge=1, le=1 << 16)
    alignment_price_units: int = Field(
        default=0,
        ge=0,
        le=PRICE_UNITS_MAX,
        description="Minor units per paid exchange; 0 means exchanges are free.",
    )
    alignment_creator: str = Field(
        default="operator",
        pattern=r"^[!-~]{1,128}$",
        description="Ledger identity credited 80% of each paid exchange (the maps' owner).",
    )
    alignment_validators: tuple[str, ...] = Field(
        default=(),
        max_length=VALIDATORS_MAX,
        description="Ledger identities sharing 5% of each paid exchange (JSON list).",
    )
    alignment_ledger_timeout_ms: int = Field(
        default=5_000,
        gt=0,
        description="Deadline of one call to latentmas.ledger while a request waits for it.",
    )
    alignment_outbox_drain_ms: int = Field(
        default=500,
        gt=0,
        description="How often the align worker re-sends outbox events the ledger has not taken.",
    )
    alignment_request_bytes_max: int = Field(
        default=REQUEST_BYTES_MAX,
        gt=0,
        description=(
            "What one align request may hold at once: its input, its output predicted from the "
            "target's geometry and the kernels' working arrays; a request predicted past it is "
            "refused PAYLOAD_TOO_LARGE before anything is allocated."
        ),
    )
    alignment_enforce_quality: bool = Field(
        default=False,
        description="Refuse to store generated maps below the spec's quality targets (4.3.4).",
    )


__all__ = ["REQUEST_BYTES_MAX", "AlignmentSettings"]
