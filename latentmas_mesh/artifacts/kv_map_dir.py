"""A stored KV map as a directory others can read: `manifest.json` (what the map is, what it
was fitted on, what it retains and how that was measured), `weights.safetensors` (tensors named
by target layer and kind) and `SHA256SUMS`. Reading fails closed: a checksum, format, content
hash or geometry that does not match is refused, never loaded."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from latentmas_mesh.alignment.kernels import HeadMaps
from latentmas_mesh.alignment.kv import KVAligner, KVGeometry
from latentmas_mesh.alignment.quality import AlignmentQuality
from latentmas_mesh.artifacts.files import fsync_directory, fsync_tree
from latentmas_mesh.errors import InvalidRequest

FORMAT: Final = "latentmas.kv-map/1"
MANIFEST: Final = "manifest.json"
WEIGHTS: Final = "weights.safetensors"
SUMS: Final = "SHA256SUMS"
KINDS: Final = (("k", "keys"), ("v", "values"))
RETENTION_DEFINITION: Final = (
    "information_retention: (NLL_none - NLL_aligned) / (NLL_none - NLL_own), the share of the "
    "receiver's own-cache gain in next-token loss that the aligned cache keeps, a ratio of means "
    "over passages held out from the fit; cosine_similarity and euclidean_distance compare the "
    "receiver's attention outputs from the aligned and its own cache; confidence is the lower "
    "end of retention's 95% bootstrap interval over those passages"
)


def tensor_name(layer: int, kind: str, part: str) -> str:
    """`target.{layer}.{k|v}.{W|b|inputs}`: the map producing target layer `layer`'s keys (k)
    or values (v); W [heads, n_in * D_s, D_t], b [heads, D_t], inputs [heads, n_in, 2] (the
    (source layer, source head) pairs each target head reads, in order)."""
    return f"target.{layer}.{kind}.{part}"


def weights_of(aligner: KVAligner) -> dict[str, npt.NDArray[Any]]:
    """The aligner's head maps, one tensor per target layer, kind and part."""
    tensors: dict[str, npt.NDArray[Any]] = {}
    for kind, attribute in KINDS:
        heads: HeadMaps = getattr(aligner, f"{attribute}_").heads
        for layer in range(heads.target_layers):
            tensors[tensor_name(layer, kind, "W")] = np.ascontiguousarray(heads.weight[layer])
            tensors[tensor_name(layer, kind, "b")] = np.ascontiguousarray(heads.bias[layer])
            tensors[tensor_name(layer, kind, "inputs")] = np.ascontiguousarray(heads.inputs[layer])
    return tensors


def _head_maps(tensors: dict[str, npt.NDArray[Any]], kind: str, layers: int) -> HeadMaps:
    def stacked(part: str) -> npt.NDArray[Any]:
        names = [tensor_name(layer, kind, part) for layer in range(layers)]
        missing = [name for name in names if name not in tensors]
        if missing:
            raise InvalidRequest(
                f"KV map weights lack {missing[0]}", details={"missing": missing[:8]}
            )
        return np.stack([tensors[name] for name in names])

    return HeadMaps(
        stacked("inputs").astype(np.int64, copy=False),
        stacked("W").astype(np.float32, copy=False),
        stacked("b").astype(np.float32, copy=False),
    )


def _quality(quality: AlignmentQuality | None) -> dict[str, Any] | None:
    return None if quality is None else quality.to_dict()


def manifest_of(
    aligner: KVAligner, *, source: str, target: str, version: str, provenance: dict[str, Any]
) -> dict[str, Any]:
    """What the map is and where it came from. `provenance`: the fitter's account (method,
    each model's family, tokenizer hash and revision, the fit data's hash, the ridge
    penalties chosen...), kept as given."""
    return {
        "format": FORMAT,
        "source_model": source,
        "target_model": target,
        "version": version,
        "source_geometry": aligner.source.to_json(),
        "target_geometry": aligner.target.to_json(),
        "granularity": aligner.mapping_.granularity,
        "exact_identity": aligner.exact_identity_,
        "provenance": provenance,
        "quality": {
            "definition": RETENTION_DEFINITION,
            "held_out": _quality(aligner.exchange_quality_),
            "diagnostics": {
                "what": "held-out R² and cosine of the predicted pre-RoPE keys and values: "
                "how well the regression fits, not what an exchange retains",
                "keys": _quality(aligner.keys_.quality),
                "values": _quality(aligner.values_.quality),
            },
        },
        "content_hash": aligner.content_hash,
    }


