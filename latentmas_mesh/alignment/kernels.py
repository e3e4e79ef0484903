"""Fused numba kernel for KV alignment (de-rotate → map → re-rotate → cast) and its numpy twin."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final

import ml_dtypes
import numpy as np
import numpy.typing as npt
from numba import njit, prange

from latentmas_mesh.alignment._types import F32, Allocator, IntArray
from latentmas_mesh.alignment.rope import RotaryTables, apply_rotary, no_rotation
from latentmas_mesh.errors import DimensionMismatch, InvalidRequest

# Storage formats the kernel reads and writes. 16-bit formats travel as their uint16 bits and
# float32 as two uint16 halves (little-endian), so the kernel has one signature, compiled once.
FMT_F32: Final = 0
FMT_F16: Final = 1
FMT_BF16: Final = 2
FORMATS: Final[dict[str, int]] = {"float32": FMT_F32, "float16": FMT_F16, "bfloat16": FMT_BF16}
NUMPY_DTYPES: Final[dict[int, np.dtype[Any]]] = {
    FMT_F32: np.dtype(np.float32),
    FMT_F16: np.dtype(np.float16),
    FMT_BF16: np.dtype(ml_dtypes.bfloat16),
}
# Rows per work item. One sgemm per item is [tile, K] x [K, N]; while tile·K·N stays within
# OpenBLAS's small-matrix limit (10^6 on AVX-512 builds) sgemm runs a kernel that needs no shared
# packing buffer. Measured here: with 256-row tiles two threads calling sgemm at once spun on
# OpenBLAS's buffer lock whenever another process took a core (median 13.6 s instead of 0.3 s);
# with 60-row tiles the median stayed at 0.35 s and the best run was faster too.
SMALL_GEMM_MAX: Final = 1_000_000
TILE_POSITIONS_MIN: Final = 16
TILE_POSITIONS_MAX: Final = 256
# float16 bits -> float32 bits, exact for all 65,536 inputs (subnormals, inf and NaN included).
F16_TO_F32_BITS: Final = (
    np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float32).view(np.uint32)
)


def tile_positions(inner: int, outer: int) -> int:
    """Rows per sgemm so that rows·inner·outer <= SMALL_GEMM_MAX, within [16, 256]."""
    rows = SMALL_GEMM_MAX // max(1, inner * outer)
    return min(max(rows, TILE_POSITIONS_MIN), TILE_POSITIONS_MAX)


def storage_format(dtype: npt.DTypeLike) -> int:
    """FMT_* code of a numpy dtype; InvalidRequest for dtypes a KV cache never uses."""
    resolved = np.dtype(dtype)
    for code, candidate in NUMPY_DTYPES.items():
        if resolved == candidate and resolved.type is candidate.type:
            return code
    raise InvalidRequest(
        f"KV arrays must be float32, float16 or bfloat16, not {resolved}",
        details={"dtype": str(resolved), "allowed": sorted(FORMATS)},
    )


@dataclass(frozen=True)
class HeadMaps:
    """Affine maps from source heads to target heads, the kernel's whole description of W.

    inputs: [L_t, H_t, n_in, 2] int64: (source layer, source head) pairs that target head
        (l, h) reads, concatenated in this order (per-head granularity: n_in = 1).
    weight: [L_t, H_t, n_in·D_s, D_t] float32; bias: [L_t, H_t, D_t] float32.
    Target head (l, h) = concat_k(source[inputs[l, h, k]]) · weight[l, h] + bias[l, h].
    """

    inputs: IntArray
    weight: F32
    bias: F32

    @property
    def target_layers(self) -> int:
        return int(self.inputs.shape[0])

    @property
    def target_heads(self) -> int:
        return int(self.inputs.shape[1])

    @property
    def target_dim(self) -> int:
        return int(self.weight.shape[3])

    def source_dim(self) -> int:
        return int(self.weight.shape[2]) // int(self.inputs.shape[2])


# ----------------------------------------------------------------------- numba kernel


@njit(cache=True, inline="always", nogil=True)
def _rotate_row(
    row: F32, cos: F32, sin: F32, rotated: int, convention: int
) -> None:  # pragma: no cover - compiled
    """Rotate the first `rotated` coordinates of one row in place by angle tables [r/2].

    Pairs (a, b) become (a·cos − b·sin, b·cos + a·sin); de-rotation is given sin negated
    (rotation by −θ). Each convention has its own unit-stride loop so that it vectorises.
    """
    half = rotated // 2
    if convention == 0:
        first = row[:half]
        second = row[half:rotated]
        for i in range(half):
            a = first[i]
            b = second[i]
            first[i] = a * cos[i] - b * sin[i]
            second[i] = b * cos[i] + a * sin[i]
    else:
        for i in range(half):
            a = row[2 * i]
            b = row[2 * i + 1]
            row[2 * i] = a * cos[i] - b * sin[i]
            row[2 * i + 1] = b * cos[i] + a * sin[i]


@njit(cache=True, inline="always", nogil=True)
def _load_row(
    src: npt.NDArray[np.uint16],
    src_fmt: int,
    bits: npt.NDArray[np.uint32],
    f16_table: npt.NDArray[np.uint32],
) -> None:  # pragma: no cover - compiled
    """One source row (storage words) into `bits` as float32 bit patterns."""
    if src_fmt == FMT_F32:
        words = src.view(np.uint32)
        for j in range(bits.shape[0]):
            bits[j] = words[j]
    elif src_fmt == FMT_BF16:
        for j in range(bits.shape[0]):
            bits[j] = np.uint32(src[j]) << 16
    else:
        for j in range(bits.shape[0]):
            bits[j] = f16_table[src[j]]


@njit(cache=True, inline="always", nogil=True)
def _store_row(
    out: npt.NDArray[np.uint16],
    out_fmt: int,
    y: F32,
    shifted: F32,
) -> None:  # pragma: no cover - compiled
    """One float32 row y [D_t] into `out` in the target storage format.

    Both 16-bit conversions round to nearest even without a branch per element, so the loops
    vectorise. bfloat16: (b + 0x7FFF + lsb) >> 16. float16, normal range: the same rounding at
    bit 13 minus the exponent re-bias 112 << 10, clamped at infinity (0x7C00); subnormal range
    (|y| < 2^−14): the float addition |y| + 0.5 rounds to a multiple of 2^−24, the float16
    subnormal step, so its low bits are the rounded subnormal (Giesen's float_to_half trick).
    `shifted` is a scratch row of the same width.
    """
    bits = y.view(np.uint32)
    width = y.shape[0]
    if out_fmt == FMT_F32:
        words = out.view(np.uint32)
        for j in range(width):
            words[j] = bits[j]
    elif out_fmt == FMT_BF16:
        for j in range(width):
            b = np.int64(bits[j])
            nan = (b & 0x7FFFFFFF) > 0x7F800000
            rounded = (b + 0x7FFF + ((b >> 16) & 1)) >> 16
            out[j] = ((b >> 16) | 0x40) if nan else rounded
    else:
        shifted_bits = shifted.view(np.uint32)
        for j in range(width):
            shifted[j] = abs(y[j]) + np.float32(0.5)
        for j in range(width):
            b = np.int64(bits[j])
            magnitude = b & 0x7FFFFFFF
            sign = (b >> 16) & 0x8000
            rounded = ((magnitude + 0xFFF + ((magnitude >> 13) & 1)) >> 13) - 0x1C000
            normal = min(int(rounded), 0x7C00)
            subnormal = np.int64(shifted_bits[j]) - 0x3F000000
            special = 0x7E00 if magnitude > 0x7F800000 else normal
            half = subnormal if magnitude < 0x38800000 else special
            out[j] = sign | half


@njit(parallel=True, cache=True, fastmath=False, nogil=True)
def _fused_kernel(  # noqa: PLR0917 - njit takes no keyword-only arguments
    src: npt.NDArray[np.uint16],
    src_fmt: int,
    source_dim: int,
    inputs: IntArray,
    weight: F32,
    bias: F32,
    src_cos: F32,
    src_negated_sin: F32,
    src_layer_table: IntArray,
    src_rotated: IntArray,
    src_convention: int,
    tgt_cos: F32,
    tgt_sin: F32,
    tgt_layer_table: IntArray,
    tgt_rotated: IntArray,
    tgt_convention: int,
    out: npt.NDArray[np.uint16],
    out_fmt: int,
    f16_table: npt.NDArray[np.uint32],
    tile: int,
) -> None:  # pragma: no cover - compiled
    """One work item = (target layer, target head, tile of positions); items run in parallel.

    Per item only two small buffers exist ([tile, n_in·D_s] and [tile, D_t] float32). Row by
    row, while the row is in L1: load and convert each input head, de-rotate it with its source
    layer's angles. Then one BLAS sgemm with the head's weight. Then row by row: add bias,
    re-rotate with the target layer's angles, convert and store. fastmath is off: results must
    match the numpy twin and NaN/inf must propagate; the sgemm dominates the time anyway.
    """
    target_layers, target_heads, n_in = inputs.shape[0], inputs.shape[1], inputs.shape[2]
    positions = src.shape[2]
    tiles = (positions + tile - 1) // tile
    for item in prange(target_layers * target_heads * tiles):
        layer = item // (target_heads * tiles)
        head = (item // tiles) % target_heads
        first_row = (item % tiles) * tile
        rows = min(tile, positions - first_row)
        bits = np.empty((rows, n_in * source_dim), dtype=np.uint32)
        x = bits.view(np.float32)
        for row in range(rows):
            position = first_row + row
            for k in range(n_in):
                src_layer, src_head = inputs[layer, head, k, 0], inputs[layer, head, k, 1]
                start = k * source_dim
                _load_row(
                    src[src_layer, src_head, position],
                    src_fmt,
                    bits[row, start : start + source_dim],
                    f16_table,
                )
                table = src_layer_table[src_layer]
                if src_rotated[table] > 0:
                    _rotate_row(
                        x[row, start : start + source_dim],
                        src_cos[table, position],
                        src_negated_sin[table, position],
                        src_rotated[table],
                        src_convention,
                    )
        y = np.dot(x, weight[layer, head])
        table = tgt_layer_table[layer]
        rotated = tgt_rotated[table]
        shifted = np.empty(y.shape[1], dtype=np.float32)
        for row in range(rows):
            position = first_row + row
            y_row = y[row]
            for j in range(y_row.shape[0]):
                y_row[j] += bias[layer, head, j]
            if rotated > 0:
                _rotate_row(
                    y_row,
                    tgt_cos[table, position],
                    tgt_sin[table, position],
                    rotated,
                    tgt_convention,
                )
            _store_row(out[layer, head, position], out_fmt, y_row, shifted)


# ----------------------------------------------------------------------- public entry points


@functools.cache
def _blas_controller() -> Any:  # noqa: ANN401 (threadpoolctl is untyped)
    """threadpoolctl's view of the loaded BLAS libraries, built once (two threads racing to
    build it would only build it twice)."""
    from threadpoolctl import ThreadpoolController  # type: ignore[import-untyped]

    return ThreadpoolController()


@contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Run the block with BLAS at one thread: the kernel already runs one sgemm per core."""
    with _blas_controller().limit(limits=1, user_api="blas"):
        yield


