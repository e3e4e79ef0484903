"""Process settings: one pydantic-settings object per process, from flags and LATENTMAS_* variables.

Each kind of process (CLI, broker, worker, ledger) subclasses `MeshSettings` with its own fields, so
a process builds exactly one object and every option has one documented home.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

MIB = 1 << 20


class MeshSettings(BaseSettings):
    """Settings every process shares. Override with `LATENTMAS_<FIELD>` or the CLI's flags."""

    model_config = SettingsConfigDict(
        env_prefix="LATENTMAS_", extra="ignore", frozen=True, validate_default=True
    )

    log_format: Literal["json", "console"] = Field(
        default="json", description="JSON lines for services, a readable console for the CLI."
    )
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    registry_path: Path | None = Field(
        default=None,
        description="Extra model registry file (JSON) merged over the shipped one; no code change.",
    )
    cache_dir: Path = Field(
        default=Path(".latentmas-cache"),
        description="Where converted models, fitted maps and spools live on this host.",
    )
    message_bytes_max: int = Field(
        default=1024 * MIB, gt=0, description="Largest total message a decoder accepts."
    )
    header_bytes_max: int = Field(
        default=256 * 1024,
        gt=0,
        description="Largest msgpack header frame a decoder accepts (arrays never ride in it).",
    )
    shared_memory_dir: Path | None = Field(
        default=None,
        description=(
            "Same-host shared memory for large arrays: the segment directory (tmpfs, e.g. "
            "/dev/shm/latentmas-<uid>; created mode 0700). Unset: every array is a frame. A peer "
            "on another host, or without it, is answered inline automatically."
        ),
    )
    shared_memory_bytes_max: int = Field(
        default=2048 * MIB,
        gt=0,
        description="Segments this process owns, and peers' segments it keeps mapped (each).",
    )
    shared_memory_array_bytes_min: int = Field(
        default=1 * MIB, gt=0, description="Smaller arrays always travel as frames."
    )

    def path(self, configured: Path) -> Path:
        """`configured` as is when absolute, else under cache_dir."""
        return configured if configured.is_absolute() else self.cache_dir / configured
