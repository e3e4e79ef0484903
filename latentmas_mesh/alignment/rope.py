"""Rotary position embedding: per-layer parameters, angle tables, and a numpy reference rotation."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final, Literal

import numpy as np
import numpy.typing as npt

from latentmas_mesh.alignment._types import F32, IntArray
from latentmas_mesh.errors import DimensionMismatch, InvalidRequest

Convention = Literal["half", "interleaved"]
CONVENTION_CODES: Final[dict[Convention, int]] = {"half": 0, "interleaved": 1}


@dataclass(frozen=True)
class RotarySpec:
    """How one layer rotates its keys (what must be undone before mapping and redone after).

    theta: RoPE base; inverse frequencies ω_i = theta^(−2i/r), i < r/2, r = rotated dims.
    convention: "half" pairs coordinate i with i + r/2 (GPT-NeoX rotate_half, Hugging Face
        llama / gemma); "interleaved" pairs 2i with 2i+1 (GPT-J, original Meta llama).
    rotary_dim: rotated leading coordinates r (None: the whole head; 0: no rotation at all);
        the rest pass through (partial rotary, e.g. phi-2).
    scaling_factor: linear position scaling, angle = (p / factor)·ω_i.
    inv_freq: explicit ω (length r/2), for scaled schemes such as llama3's; overrides theta.
    """

    theta: float = 10_000.0
    convention: Convention = "half"
    rotary_dim: int | None = None
    scaling_factor: float = 1.0
    inv_freq: tuple[float, ...] | None = None

    @classmethod
    def none(cls) -> RotarySpec:
        """No rotation (values, or models whose cached keys carry no position)."""
        return cls(rotary_dim=0)

    def rotated_dims(self, head_dim: int) -> int:
        """r for a head of `head_dim` coordinates; DimensionMismatch if it cannot be rotated."""
        rotated = head_dim if self.rotary_dim is None else self.rotary_dim
        if rotated % 2 or not 0 <= rotated <= head_dim:
            raise DimensionMismatch(
                f"cannot rotate {rotated} of {head_dim} coordinates (needs an even count)",
                details={"rotary_dim": rotated, "head_dim": head_dim},
            )
        if self.inv_freq is not None and len(self.inv_freq) != rotated // 2:
            raise DimensionMismatch(
                f"inv_freq has {len(self.inv_freq)} entries, rotary needs {rotated // 2}",
                details={"inv_freq": len(self.inv_freq), "rotary_dim": rotated},
            )
        return rotated

    def inverse_frequencies(self, head_dim: int) -> F32:
        """ω: [r/2] float32, computed in float32 as Hugging Face does, so de-rotation undoes
        exactly the angles a Hugging Face model rotated its cached keys by."""
        rotated = self.rotated_dims(head_dim)
        if self.inv_freq is not None:
            return np.asarray(self.inv_freq, dtype=np.float32)
        if self.convention not in CONVENTION_CODES:
            raise InvalidRequest(
                f"unknown rotary convention {self.convention!r}",
                details={"convention": self.convention},
            )
        exponents = np.arange(0, rotated, 2, dtype=np.float32) / np.float32(rotated)
        return np.asarray(np.float32(1.0) / (np.float32(self.theta) ** exponents), np.float32)


def rotary_angles(spec: RotarySpec, head_dim: int, positions: npt.ArrayLike) -> F32:
    """θ[p, i] = (p / factor)·ω_i as a float32 product: [S, r/2] for positions [S]."""
    scaled = np.asarray(positions, dtype=np.float32) / np.float32(spec.scaling_factor)
    return np.asarray(np.outer(scaled, spec.inverse_frequencies(head_dim)), dtype=np.float32)


def cos_sin(spec: RotarySpec, head_dim: int, positions: npt.ArrayLike) -> tuple[F32, F32]:
    """cos θ and sin θ, each [S, r/2] float32, rounded once from float64 evaluation."""
    angles = rotary_angles(spec, head_dim, positions).astype(np.float64)
    return np.cos(angles).astype(np.float32), np.sin(angles).astype(np.float32)


def apply_rotary(
    x: npt.ArrayLike,
    cos: F32,
    sin: F32,
    convention: Convention,
    *,
    inverse: bool = False,
) -> F32:
    """Rotate (or, with inverse, de-rotate) x: [..., S, D] float32 by angle tables [S, r/2].

    For each pair (a, b) of the convention: a' = a·cos − b·sin, b' = b·cos + a·sin; inverse
    rotation uses −sin. Coordinates from r on pass through. This is the numpy reference that the
    fused kernel is tested against.
    """
    out = np.array(x, dtype=np.float32)
    half = cos.shape[-1]
    if half == 0:
        return out
    signed_sin = -sin if inverse else sin
    if convention == "half":
        first, second = out[..., :half].copy(), out[..., half : 2 * half].copy()
        out[..., :half] = first * cos - second * signed_sin
        out[..., half : 2 * half] = second * cos + first * signed_sin
    else:
        first, second = out[..., 0 : 2 * half : 2].copy(), out[..., 1 : 2 * half : 2].copy()
        out[..., 0 : 2 * half : 2] = first * cos - second * signed_sin
        out[..., 1 : 2 * half : 2] = second * cos + first * signed_sin
    return out


@dataclass(frozen=True)
class RotaryTables:
    """Angle tables of every distinct layer spec, for a cache's positions (kernel input).

    cos, sin: [tables, S, half_max] float32 (zero-padded past each table's r/2);
    layer_table: [layers] which table each layer uses; rotated: [tables] r of each table;
    convention: 0 half, 1 interleaved (one convention per model).
    """

    cos: F32
    sin: F32
    layer_table: IntArray
    rotated: IntArray
    convention: int

    @property
    def convention_name(self) -> Convention:
        return "half" if self.convention == 0 else "interleaved"

    def layer(self, index: int) -> tuple[F32, F32]:
        """(cos, sin) [S, r/2] of one layer, unpadded."""
        table = int(self.layer_table[index])
        half = int(self.rotated[table]) // 2
        return self.cos[table, :, :half], self.sin[table, :, :half]


def rotary_tables(
    specs: Sequence[RotarySpec], head_dim: int, positions: npt.ArrayLike
) -> RotaryTables:
    """Tables for a model whose layer i rotates by specs[i], at the cache's positions [S]."""
    position_array = np.asarray(positions)
    conventions = {spec.convention for spec in specs if spec.rotated_dims(head_dim) > 0}
    if len(conventions) > 1:
        raise InvalidRequest(
            "one model must use one rotary convention", details={"conventions": sorted(conventions)}
        )
    distinct = list(dict.fromkeys(specs))
    layer_table = np.asarray([distinct.index(spec) for spec in specs], dtype=np.int64)
    rotated = np.asarray([spec.rotated_dims(head_dim) for spec in distinct], dtype=np.int64)
    half_max = int(rotated.max(initial=0)) // 2
    cos = np.zeros((len(distinct), position_array.shape[0], half_max), dtype=np.float32)
    sin = np.zeros_like(cos)
    for index, spec in enumerate(distinct):
        half = int(rotated[index]) // 2
        cos[index, :, :half], sin[index, :, :half] = cos_sin(spec, head_dim, position_array)
    convention: Convention = conventions.pop() if conventions else "half"
    return RotaryTables(cos, sin, layer_table, rotated, CONVENTION_CODES[convention])


def no_rotation(layers: int, positions: int) -> RotaryTables:
    """Tables that rotate nothing (values, or position-free keys) for `layers` layers."""
    empty = np.zeros((1, positions, 0), dtype=np.float32)
    return RotaryTables(
        empty, empty.copy(), np.zeros(layers, dtype=np.int64), np.zeros(1, np.int64), 0
    )
