"""Durable file writes: every artifact on disk goes through `write_atomically`.

A crash (power loss, kill -9) at any point leaves either the old file or the new one, never a
torn or empty one: the bytes are written to a temporary name in the same directory, fsync'd,
renamed over the target, and the directory is fsync'd so the rename itself is durable. A JSON
record that names a tensor file is therefore only ever written after that file is durable.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from latentmas_mesh.errors import InvalidRequest

META_KEY: Final = "latentmas"
"""The safetensors header metadata key holding an artifact's JSON description."""


def fsync_directory(directory: Path) -> None:
    """Make a rename or a new entry in `directory` durable."""
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def write_atomically(path: Path, data: bytes) -> None:
    """Replace `path` with `data`, durably and all at once (see the module docstring)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)


def write_json(path: Path, data: dict[str, Any]) -> None:
    """`data` as sorted, indented JSON, written atomically."""
    write_atomically(path, json.dumps(data, indent=2, sort_keys=True).encode())


def write_tensors(
    path: Path, tensors: dict[str, npt.NDArray[Any]], meta: dict[str, Any] | None
) -> None:
    """A safetensors file of `tensors` with `meta` as JSON in its header (None: a plain file
    any safetensors reader loads), written atomically."""
    from safetensors.numpy import save

    arrays = {name: np.ascontiguousarray(array) for name, array in tensors.items()}
    header = None if meta is None else {META_KEY: json.dumps(meta, sort_keys=True)}
    write_atomically(path, save(arrays, metadata=header))


def fsync_tree(directory: Path) -> None:
    """fsync every file under `directory` and the directories themselves: a tree built under a
    staging name is durable before it is renamed into place."""
    for path in sorted(directory.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
        elif path.is_dir():
            fsync_directory(path)
    fsync_directory(directory)


def read_meta(path: Path) -> dict[str, Any]:
    """The JSON description of a file written by `write_tensors`, without reading a tensor."""
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as handle:
        raw = (handle.metadata() or {}).get(META_KEY)
    if raw is None:
        raise InvalidRequest(f"{path} is not a latentmas artifact", details={"path": str(path)})
    return dict(json.loads(raw))


def read_tensors(path: Path) -> tuple[dict[str, npt.NDArray[Any]], dict[str, Any]]:
    """The tensors and JSON description of a file written by `write_tensors`."""
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as handle:
        raw = (handle.metadata() or {}).get(META_KEY)
        tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    if raw is None:
        raise InvalidRequest(f"{path} is not a latentmas artifact", details={"path": str(path)})
    return tensors, json.loads(raw)
