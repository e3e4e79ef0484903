"""The KV estimator: a pair's layer maps fitted in closed form on paired anchor activations.

Rows are split by passage three ways (`split_rows` with passages as groups): ridge maps are
fitted on the *train* passages for every α of the one grid, α is chosen on the *validation*
passages, the map refitted on train + validation is measured on the *test* passages (which
influenced neither the fit nor α), and the shipped map is the same recipe refitted on every
passage — so the measured figures are a slightly pessimistic estimate of the shipped map's.
Those figures are regression diagnostics (R² and cosine of predicted pre-RoPE keys and values);
what an exchange retains is measured on the receiver (integrations.hf.measure_exchange).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Final, Literal, Protocol

import numpy as np
from numpy.typing import NDArray

from latentmas_mesh.alignment._split import RowSplit, split_rows
from latentmas_mesh.alignment.geometry import geometry_from_registry
from latentmas_mesh.alignment.kernels import HeadMaps
from latentmas_mesh.alignment.kv import KVAligner, KVGeometry, KVMapping, mean_quality
from latentmas_mesh.alignment.pairing import PairingMode, pair_tokens
from latentmas_mesh.alignment.quality import AlignmentQuality, measure_quality
from latentmas_mesh.alignment.ridge import RELATIVE_ALPHAS, choose_ridge, fit_ridge
from latentmas_mesh.errors import DimensionMismatch, InvalidRequest

Kind = Literal["keys", "values"]
KINDS: Final[tuple[Kind, ...]] = ("keys", "values")
NEIGHBOUR_LAYERS_DEFAULT: Final = 1
TEST_FRACTION_DEFAULT: Final = 0.2
VALIDATION_FRACTION_DEFAULT: Final = 0.2
ROWS_MAX_DEFAULT: Final = 80_000


class PassageRows(Protocol):
    """What the estimator reads of one model's activations on one passage (start token first)."""

    @property
    def passage_id(self) -> str: ...
    @property
    def offsets(self) -> NDArray[np.int64]: ...  # [n, 2] character spans
    @property
    def keys_pre_rope(self) -> NDArray[Any]: ...  # [layers, kv_heads, n, head_dim]
    @property
    def values(self) -> NDArray[Any]: ...  # [layers, kv_heads, n, value_dim]


@dataclass(frozen=True)
class PairFitReport:
    """How a pair's maps were fitted, and their regression diagnostics on the test passages.

    key_alphas / value_alphas: [L_t] relative ridge penalties chosen on the validation passages;
    key_test_r2 / value_test_r2 and key_test_cosine / value_test_cosine: [L_t] explained
    variance and mean row cosine of the target's pre-RoPE keys / values on the test passages,
    predicted by the map fitted without them; rows: paired token rows of all passages.
    """

    source_model: str
    target_model: str
    neighbour_layers: int
    rows: int
    fit_passages: tuple[str, ...]
    validation_passages: tuple[str, ...]
    test_passages: tuple[str, ...]
    key_alphas: tuple[float, ...]
    value_alphas: tuple[float, ...]
    key_test_r2: tuple[float, ...]
    value_test_r2: tuple[float, ...]
    key_test_cosine: tuple[float, ...]
    value_test_cosine: tuple[float, ...]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class PairedRows:
    """Paired rows of every layer: source [L_s, H_s, n, D_s], target [L_t, H_t, n, D_t].

    Keys are before RoPE; groups [n] is the passage index of each row.
    """

    source: dict[Kind, NDArray[np.float32]]
    target: dict[Kind, NDArray[np.float32]]
    groups: NDArray[np.int64]


