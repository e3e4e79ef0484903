"""Exported anchor activations as plain arrays: readable by the mesh without torch or the model."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
from numpy.typing import NDArray
from safetensors.numpy import load_file

from latentmas_mesh.errors import InvalidRequest

MANIFEST: Final = "manifest.json"
EXPORT_FORMAT: Final = 1


@dataclass(frozen=True, slots=True)
class PassageActivations:
    """What one model computed on one passage (start token first).

    token_ids: int64 [n]; offsets: int64 [n, 2] character spans ((0, 0) for the start token).
    keys_pre_rope: [layers, kv_heads, n, head_dim], the keys before rotary embedding.
    keys: [layers, kv_heads, n, head_dim], as cached (after rotary embedding).
    values: [layers, kv_heads, n, head_dim].
    hidden_states: [layers + 1, n, hidden_size] (embeddings, then each layer's output), or None.
    """

    passage_id: str
    token_ids: NDArray[np.int64]
    offsets: NDArray[np.int64]
    keys_pre_rope: NDArray[np.floating[Any]]
    keys: NDArray[np.floating[Any]]
    values: NDArray[np.floating[Any]]
    hidden_states: NDArray[np.floating[Any]] | None

    def arrays(self) -> dict[str, NDArray[Any]]:
        """The arrays by name, as one safetensors file stores them."""
        named: dict[str, NDArray[Any]] = {
            "token_ids": self.token_ids,
            "offsets": self.offsets,
            "keys_pre_rope": self.keys_pre_rope,
            "keys": self.keys,
            "values": self.values,
        }
        if self.hidden_states is not None:
            named["hidden_states"] = self.hidden_states
        return named


def read_manifest(directory: Path) -> dict[str, Any]:
    """The manifest of an export directory (model, geometry, passage ids, options)."""
    path = directory / MANIFEST
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InvalidRequest(f"no readable activation manifest at {path}: {exc}") from exc
    if not isinstance(manifest, dict) or manifest.get("format") != EXPORT_FORMAT:
        raise InvalidRequest(f"{path} is not an activation export of format {EXPORT_FORMAT}")
    return manifest


def read_anchor_activations(directory: Path, passage_id: str) -> PassageActivations:
    """One passage's activations from a directory written by `export_anchor_activations`."""
    path = directory / f"{passage_id}.safetensors"
    if not path.is_file():
        raise InvalidRequest(f"no activations for passage {passage_id!r} in {directory}")
    arrays = load_file(str(path))
    return PassageActivations(
        passage_id=passage_id,
        token_ids=arrays["token_ids"],
        offsets=arrays["offsets"],
        keys_pre_rope=arrays["keys_pre_rope"],
        keys=arrays["keys"],
        values=arrays["values"],
        hidden_states=arrays.get("hidden_states"),
    )