def _check_layout(
    src: npt.NDArray[Any], maps: HeadMaps, source: RotaryTables, target: RotaryTables
) -> None:
    layers, heads, positions, width = src.shape
    used = maps.inputs.reshape(-1, 2)
    problems = []
    if used.size and (used[:, 0].max() >= layers or used[:, 1].max() >= heads or used.min() < 0):
        problems.append("the maps read source layers/heads the cache does not have")
    if width != maps.source_dim():
        problems.append(f"head_dim {width} but the maps read {maps.source_dim()}")
    if source.cos.shape[1] != positions or target.cos.shape[1] != positions:
        problems.append("rotary tables do not cover the cache's positions")
    if source.layer_table.shape[0] != layers or target.layer_table.shape[0] != maps.target_layers:
        problems.append("rotary tables do not have one entry per layer")
    if problems:
        raise DimensionMismatch(
            "KV cache does not fit the alignment maps: " + "; ".join(problems),
            details={"cache_shape": list(src.shape), "problems": problems},
        )


def align_heads(
    src: npt.NDArray[Any],
    maps: HeadMaps,
    *,
    source_rotary: RotaryTables | None = None,
    target_rotary: RotaryTables | None = None,
    out_dtype: npt.DTypeLike | None = None,
    tile: int | None = None,
    allocate: Allocator = np.empty,
) -> npt.NDArray[Any]:
    """Fused alignment of keys or values: [L_s, H_s, S, D_s] -> [L_t, H_t, S, D_t].

    src: float32 / float16 / bfloat16; source_rotary / target_rotary: angle tables at the cache's
    positions (None: no rotation, e.g. for values); out_dtype: default src's dtype;
    tile: positions per work item (default: tile_positions(K, N)); allocate(shape, dtype): where
    the result is written (a worker passes memory its client maps: no copy after the kernel).
    """
    source_tables = source_rotary or no_rotation(src.shape[0], src.shape[2])
    target_tables = target_rotary or no_rotation(maps.target_layers, src.shape[2])
    _check_layout(src, maps, source_tables, target_tables)
    src_fmt = storage_format(src.dtype)
    out_fmt = storage_format(src.dtype if out_dtype is None else out_dtype)
    bits_in = np.ascontiguousarray(src).view(np.uint16)
    out_shape = (maps.target_layers, maps.target_heads, src.shape[2], maps.target_dim)
    out = allocate(out_shape, NUMPY_DTYPES[out_fmt])
    if (
        out.shape != out_shape
        or out.dtype != NUMPY_DTYPES[out_fmt]
        or not (out.flags.c_contiguous and out.flags.writeable)
    ):
        msg = f"allocate returned {out.dtype}{list(out.shape)}, not a writable C-contiguous array"
        raise TypeError(msg)
    out_bits = out.view(np.uint16)
    with single_threaded_blas():
        _fused_kernel(
            bits_in, src_fmt, src.shape[3], maps.inputs, maps.weight, maps.bias,
            source_tables.cos, -source_tables.sin, source_tables.layer_table,
            source_tables.rotated, source_tables.convention,
            target_tables.cos, target_tables.sin, target_tables.layer_table,
            target_tables.rotated, target_tables.convention,
            out_bits, out_fmt, F16_TO_F32_BITS,
            max(1, tile or tile_positions(int(maps.weight.shape[2]), maps.target_dim)),
        )  # fmt: skip
    return out


