"""Settings of the alignment worker processes (`LATENTMAS_ALIGNMENT_*` and friends)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from latentmas_mesh.settings import MeshSettings


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
    alignment_settlement_spool: Path = Field(
        default=Path("settlements/alignment.jsonl"),
        description="JSON lines of paid exchanges (append + fsync), until the ledger takes them.",
    )
    alignment_unified_dim: int = Field(default=128, ge=1, le=1 << 16)
    alignment_price_units: int = Field(
        default=0, ge=0, description="Minor units per paid exchange; 0 means exchanges are free."
    )
    alignment_creator: str = Field(default="operator", min_length=1, max_length=128)
    alignment_enforce_quality: bool = Field(
        default=False,
        description="Refuse to store generated maps below the spec's quality targets (4.3.4).",
    )

    def path(self, configured: Path) -> Path:
        """`configured` as is when absolute, else under cache_dir."""
        return configured if configured.is_absolute() else self.cache_dir / configured


__all__ = ["AlignmentSettings"]