def paired_rows(
    source: Sequence[PassageRows],
    target: Sequence[PassageRows],
    *,
    rows_max: int = ROWS_MAX_DEFAULT,
) -> PairedRows:
    """Row-paired pre-RoPE keys and values of two models on the same passages.

    Tokens are paired by shared character ends (`PairingMode.SHARED_END`): both states have
    read exactly the same text. Passages are taken in order until `rows_max` rows are reached.
    """
    if len(source) != len(target) or not source:
        raise DimensionMismatch(
            f"need the same non-empty passages on both sides, got {len(source)} and {len(target)}"
        )
    parts: dict[str, list[NDArray[np.float32]]] = {}
    groups: list[NDArray[np.int64]] = []
    total = 0
    for index, (s, t) in enumerate(zip(source, target, strict=True)):
        if s.passage_id != t.passage_id:
            raise InvalidRequest(f"passage {s.passage_id!r} paired with {t.passage_id!r}")
        pairs = pair_tokens(s.offsets, t.offsets, mode=PairingMode.SHARED_END)
        take = min(len(pairs), rows_max - total)
        if take <= 0:
            break
        for side, acts, rows in (
            ("source", s, pairs.source_index[:take]),
            ("target", t, pairs.target_index[:take]),
        ):
            parts.setdefault(f"{side}:keys", []).append(_rows(acts.keys_pre_rope, rows))
            parts.setdefault(f"{side}:values", []).append(_rows(acts.values, rows))
        groups.append(np.full(take, index, dtype=np.int64))
        total += take
    joined = {name: np.concatenate(chunks, axis=2) for name, chunks in parts.items()}
    return PairedRows(
        source={kind: joined[f"source:{kind}"] for kind in KINDS},
        target={kind: joined[f"target:{kind}"] for kind in KINDS},
        groups=np.concatenate(groups),
    )


def _rows(array: NDArray[Any], rows: NDArray[np.int64]) -> NDArray[np.float32]:
    return np.ascontiguousarray(array[:, :, rows], dtype=np.float32)


def fit_kv_maps(
    source: Sequence[PassageRows],
    target: Sequence[PassageRows],
    *,
    source_geometry: KVGeometry,
    target_geometry: KVGeometry,
    neighbour_layers: int = NEIGHBOUR_LAYERS_DEFAULT,
    relative_alphas: Sequence[float] = RELATIVE_ALPHAS,
    test_fraction: float = TEST_FRACTION_DEFAULT,
    validation_fraction: float = VALIDATION_FRACTION_DEFAULT,
    rows_max: int = ROWS_MAX_DEFAULT,
    random_state: int = 0,
) -> tuple[KVAligner, PairFitReport]:
    """A layer-granularity KVAligner from source to target geometry, and its fit report.

    Target layer l reads every head of the source layers around its proportional layer
    (KVMapping, granularity "layer", `neighbour_layers` on each side); one affine map per target
    layer and kind (keys before RoPE, values) is fitted by ridge (`alignment.ridge`, moments
    solver: d x d whatever the row count), X the concatenated source heads, Y the target layer's
    heads side by side. The passage split is the module docstring's.
    """
    rows = paired_rows(source, target, rows_max=rows_max)
    source_geometry.check_cache(rows.source["keys"], rows.source["values"])
    target_geometry.check_cache(rows.target["keys"], rows.target["values"])
    mapping = KVMapping.build(
        source_geometry, target_geometry, granularity="layer", neighbour_layers=neighbour_layers
    )
    split = split_rows(
        int(rows.groups.shape[0]),
        holdout_fraction=test_fraction,
        validation_fraction=validation_fraction,
        random_state=random_state,
        groups=rows.groups,
    )
    maps: dict[Kind, HeadMaps] = {}
    alphas: dict[Kind, list[float]] = {}
    qualities: dict[Kind, list[AlignmentQuality]] = {}
    heads = range(target_geometry.kv_heads)
    for kind in KINDS:
        fitted = [
            _fit_layer(
                _features(rows.source[kind], mapping.inputs[layer, 0]),
                _features(rows.target[kind], [(layer, head) for head in heads]),
                split,
                relative_alphas,
            )
            for layer in range(target_geometry.layers)
        ]
        maps[kind] = _head_maps(mapping, [(w, b) for w, b, _, _ in fitted])
        alphas[kind] = [a for _, _, a, _ in fitted]
        qualities[kind] = [q for _, _, _, q in fitted]
    aligner = KVAligner.from_head_maps(
        source_geometry,
        target_geometry,
        maps["keys"],
        maps["values"],
        granularity="layer",
        keys_quality=mean_quality(qualities["keys"]),
        values_quality=mean_quality(qualities["values"]),
    )
    passages = [s.passage_id for s in source][: int(rows.groups.max()) + 1]

    def named(part: NDArray[np.int64]) -> tuple[str, ...]:
        return tuple(passages[g] for g in np.unique(rows.groups[part]))

    report = PairFitReport(
        source_model=source_geometry.name,
        target_model=target_geometry.name,
        neighbour_layers=neighbour_layers,
        rows=int(rows.groups.shape[0]),
        fit_passages=named(split.train),
        validation_passages=named(split.validation),
        test_passages=named(split.holdout),
        key_alphas=tuple(alphas["keys"]),
        value_alphas=tuple(alphas["values"]),
        key_test_r2=tuple(q.information_retention for q in qualities["keys"]),
        value_test_r2=tuple(q.information_retention for q in qualities["values"]),
        key_test_cosine=tuple(q.cosine_similarity for q in qualities["keys"]),
        value_test_cosine=tuple(q.cosine_similarity for q in qualities["values"]),
    )
    return aligner, report