def write_kv_map(
    directory: Path,
    aligner: KVAligner,
    *,
    source: str,
    target: str,
    version: str,
    provenance: dict[str, Any] | None = None,
) -> None:
    """Write the map's directory atomically: built and fsync'd in a private folder beside it,
    then renamed into place (a crash leaves no directory or the whole one)."""
    from safetensors.numpy import save_file

    parent = directory.parent
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=parent))
    try:
        save_file(weights_of(aligner), str(staging / WEIGHTS))
        manifest = manifest_of(
            aligner, source=source, target=target, version=version, provenance=provenance or {}
        )
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        sums = "".join(f"{_sha256(staging / name)}  {name}\n" for name in (MANIFEST, WEIGHTS))
        (staging / SUMS).write_text(sums)
        fsync_tree(staging)
        os.rename(staging, directory)
        fsync_directory(parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def read_manifest(directory: Path) -> dict[str, Any]:
    """The manifest, once SHA256SUMS vouches for it and the weights."""
    _check_sums(directory)
    manifest: dict[str, Any] = json.loads((directory / MANIFEST).read_text())
    if manifest.get("format") != FORMAT:
        msg = f"{directory} is not a {FORMAT} map (format {manifest.get('format')!r})"
        raise InvalidRequest(msg, details={"path": str(directory)})
    return manifest


def read_kv_map(directory: Path) -> tuple[KVAligner, dict[str, Any]]:
    """(aligner, manifest) of a map directory; InvalidRequest for anything that does not check
    out (a missing or altered file, another format, arrays that do not match the manifest)."""
    from safetensors.numpy import load_file

    manifest = read_manifest(directory)
    source = KVGeometry.from_json(manifest["source_geometry"])
    target = KVGeometry.from_json(manifest["target_geometry"])
    tensors = load_file(str(directory / WEIGHTS))
    aligner = KVAligner.from_head_maps(
        source, target,
        _head_maps(tensors, "k", target.layers), _head_maps(tensors, "v", target.layers),
        granularity=manifest["granularity"],
    )  # fmt: skip
    aligner.exact_identity_ = bool(manifest["exact_identity"])
    quality = manifest["quality"]
    aligner.exchange_quality_ = _from_dict(quality["held_out"])
    aligner.keys_.quality = _from_dict(quality["diagnostics"]["keys"])
    aligner.values_.quality = _from_dict(quality["diagnostics"]["values"])
    if aligner.content_hash != manifest["content_hash"]:
        msg = f"KV map {directory}: its arrays do not match the manifest's content hash"
        raise InvalidRequest(msg, details={"path": str(directory)})
    return aligner, manifest


def _from_dict(data: dict[str, Any] | None) -> AlignmentQuality | None:
    return None if data is None else AlignmentQuality(**data)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check_sums(directory: Path) -> None:
    sums = directory / SUMS
    if not sums.is_file():
        raise InvalidRequest(f"KV map {directory} has no {SUMS}", details={"path": str(directory)})
    listed: dict[str, str] = {}
    for line in sums.read_text().splitlines():
        digest, _, name = line.partition("  ")
        listed[name.strip()] = digest.strip()
    for name in (MANIFEST, WEIGHTS):
        expected = listed.get(name)
        if expected is None or not (directory / name).is_file():
            msg = f"KV map {directory}: {name} is missing or not listed in {SUMS}"
            raise InvalidRequest(msg, details={"path": str(directory), "file": name})
        if _sha256(directory / name) != expected:
            msg = f"KV map {directory}: {name} does not match its SHA-256 in {SUMS}"
            raise InvalidRequest(msg, details={"path": str(directory), "file": name})


__all__ = [
    "FORMAT",
    "MANIFEST",
    "RETENTION_DEFINITION",
    "SUMS",
    "WEIGHTS",
    "manifest_of",
    "read_kv_map",
    "read_manifest",
    "tensor_name",
    "weights_of",
    "write_kv_map",
]
