"""Token pairing between two tokenizers of the same text, through character offsets (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from numpy.typing import NDArray

from latentmas_mesh.errors import DimensionMismatch, InvalidRequest


class PairingMode(StrEnum):
    """How tokens of two tokenizations of one text are matched.

    `shared_end`: pairs (s, t) whose spans end at the same character. A causal model's state at a
    token summarises the text up to that token's end, so such a pair has read exactly the same
    prefix: the clean rows for fitting a map. Tokens inside a longer token of the other side get
    no pair.
    `covering`: every target token t is paired with the source token whose span covers t's last
    character (the nearest source token ending at or after it), so each target token gets one
    source token; used to pool mapped entries onto the target's tokens.
    """

    SHARED_END = "shared_end"
    COVERING = "covering"


@dataclass(frozen=True, slots=True)
class TokenPairs:
    """Row-paired token indices: source_index[i] and target_index[i] describe the same text.

    source_index, target_index: int64 arrays of shape [pairs], both increasing (non-strictly for
    the side that repeats under `covering`). Of several tokens sharing one span (pieces of one
    multi-byte character), only the last is ever paired.
    """

    source_index: NDArray[np.int64]
    target_index: NDArray[np.int64]

    def __len__(self) -> int:
        return int(self.source_index.shape[0])


def pair_tokens(
    source_offsets: NDArray[np.integer] | list[tuple[int, int]],
    target_offsets: NDArray[np.integer] | list[tuple[int, int]],
    *,
    mode: PairingMode | str = PairingMode.SHARED_END,
) -> TokenPairs:
    """Pair the tokens of two tokenizations of one text by character offsets.

    source_offsets: [n_s, 2] (start, end) character offsets of each source token in the text, as
    a fast tokenizer's offset mapping gives them; target_offsets: [n_t, 2] likewise. Tokens with
    an empty span (start == end: BOS and other special tokens) are never paired. Offsets must
    be non-decreasing in end (tokens in text order).
    Raises DimensionMismatch for arrays not of shape [n, 2]; InvalidRequest for spans with
    end < start or ends out of order.
    """
    source = _checked_offsets(source_offsets, "source_offsets")
    target = _checked_offsets(target_offsets, "target_offsets")
    source_real = _last_token_per_end(source)
    target_real = _last_token_per_end(target)
    source_ends = source[source_real, 1]
    target_ends = target[target_real, 1]
    if PairingMode(mode) is PairingMode.SHARED_END:
        _, in_source, in_target = np.intersect1d(
            source_ends, target_ends, assume_unique=True, return_indices=True
        )
        return TokenPairs(
            source_index=source_real[in_source].astype(np.int64),
            target_index=target_real[in_target].astype(np.int64),
        )
    # COVERING: the source token with the smallest end >= the target token's end.
    position = np.searchsorted(source_ends, target_ends, side="left")
    inside = position < source_ends.shape[0]
    return TokenPairs(
        source_index=source_real[position[inside]].astype(np.int64),
        target_index=target_real[inside].astype(np.int64),
    )


def _last_token_per_end(offsets: NDArray[np.int64]) -> NDArray[np.int64]:
    """Indices of non-empty tokens, keeping only the last of tokens that end at one character.

    Byte-level tokenizers split one multi-byte character into several tokens with the same
    span; only the last has read the whole character, so only it may stand for that prefix.
    """
    real = np.flatnonzero(offsets[:, 1] > offsets[:, 0])
    ends = offsets[real, 1]
    last = np.ones(ends.shape[0], dtype=bool)
    last[:-1] = ends[1:] != ends[:-1]
    return real[last]


def _checked_offsets(
    offsets: NDArray[np.integer] | list[tuple[int, int]], name: str
) -> NDArray[np.int64]:
    array = np.asarray(offsets, dtype=np.int64)
    if array.ndim != 2 or array.shape[1] != 2:
        raise DimensionMismatch(
            f"{name} must have shape [tokens, 2], got {list(array.shape)}",
            details={"name": name, "shape": list(array.shape)},
        )
    if np.any(array[:, 1] < array[:, 0]):
        raise InvalidRequest(f"{name}: a span ends before it starts")
    real_ends = array[array[:, 1] > array[:, 0], 1]
    if np.any(np.diff(real_ends) < 0):
        raise InvalidRequest(f"{name}: token spans are not in text order")
    return array