def fit_kv_aligner(
    source: Sequence[PassageRows],
    target: Sequence[PassageRows],
    *,
    source_model: str,
    target_model: str,
    neighbour_layers: int = NEIGHBOUR_LAYERS_DEFAULT,
    random_state: int = 0,
) -> tuple[KVAligner, PairFitReport]:
    """`fit_kv_maps` between two registry models (ModelNotSupported for one without a cache)."""
    return fit_kv_maps(
        source,
        target,
        source_geometry=geometry_from_registry(source_model),
        target_geometry=geometry_from_registry(target_model),
        neighbour_layers=neighbour_layers,
        random_state=random_state,
    )


def _features(
    array: NDArray[np.float32], heads: Sequence[tuple[int, int]] | NDArray[np.int64]
) -> NDArray[np.float32]:
    """Rows [n, k·D] of the (layer, head)s `heads` of array [L, H, n, D], side by side."""
    return np.concatenate([array[int(layer), int(head)] for layer, head in heads], axis=1)


def _head_maps(
    mapping: KVMapping, fitted: list[tuple[NDArray[np.float64], NDArray[np.float64]]]
) -> HeadMaps:
    """Per-layer maps W [n_in·D_s, H_t·D_t], b [H_t·D_t] split by target head into HeadMaps."""
    heads = int(mapping.inputs.shape[1])
    width = fitted[0][0].shape[1] // heads
    weight = np.stack([w.reshape(w.shape[0], heads, width).transpose(1, 0, 2) for w, _ in fitted])
    bias = np.stack([b.reshape(heads, width) for _, b in fitted])
    return HeadMaps(
        mapping.inputs.copy(),
        np.ascontiguousarray(weight, dtype=np.float32),
        np.ascontiguousarray(bias, dtype=np.float32),
    )


def _affine(
    x: NDArray[np.float64], y: NDArray[np.float64], relative_alpha: float
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(W, b) of the ridge fit of y on x with their own means removed: y ≈ x W + b."""
    x_mean, y_mean = x.mean(axis=0), y.mean(axis=0)
    weight = fit_ridge(x - x_mean, y - y_mean, relative_alpha, solver="moments")
    return weight, y_mean - x_mean @ weight


def _fit_layer(
    x32: NDArray[np.float32],
    y32: NDArray[np.float32],
    split: RowSplit,
    relative_alphas: Sequence[float],
) -> tuple[NDArray[np.float64], NDArray[np.float64], float, AlignmentQuality]:
    """(W [d_s, d_t], b [d_t] fitted on every row, chosen relative α, test-passage diagnostics)
    for one layer and kind."""
    x, y = x32.astype(np.float64), y32.astype(np.float64)
    train, validation, test = split.train, split.validation, split.holdout
    x_mean, y_mean = x[train].mean(axis=0), y[train].mean(axis=0)
    choice = choose_ridge(
        (x[train] - x_mean, y[train] - y_mean),
        (x[validation] - x_mean, y[validation] - y_mean),
        relative_alphas=relative_alphas,
        solver="moments",
    )
    alpha = choice.relative_alpha
    weight, bias = _affine(x[split.fit], y[split.fit], alpha)
    quality = measure_quality(x[test] @ weight + bias, y[test])
    weight, bias = _affine(x, y, alpha)
    return weight, bias, alpha, quality