def align_heads_reference(
    src: npt.NDArray[Any],
    maps: HeadMaps,
    *,
    source_rotary: RotaryTables | None = None,
    target_rotary: RotaryTables | None = None,
    out_dtype: npt.DTypeLike | None = None,
) -> npt.NDArray[Any]:
    """The numpy twin of align_heads: the same result from whole-array steps.

    Convert to float32, de-rotate every layer, gather the input heads, one batched matmul, add
    bias, re-rotate every layer, cast: each step materialises a full-size array (this is also
    the benchmark's "unfused" reference).
    """
    source_tables = source_rotary or no_rotation(src.shape[0], src.shape[2])
    target_tables = target_rotary or no_rotation(maps.target_layers, src.shape[2])
    _check_layout(src, maps, source_tables, target_tables)
    out_type = NUMPY_DTYPES[storage_format(src.dtype if out_dtype is None else out_dtype)]
    x = _rotate_layers(src.astype(np.float32), source_tables, inverse=True)
    layers, heads = maps.target_layers, maps.target_heads
    gathered = x[maps.inputs[..., 0], maps.inputs[..., 1]]  # [L_t, H_t, n_in, S, D_s]
    gathered = gathered.transpose(0, 1, 3, 2, 4).reshape(layers, heads, src.shape[2], -1)
    y = np.matmul(gathered, maps.weight) + maps.bias[:, :, None, :]
    return _rotate_layers(y, target_tables, inverse=False).astype(out_type)


def _rotate_layers(x: F32, tables: RotaryTables, *, inverse: bool) -> F32:
    """apply_rotary on each layer of [L, H, S, D] with that layer's table (None-rotated skipped)."""
    if int(tables.rotated.max(initial=0)) == 0:
        return x
    out = np.empty_like(x)
    for layer in range(x.shape[0]):
        cos, sin = tables.layer(layer)
        out[layer] = apply_rotary(x[layer], cos, sin, tables.convention_name, inverse=inverse)
    return out


def warm_up() -> None:
    """Compile (or load from numba's cache) the kernel's one signature.

    Call once at process start so that no request pays compile time (callers time it).
    """
    maps = HeadMaps(
        inputs=np.zeros((1, 1, 1, 2), dtype=np.int64),
        weight=np.eye(2, dtype=np.float32)[None, None],
        bias=np.zeros((1, 1, 2), dtype=np.float32),
    )
    align_heads(np.zeros((1, 1, 1, 2), dtype=np.float16), maps)
