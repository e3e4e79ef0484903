"""Maps on disk: W-matrices, KV aligners and unified spaces as safetensors + JSON header.

The alignment classes turn themselves into arrays and a description (`to_tensors`) and back
(`from_tensors`, content hash checked); this module only moves those to and from files.
"""

from __future__ import annotations

from pathlib import Path

from latentmas_mesh.alignment.hub import UnifiedSpace
from latentmas_mesh.alignment.kv import KVAligner
from latentmas_mesh.alignment.wmatrix import WMatrix
from latentmas_mesh.artifacts.files import read_tensors, write_tensors


def save_wmatrix(path: str | Path, wmatrix: WMatrix) -> str:
    """Write a W-matrix atomically; returns its content hash."""
    tensors, meta = wmatrix.to_tensors()
    write_tensors(Path(path), dict(tensors), meta)
    return str(meta["content_hash"])


def load_wmatrix(path: str | Path) -> WMatrix:
    """Read a file written by `save_wmatrix` (hash checked)."""
    tensors, meta = read_tensors(Path(path))
    return WMatrix.from_tensors(tensors, meta, origin=str(path))


def save_kv_aligner(path: str | Path, aligner: KVAligner) -> str:
    """Write a KV aligner atomically; returns its content hash."""
    tensors, meta = aligner.to_tensors()
    write_tensors(Path(path), tensors, meta)
    return aligner.content_hash


def load_kv_aligner(path: str | Path) -> KVAligner:
    """Read a file written by `save_kv_aligner` (hash checked)."""
    tensors, meta = read_tensors(Path(path))
    return KVAligner.from_tensors(tensors, meta, origin=str(path))


def save_space(path: str | Path, space: UnifiedSpace) -> None:
    """Write a unified space atomically."""
    tensors, meta = space.to_tensors()
    write_tensors(Path(path), tensors, meta)


def load_space(path: str | Path) -> UnifiedSpace:
    """Read a file written by `save_space`."""
    tensors, meta = read_tensors(Path(path))
    return UnifiedSpace.from_tensors(tensors, meta, origin=str(path))
