"""latentmas-mesh: an open implementation of the LatentMAS/2.0 working-memory exchange protocol."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

try:
    __version__ = version("latentmas-mesh")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

PROTOCOL_VERSION = "LatentMAS/2.0"
PROTOCOL_VERSION_V1 = "LatentMAS/1.0"

if TYPE_CHECKING:
    from latentmas_mesh.client import AsyncMeshClient, MeshClient, MeshKeys

_SDK_NAMES = frozenset({"AsyncMeshClient", "MeshClient", "MeshKeys"})


def __getattr__(name: str) -> object:
    """`from latentmas_mesh import MeshClient` loads the SDK on first use only: every process
    imports this package, and the broker must stay free of pydantic and the schemas."""
    if name in _SDK_NAMES:
        from latentmas_mesh import client

        return getattr(client, name)
    msg = f"module {__name__!r} has no attribute {name!r}"
    raise AttributeError(msg)


__all__ = [
    "PROTOCOL_VERSION",
    "PROTOCOL_VERSION_V1",
    "AsyncMeshClient",
    "MeshClient",
    "MeshKeys",
    "__version__",
]
