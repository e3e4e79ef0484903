"""Row splits for fitting: train / validation / held-out, optionally by group (passage)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from latentmas_mesh.alignment._types import IntArray
from latentmas_mesh.errors import InvalidRequest

ROWS_MIN = 8  # below this there is nothing to hold out and nothing to validate on


@dataclass(frozen=True)
class RowSplit:
    """Disjoint sorted row indices: `train` fits, `validation` chooses, `holdout` measures."""

    train: IntArray
    validation: IntArray
    holdout: IntArray

    @property
    def fit(self) -> IntArray:
        """Rows any fitted parameter may depend on (train then validation)."""
        return np.sort(np.concatenate([self.train, self.validation]))


def split_rows(
    rows: int,
    *,
    holdout_fraction: float,
    validation_fraction: float,
    random_state: int,
    groups: npt.ArrayLike | None = None,
) -> RowSplit:
    """Split `rows` rows at random; `groups` [rows] keeps each group's rows in one split.

    The held-out part is `holdout_fraction` of the rows (of the groups, when given), at least one
    row or group; the validation part is `validation_fraction` of the rest, at least one.
    Raises InvalidRequest when there are too few rows or groups to make three non-empty parts.
    """
    if rows < ROWS_MIN:
        raise InvalidRequest(
            f"need at least {ROWS_MIN} paired rows to fit and hold out, got {rows}",
            details={"rows": rows, "rows_min": ROWS_MIN},
        )
    if not (0.0 < holdout_fraction < 1.0 and 0.0 < validation_fraction < 1.0):
        raise InvalidRequest(
            "holdout_fraction and validation_fraction must lie strictly between 0 and 1",
            details={"holdout_fraction": holdout_fraction, "validation": validation_fraction},
        )
    labels = np.arange(rows) if groups is None else _group_labels(groups, rows)
    unique = np.unique(labels)
    if unique.size < 3:
        raise InvalidRequest(
            f"need at least 3 groups to fit, validate and hold out, got {unique.size}",
            details={"groups": int(unique.size)},
        )
    order = np.random.default_rng(random_state).permutation(unique)
    holdout_count = min(max(1, round(unique.size * holdout_fraction)), unique.size - 2)
    rest = unique.size - holdout_count
    validation_count = min(max(1, round(rest * validation_fraction)), rest - 1)
    parts = np.split(order, [holdout_count, holdout_count + validation_count])
    holdout, validation, train = (np.flatnonzero(np.isin(labels, part)) for part in parts)
    return RowSplit(
        train=train.astype(np.int64),
        validation=validation.astype(np.int64),
        holdout=holdout.astype(np.int64),
    )


def _group_labels(groups: npt.ArrayLike, rows: int) -> IntArray:
    labels = np.asarray(groups)
    if labels.shape != (rows,):
        raise InvalidRequest(
            f"groups must have shape ({rows},), got {labels.shape}",
            details={"groups_shape": list(labels.shape), "rows": rows},
        )
    _, inverse = np.unique(labels, return_inverse=True)
    return np.asarray(inverse, dtype=np.int64)
