"""KV-cache alignment (section 3.5.3): layer/head mappings, per-map fitting, and the aligner."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Final, Literal

import numba
import numpy as np
import numpy.typing as npt

from latentmas_mesh.alignment._types import F32, F64, Allocator, IntArray
from latentmas_mesh.alignment.kernels import (
    HeadMaps,
    align_heads,
    align_heads_reference,
    tile_positions,
)
from latentmas_mesh.alignment.quality import AlignmentQuality
from latentmas_mesh.alignment.rope import RotarySpec, RotaryTables, apply_rotary, rotary_tables
from latentmas_mesh.errors import DimensionMismatch, InvalidRequest

Granularity = Literal["head", "layer"]
Backend = Literal["kernel", "numpy"]
KV_FORMAT: Final = "latentmas-kv-aligner/1"
# What `align` allocates beside its output (KVAligner.align_bytes): per position, the int64
# positions; per angle while one layer spec's table is built (rope.cos_sin), the float64 angles
# and sine beside the float32 cosine and sine.
POSITION_BYTES: Final = 8
ANGLE_BUILD_BYTES: Final = 8 + 8 + 4 + 4


@dataclass(frozen=True)
class KVGeometry:
    """A model's cache geometry: [layers, kv_heads, seq, head_dim] keys, value_dim values.

    rotary: one RotarySpec per layer (layers may differ in base, as gemma-3's do).
    """

    layers: int
    kv_heads: int
    head_dim: int
    rotary: tuple[RotarySpec, ...]
    value_dim: int = 0  # 0: same as head_dim
    name: str = ""

    def __post_init__(self) -> None:
        if min(self.layers, self.kv_heads, self.head_dim) < 1 or self.value_dim < 0:
            raise InvalidRequest("cache geometry needs positive dimensions", details={})
        if len(self.rotary) != self.layers:
            raise InvalidRequest(
                f"{len(self.rotary)} rotary specs for {self.layers} layers",
                details={"rotary": len(self.rotary), "layers": self.layers},
            )
        for spec in self.rotary:
            spec.rotated_dims(self.head_dim)

    @classmethod
    def uniform(
        cls,
        layers: int,
        kv_heads: int,
        head_dim: int,
        rotary: RotarySpec | None = None,
        *,
        value_dim: int = 0,
        name: str = "",
    ) -> KVGeometry:
        """Every layer rotating alike (RotarySpec() by default: theta 10,000, half)."""
        spec = RotarySpec() if rotary is None else rotary
        return cls(layers, kv_heads, head_dim, (spec,) * layers, value_dim, name)

    @property
    def value_width(self) -> int:
        return self.value_dim or self.head_dim

    def cache_bytes(self, seq: int, dtype: npt.DTypeLike) -> tuple[int, int]:
        """Bytes of the keys and of the values of this geometry for `seq` positions in `dtype`."""
        row = self.layers * self.kv_heads * seq * np.dtype(dtype).itemsize
        return row * self.head_dim, row * self.value_width

    def check_cache(self, keys: npt.NDArray[Any], values: npt.NDArray[Any]) -> int:
        """Raise DimensionMismatch unless keys/values fit this geometry; returns seq length."""
        expected_keys = (self.layers, self.kv_heads, self.head_dim)
        expected_values = (self.layers, self.kv_heads, self.value_width)
        key_shape = (*keys.shape[:2], keys.shape[-1]) if keys.ndim == 4 else keys.shape
        value_shape = (*values.shape[:2], values.shape[-1]) if values.ndim == 4 else values.shape
        if (
            keys.ndim != 4
            or values.ndim != 4
            or key_shape != expected_keys
            or value_shape != expected_values
            or keys.shape[2] != values.shape[2]
        ):
            raise DimensionMismatch(
                f"cache keys {keys.shape} / values {values.shape} do not fit "
                f"{self.name or 'the model'}: expected [{self.layers}, {self.kv_heads}, seq, "
                f"{self.head_dim}] keys and [.., {self.value_width}] values",
                details={
                    "model": self.name,
                    "keys": list(keys.shape),
                    "values": list(values.shape),
                    "expected_keys": [self.layers, self.kv_heads, "seq", self.head_dim],
                    "expected_values": [self.layers, self.kv_heads, "seq", self.value_width],
                },
            )
        return int(keys.shape[2])

    def tables(self, positions: npt.ArrayLike) -> RotaryTables:
        """Angle tables of every layer at `positions` [S]."""
        return rotary_tables(self.rotary, self.head_dim, positions)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["rotary"] = [asdict(spec) for spec in self.rotary]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> KVGeometry:
        rotary = tuple(
            RotarySpec(**{**spec, "inv_freq": None if spec["inv_freq"] is None
                          else tuple(spec["inv_freq"])})
            for spec in data["rotary"]
        )  # fmt: skip
        return cls(**{**data, "rotary": rotary})


@dataclass(frozen=True)
class AlignBytes:
    """What one `KVAligner.align` call allocates, predicted from shapes before it runs.

    output: the aligned keys and values, exact; working: what is alive beside them at the peak
    (positions, rotary angle tables, the kernel's tiles as if every thread held one), to within
    the call's few KiB of Python objects.
    """

    output: int
    working: int

    @property
    def total(self) -> int:
        return self.output + self.working


def _table_bytes(geometry: KVGeometry, seq: int) -> tuple[int, int]:
    """(one cos or sin array of `geometry.tables` at `seq` positions, the transient peak of
    building one layer spec's angles), as rope.rotary_tables allocates them."""
    half_max = max(spec.rotated_dims(geometry.head_dim) for spec in geometry.rotary) // 2
    distinct = len(dict.fromkeys(geometry.rotary))
    return distinct * seq * half_max * 4, seq * half_max * ANGLE_BUILD_BYTES


def _tile_bytes(maps: HeadMaps, seq: int, threads: int) -> int:
    """The fused kernel's buffers of the work items running at once (one a thread): each holds
    [tile, n_in·D_s] input bits, the sgemm's [tile, D_t] product and a [D_t] scratch row."""
    inner, outer = int(maps.weight.shape[2]), maps.target_dim
    rows = min(tile_positions(inner, outer), seq)
    items = maps.target_layers * maps.target_heads * -(-seq // rows)
    return min(threads, items) * (rows * (inner + outer) + outer) * 4


def proportional_layer_map(source_layers: int, target_layers: int) -> IntArray:
    """Target layer l reads source layer ⌊(l + ½)·L_s / L_t⌋: the same relative depth."""
    layers = np.arange(target_layers)
    return np.asarray(((layers + 0.5) * source_layers / target_layers).astype(np.int64))


def proportional_head_map(source_heads: int, target_heads: int) -> IntArray:
    """Target KV head h reads source head ⌊(h + ½)·H_s / H_t⌋ (GQA counts differ)."""
    return proportional_layer_map(source_heads, target_heads)


def layer_window(center: int, neighbours: int, layers: int) -> list[int]:
    """2·neighbours + 1 consecutive layers around `center`, shifted inward at the ends."""
    width = min(2 * neighbours + 1, layers)
    start = min(max(center - neighbours, 0), layers - width)
    return list(range(start, start + width))


@dataclass(frozen=True)
class KVMapping:
    """Which source (layer, head)s each target head reads, and at what granularity.

    inputs: [L_t, H_t, n_in, 2] (source layer, source head), in feature order.
    "head": target head (l, h) reads head head_map[h] of the source layers around layer_map[l]
        (one map per target head, the spec's head_dim x head_dim maps).
    "layer": every head of target layer l reads all source heads of those layers, and one map
        per target layer is fitted on the flattened heads, then split by target head.
    """

    granularity: Granularity
    inputs: IntArray

    @classmethod
    def build(
        cls,
        source: KVGeometry,
        target: KVGeometry,
        *,
        granularity: Granularity = "head",
        layer_map: Sequence[int] | None = None,
        head_map: Sequence[int] | None = None,
        neighbour_layers: int = 0,
    ) -> KVMapping:
        """Explicit maps win; the defaults are proportional depth and proportional heads."""
        layers = _checked_map(layer_map, target.layers, source.layers, "layer_map")
        if layers is None:
            layers = proportional_layer_map(source.layers, target.layers)
        heads = _checked_map(head_map, target.kv_heads, source.kv_heads, "head_map")
        if heads is None:
            heads = proportional_head_map(source.kv_heads, target.kv_heads)
        if granularity not in ("head", "layer"):
            raise InvalidRequest(f"unknown granularity {granularity!r}", details={})
        if neighbour_layers < 0:
            raise InvalidRequest("neighbour_layers must be >= 0", details={})
        inputs = []
        for layer in range(target.layers):
            window = layer_window(int(layers[layer]), neighbour_layers, source.layers)
            row = []
            for head in range(target.kv_heads):
                if granularity == "head":
                    row.append([(s, int(heads[head])) for s in window])
                else:
                    row.append([(s, h) for s in window for h in range(source.kv_heads)])
            inputs.append(row)
        return cls(granularity, np.asarray(inputs, dtype=np.int64))


def _checked_map(
    mapping: Sequence[int] | None, length: int, bound: int, name: str
) -> IntArray | None:
    if mapping is None:
        return None
    array = np.asarray(mapping, dtype=np.int64)
    if array.shape != (length,) or array.min(initial=0) < 0 or array.max(initial=0) >= bound:
        raise DimensionMismatch(
            f"{name} needs {length} entries in [0, {bound})",
            details={name: array.tolist(), "length": length, "bound": bound},
        )
    return array


def mean_quality(qualities: Sequence[AlignmentQuality]) -> AlignmentQuality:
    """Average of each metric over several maps (a cache's figure); rows are summed."""
    return AlignmentQuality(
        cosine_similarity=float(np.mean([q.cosine_similarity for q in qualities])),
        euclidean_distance=float(np.mean([q.euclidean_distance for q in qualities])),
        information_retention=float(np.mean([q.information_retention for q in qualities])),
        confidence=float(np.mean([q.confidence for q in qualities])),
        heldout_rows=int(sum(q.heldout_rows for q in qualities)),
    )


@dataclass
class _Fitted:
    """One tensor kind's maps (keys or values) and their regression diagnostics."""

    heads: HeadMaps
    quality: AlignmentQuality | None = None


class KVAligner:
    """Turns a source model's KV cache into a cache of the target model's shape.

    Keys: de-rotated with the source layer's rotary angles at their positions, mapped,
    re-rotated with the target layer's angles (cached keys are stored rotated). Values: mapped
    only. Separate maps for keys and values, per target head or per target layer (KVMapping).
    Fitting data are anchor activations of both models, row-paired by token:
    [layers, kv_heads, n, dim] each, with each side's token positions [n].
    """

    mapping_: KVMapping
    keys_: _Fitted
    values_: _Fitted
    exact_identity_: bool

    def __init__(
        self, source: KVGeometry, target: KVGeometry, *, granularity: Granularity = "head"
    ) -> None:
        self.source = source
        self.target = target
        self.granularity = granularity
        self.exchange_quality_: AlignmentQuality | None = None

    @classmethod
    def from_head_maps(
        cls,
        source: KVGeometry,
        target: KVGeometry,
        keys: HeadMaps,
        values: HeadMaps,
        *,
        granularity: Granularity = "head",
        keys_quality: AlignmentQuality | None = None,
        values_quality: AlignmentQuality | None = None,
    ) -> KVAligner:
        """An aligner from given affine head maps (maps fitted elsewhere, identities, loaded
        files). Pass the held-out quality measured where they were fitted, if any."""
        aligner = cls(source, target, granularity=granularity)
        aligner.mapping_ = KVMapping(granularity, keys.inputs)
        aligner.keys_ = _Fitted(keys, keys_quality)
        aligner.values_ = _Fitted(values, values_quality)
        aligner.exact_identity_ = False
        return aligner

    @classmethod
    def identity(cls, geometry: KVGeometry) -> KVAligner:
        """Same model on both sides: every head maps to itself with W = I (exact)."""
        mapping = KVMapping.build(geometry, geometry)

        def eye(width: int) -> HeadMaps:
            weight = np.broadcast_to(
                np.eye(width, dtype=np.float32),
                (geometry.layers, geometry.kv_heads, width, width),
            )
            bias = np.zeros((geometry.layers, geometry.kv_heads, width), dtype=np.float32)
            return HeadMaps(mapping.inputs, np.ascontiguousarray(weight), bias)

        aligner = cls.from_head_maps(
            geometry, geometry, eye(geometry.head_dim), eye(geometry.value_width)
        )
        aligner.exact_identity_ = True
        return aligner

    def to_tensors(self) -> tuple[dict[str, npt.NDArray[Any]], dict[str, Any]]:
        """The head-map arrays and the JSON description (geometries, quality, content hash)
        that `from_tensors` rebuilds this aligner from."""
        meta = {
            "format": KV_FORMAT,
            "source": self.source.to_json(),
            "target": self.target.to_json(),
            "granularity": self.mapping_.granularity,
            "exact_identity": self.exact_identity_,
            "keys_quality": _quality_json(self.keys_.quality),
            "values_quality": _quality_json(self.values_.quality),
            "exchange_quality": _quality_json(self.exchange_quality_),
            "content_hash": self.content_hash,
        }
        return self._arrays(), meta

    @classmethod
    def from_tensors(
        cls, tensors: dict[str, npt.NDArray[Any]], meta: dict[str, Any], *, origin: str
    ) -> KVAligner:
        """Rebuild an aligner from `to_tensors` output (hash checked); `origin` names where
        they came from, for the error."""
        if meta.get("format") != KV_FORMAT:
            raise InvalidRequest(f"{origin} is not a KV aligner", details={})
        aligner = cls.from_head_maps(
            KVGeometry.from_json(meta["source"]),
            KVGeometry.from_json(meta["target"]),
            HeadMaps(tensors["keys/inputs"], tensors["keys/weight"], tensors["keys/bias"]),
            HeadMaps(tensors["values/inputs"], tensors["values/weight"], tensors["values/bias"]),
            granularity=meta["granularity"],
        )
        aligner.exact_identity_ = bool(meta["exact_identity"])
        aligner.keys_.quality = _quality_from_json(meta["keys_quality"])
        aligner.values_.quality = _quality_from_json(meta["values_quality"])
        aligner.exchange_quality_ = _quality_from_json(meta.get("exchange_quality"))
        if aligner.content_hash != meta["content_hash"]:
            raise InvalidRequest(f"KV aligner {origin} does not match its content hash", details={})
        return aligner

    def _arrays(self) -> dict[str, npt.NDArray[Any]]:
        arrays: dict[str, npt.NDArray[Any]] = {}
        for kind, fitted in (("keys", self.keys_), ("values", self.values_)):
            arrays[f"{kind}/inputs"] = np.ascontiguousarray(fitted.heads.inputs)
            arrays[f"{kind}/weight"] = np.ascontiguousarray(fitted.heads.weight)
            arrays[f"{kind}/bias"] = np.ascontiguousarray(fitted.heads.bias)
        return arrays

    @property
    def content_hash(self) -> str:
        """sha256 over both geometries and every head-map array."""
        digest = hashlib.sha256(KV_FORMAT.encode())
        digest.update(json.dumps([self.source.to_json(), self.target.to_json()]).encode())
        for name, array in sorted(self._arrays().items()):
            digest.update(f"{name}\0{array.dtype.str}\0{list(array.shape)}\0".encode())
            digest.update(array.tobytes())
        return f"sha256:{digest.hexdigest()}"

    @property
    def quality(self) -> AlignmentQuality | None:
        """The published quality: what exchanges through these maps retain, measured on the
        receiver on passages the maps never saw (`exchange_quality_`; None until measured)."""
        return self.exchange_quality_

    @property
    def regression_quality(self) -> AlignmentQuality | None:
        """Diagnostic: the key and value maps' held-out fit, averaged. Its
        `information_retention` field is the R² of predicted pre-RoPE keys and values, *not*
        what an exchange retains."""
        qualities = [q for q in (self.keys_.quality, self.values_.quality) if q is not None]
        return mean_quality(qualities) if qualities else None

    def align_bytes(
        self, seq: int, dtype: npt.DTypeLike, *, threads: int | None = None
    ) -> AlignBytes:
        """What `align(keys, values, positions=...)` allocates for a C-contiguous cache of `seq`
        positions in `dtype` (the codec decodes such caches), the target at the source's
        positions and out_dtype left as the cache's: a caller checks it before the call.

        The kernel path's peak is one of its steps: the source's angle tables being built; the
        target's being built beside them; the keys mapped beside both and the source's negated
        sine; the values mapped beside the keys. threads: the kernel's (default: numba's).
        """
        out_keys, out_values = self.target.cache_bytes(seq, dtype)
        positions = seq * POSITION_BYTES
        if self.exact_identity_:
            return AlignBytes(out_keys + out_values, positions)
        source_table, source_build = _table_bytes(self.source, seq)
        target_table, target_build = _table_bytes(self.target, seq)
        workers = numba.get_num_threads() if threads is None else threads
        key_tiles = _tile_bytes(self.keys_.heads, seq, workers)
        value_tiles = _tile_bytes(self.values_.heads, seq, workers)
        peak = max(
            2 * source_table + source_build,
            2 * source_table + 2 * target_table + target_build,
            3 * source_table + 2 * target_table + out_keys + key_tiles,
            out_keys + out_values + value_tiles,
        )
        return AlignBytes(out_keys + out_values, positions + peak - out_keys - out_values)

    def align(
        self,
        keys: npt.NDArray[Any],
        values: npt.NDArray[Any],
        *,
        positions: npt.ArrayLike | None = None,
        target_positions: npt.ArrayLike | None = None,
        out_dtype: npt.DTypeLike | None = None,
        backend: Backend = "kernel",
        allocate: Allocator = np.empty,
    ) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
        """Align one cache: keys [L_s, H_s, S, D_s], values [L_s, H_s, S, Dv_s] -> the target's.

        positions [S]: where the source rotated each cached key (default 0..S−1);
        target_positions [S]: where the target should see them (default: the same positions,
        so each source token becomes a latent memory slot at its own position); allocate: where
        the kernel writes the results (see `align_heads`).
        Raises DimensionMismatch when the cache does not fit the source geometry.
        """
        seq = self.source.check_cache(keys, values)
        source_positions = _positions(positions, seq)
        target_at = (
            source_positions if target_positions is None else _positions(target_positions, seq)
        )
        if self.exact_identity_ and np.array_equal(source_positions, target_at):
            # R(p)·I·R(p)⁻¹ = I: an identity exchange is returned bit for bit, not re-rounded.
            out_type = keys.dtype if out_dtype is None else np.dtype(out_dtype)
            return _copy_into(keys, out_type, allocate), _copy_into(values, out_type, allocate)
        if backend == "numpy":
            return (
                align_heads_reference(
                    keys,
                    self.keys_.heads,
                    source_rotary=self.source.tables(source_positions),
                    target_rotary=self.target.tables(target_at),
                    out_dtype=out_dtype,
                ),
                align_heads_reference(values, self.values_.heads, out_dtype=out_dtype),
            )
        aligned_keys = align_heads(
            keys,
            self.keys_.heads,
            source_rotary=self.source.tables(source_positions),
            target_rotary=self.target.tables(target_at),
            out_dtype=out_dtype,
            allocate=allocate,
        )
        aligned_values = align_heads(
            values, self.values_.heads, out_dtype=out_dtype, allocate=allocate
        )
        return aligned_keys, aligned_values

    def align_pooled(
        self,
        keys: npt.NDArray[Any],
        values: npt.NDArray[Any],
        pooling: npt.ArrayLike,
        *,
        positions: npt.ArrayLike | None = None,
        target_positions: npt.ArrayLike | None = None,
        out_dtype: npt.DTypeLike | None = None,
    ) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
        """Align, then pool onto the target's tokens: pooling [S_t, S] rows sum to 1.

        The maps are affine and each pooling row sums to one, so pooling de-rotated source
        entries before mapping equals pooling the mapped ones; keys are re-rotated at
        target_positions [S_t] (default 0..S_t−1) afterwards.
        """
        seq = self.source.check_cache(keys, values)
        weights = np.asarray(pooling, dtype=np.float32)
        if weights.ndim != 2 or weights.shape[1] != seq:
            raise DimensionMismatch(
                f"pooling must be [target_tokens, {seq}], got {weights.shape}",
                details={"pooling": list(weights.shape), "seq": seq},
            )
        source_tables = self.source.tables(_positions(positions, seq))
        derotated = _derotate(keys.astype(np.float32), source_tables)
        pooled_keys = np.einsum("ts,lhsd->lhtd", weights, derotated).astype(np.float32)
        pooled_values = np.einsum("ts,lhsd->lhtd", weights, values.astype(np.float32))
        target_at = _positions(target_positions, weights.shape[0])
        out_type = keys.dtype if out_dtype is None else out_dtype
        aligned_keys = align_heads(
            pooled_keys,
            self.keys_.heads,
            target_rotary=self.target.tables(target_at),
            out_dtype=out_type,
        )
        aligned_values = align_heads(
            pooled_values.astype(np.float32), self.values_.heads, out_dtype=out_type
        )
        return aligned_keys, aligned_values


def _quality_json(quality: AlignmentQuality | None) -> dict[str, Any] | None:
    return None if quality is None else quality.to_dict()


def _quality_from_json(data: dict[str, Any] | None) -> AlignmentQuality | None:
    return None if data is None else AlignmentQuality(**data)


def _copy_into(
    array: npt.NDArray[Any], dtype: np.dtype[Any], allocate: Allocator
) -> npt.NDArray[Any]:
    """`array` as `dtype` in memory from `allocate` (the identity exchange's one copy)."""
    out = allocate(array.shape, dtype)
    np.copyto(out, array, casting="unsafe")
    return out


def _positions(positions: npt.ArrayLike | None, seq: int) -> IntArray:
    if positions is None:
        return np.arange(seq, dtype=np.int64)
    array = np.asarray(positions, dtype=np.int64)
    if array.shape != (seq,):
        raise DimensionMismatch(
            f"positions must have shape ({seq},), got {array.shape}",
            details={"positions": list(array.shape), "seq": seq},
        )
    return array


def derotate_keys(keys: F32, geometry: KVGeometry, positions: npt.ArrayLike) -> F32:
    """Cached (rotated) keys [L, H, S, D] of `geometry` back to pre-RoPE keys."""
    return _derotate(keys, geometry.tables(_positions(positions, keys.shape[2])))


def _derotate(keys: F32, tables: RotaryTables) -> F32:
    """Undo each layer's rotation of keys [L, H, S, D] (numpy; used for fitting and pooling)."""
    out = np.empty_like(keys)
    for layer in range(keys.shape[0]):
        cos, sin = tables.layer(layer)
        out[layer] = apply_rotary(keys[layer], cos, sin, tables.convention_name, inverse=True)
    return out


def _features(source: F32, inputs: IntArray) -> F64:
    """Concatenate source heads inputs [n_in, 2] of source [L, H, n, D] into [n, n_in·D]."""
    return np.concatenate(
        [source[layer, head].astype(np.float64) for layer, head in inputs], axis=1
    )
