"""Token alignment across tokenizers through character offsets (pure functions)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from latentmas_mesh.alignment._types import F64, IntArray
from latentmas_mesh.errors import DimensionMismatch


def _spans(offsets: npt.ArrayLike, name: str) -> IntArray:
    array = np.asarray(offsets, dtype=np.int64)
    if array.ndim != 2 or array.shape[1] != 2 or bool(np.any(array[:, 1] < array[:, 0])):
        raise DimensionMismatch(
            f"{name} must be [tokens, 2] (start, end) character spans with end >= start",
            details={name: list(array.shape)},
        )
    return array


def overlap_matrix(source_offsets: npt.ArrayLike, target_offsets: npt.ArrayLike) -> F64:
    """Characters shared by target token t and source token s: [S_t, S_s].

    offsets: [tokens, 2] half-open character spans [start, end) into the same text; tokens with
    empty spans (special tokens such as BOS) overlap nothing.
    """
    source = _spans(source_offsets, "source_offsets")
    target = _spans(target_offsets, "target_offsets")
    start = np.maximum(target[:, None, 0], source[None, :, 0])
    end = np.minimum(target[:, None, 1], source[None, :, 1])
    return np.asarray(np.clip(end - start, 0, None), dtype=np.float64)


def pooling_weights(
    source_offsets: npt.ArrayLike, target_offsets: npt.ArrayLike
) -> tuple[F64, npt.NDArray[np.bool_]]:
    """Weights [S_t, S_s] that pool source entries onto target tokens, and which are covered.

    Row t averages the source tokens overlapping target token t, weighted by shared
    characters, so each covered row sums to 1 (KVAligner.align_pooled relies on it); a target
    token overlapping nothing gets a zero row and covered[t] = False.
    """
    overlap = overlap_matrix(source_offsets, target_offsets)
    totals = overlap.sum(axis=1)
    covered = totals > 0
    weights = np.where(covered[:, None], overlap / np.where(covered, totals, 1.0)[:, None], 0.0)
    return np.asarray(weights), covered
