"""The agent's SDK: the spec's calls (Migration Guide, Appendix C, 3.5.3) over a mesh, blocking
(`MeshClient`) or asyncio (`AsyncMeshClient`), each answer an aligned result with its measured
quality or a typed refusal saying why and what to do instead."""

from latentmas_mesh.client._async import AsyncMeshClient
from latentmas_mesh.client._connection import MeshKeys
from latentmas_mesh.client._kv import KVInput
from latentmas_mesh.client._sync import MeshClient

__all__ = ["AsyncMeshClient", "KVInput", "MeshClient", "MeshKeys"]
