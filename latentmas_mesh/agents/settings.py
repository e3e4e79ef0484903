"""Where the agent registry and its keys live: the state directory (LATENTMAS_STATE_DIR)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from latentmas_mesh.settings import MeshSettings


class AgentSettings(MeshSettings):
    """The agent registry's setting; the gateway's settings extend this one."""

    state_dir: Path = Field(
        default=Path(".latentmas-state"),
        description=(
            "The agent registry (agents.db) and CURVE keys: point the broker's "
            "--curve-client-keys at keys/clients; secrets are in keys/secrets (0700)."
        ),
    )


__all__ = ["AgentSettings"]
