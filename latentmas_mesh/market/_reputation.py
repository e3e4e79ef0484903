"""A creator's reputation and the near-duplicate rule of the uniqueness factor (pure)."""

from __future__ import annotations

from typing import Final

import numpy as np
import numpy.typing as npt

PRIOR_QUALITY: Final = 0.5
PRIOR_WEIGHT: Final = 2.0
NEAR_DUPLICATE_COSINE: Final = 0.98


def reputation(attested_quality_sum: float, attestations: int, uses: int) -> float:
    """In [0, 1]: the creator's attested quality, shrunk toward 0.5 while evidence is thin,
    times a usage term that rises from 0.5 (never used) toward 1 with paid uses.

    quality part = (sum of attested qualities + 0.5 × 2) / (attestations + 2): a creator with no
    attestation scores 0.5, one with a single perfect attestation 0.67, many perfect ones -> 1;
    usage part = 1 - 0.5 / (1 + log10(1 + uses)): 0.5 at no use, 0.75 at 9, 0.83 at 99.
    """
    quality = (attested_quality_sum + PRIOR_QUALITY * PRIOR_WEIGHT) / (attestations + PRIOR_WEIGHT)
    usage = 1.0 - 0.5 / (1.0 + float(np.log10(1.0 + max(uses, 0))))
    return float(min(1.0, max(0.0, quality * usage)))


def unit_vector(vector: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
    """`vector` scaled to length 1 (a zero vector stays zero), as float32."""
    flat = np.asarray(vector, dtype=np.float64).reshape(-1)
    norm = float(np.linalg.norm(flat))
    return (flat / norm if norm > 0 else flat).astype(np.float32)


def near_duplicates(fingerprint: npt.NDArray[np.float32], others: npt.NDArray[np.float32]) -> int:
    """How many rows of `others` (unit vectors [n, d]) lie within cosine NEAR_DUPLICATE_COSINE
    of the unit vector `fingerprint`: the `similar_assets` of the uniqueness factor."""
    if others.size == 0:
        return 0
    return int(np.count_nonzero(others @ fingerprint >= NEAR_DUPLICATE_COSINE))


def kv_fingerprint(
    keys: npt.NDArray[np.floating], values: npt.NDArray[np.floating]
) -> npt.NDArray[np.float32]:
    """A KV snapshot's content summary: the mean over tokens of its values, per layer and
    head, as a unit vector (keys carry positions through RoPE, values do not, so the same
    context read at another offset still matches). `keys` only fixes the shape contract."""
    if keys.shape[:3] != values.shape[:3]:
        raise ValueError("keys and values disagree on [layers, heads, seq]")
    return unit_vector(np.asarray(values, dtype=np.float64).mean(axis=2))


__all__ = [
    "NEAR_DUPLICATE_COSINE",
    "kv_fingerprint",
    "near_duplicates",
    "reputation",
    "unit_vector",
]
