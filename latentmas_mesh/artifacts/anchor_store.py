"""Registered anchor activations: <root>/<model>.safetensors, one anchor set per model."""

from __future__ import annotations

import hashlib
from pathlib import Path
from urllib.parse import quote

import numpy as np
import numpy.typing as npt

from latentmas_mesh.artifacts.files import read_meta, read_tensors, write_tensors
from latentmas_mesh.errors import ModelNotSupported


class AnchorStore:
    """A model's activations on an anchor set, as its owner exported them (the model itself
    never reaches the mesh); the W-matrix service fits maps between two models' rows."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def _path(self, model: str) -> Path:
        return self.root / f"{quote(model, safe='')}.safetensors"

    def put(self, model: str, anchor_set: str, activations: npt.ArrayLike) -> tuple[int, int, str]:
        """Store [n, d] activations; returns (rows, dim, content hash)."""
        array = np.ascontiguousarray(activations, dtype=np.float32)
        digest = f"sha256:{hashlib.sha256(array.tobytes()).hexdigest()}"
        meta = {"anchor_set": anchor_set, "content_hash": digest}
        write_tensors(self._path(model), {"activations": array}, meta)
        return int(array.shape[0]), int(array.shape[1]), digest

    def describe(self, model: str) -> tuple[str, str]:
        """(anchor set, content hash) from the file's header, without reading its rows;
        ModelNotSupported when the model registered none."""
        meta = read_meta(self._existing(model))
        return str(meta["anchor_set"]), str(meta["content_hash"])

    def get(self, model: str) -> tuple[str, npt.NDArray[np.float32]]:
        """(anchor set, activations); ModelNotSupported when the model registered none."""
        tensors, meta = read_tensors(self._existing(model))
        return str(meta["anchor_set"]), tensors["activations"]

    def _existing(self, model: str) -> Path:
        path = self._path(model)
        if not path.exists():
            raise ModelNotSupported(
                f"{model} has no registered anchor activations; register them first",
                details={"model": model},
            )
        return path
