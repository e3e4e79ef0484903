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

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Final, Literal, Protocol

import numpy as np
import numpy.typing as npt
from numpy.typing import NDArray

from latentmas_mesh.alignment._split import RowSplit, split_rows
from latentmas_mesh.alignment._types import Method
from latentmas_mesh.alignment.geometry import geometry_from_registry
from latentmas_mesh.alignment.kernels import HeadMaps
from latentmas_mesh.alignment.kv import (
    Granularity,
    KVAligner,
    KVGeometry,
    KVMapping,
    derotate_keys,
    mean_quality,
)
from latentmas_mesh.alignment.pairing import PairingMode, pair_tokens
from latentmas_mesh.alignment.quality import AlignmentQuality, measure_quality
from latentmas_mesh.alignment.ridge import RELATIVE_ALPHAS, choose_ridge, fit_ridge
from latentmas_mesh.alignment.wmatrix import WMatrix
from latentmas_mesh.errors import DimensionMismatch, InvalidRequest

Kind = Literal["keys", "values"]
KINDS: Final[tuple[Kind, ...]] = ("keys", "values")
Estimator = Literal["ridge", "orthogonal", "learned", "hybrid"]
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
    """A pair's layer maps (ridge, moments solver) from two models' activations on the same
    passages, with the fit report; see `fit_kv_arrays` and the module docstring."""
    rows = paired_rows(source, target, rows_max=rows_max)
    fitted = fit_kv_arrays(
        rows.source,
        rows.target,
        source_geometry=source_geometry,
        target_geometry=target_geometry,
        groups=rows.groups,
        estimator="ridge",
        granularity="layer",
        neighbour_layers=neighbour_layers,
        relative_alphas=relative_alphas,
        test_fraction=test_fraction,
        validation_fraction=validation_fraction,
        random_state=random_state,
    )
    passages = [s.passage_id for s in source]

    def named(part: NDArray[np.int64]) -> tuple[str, ...]:
        return tuple(passages[g] for g in np.unique(rows.groups[part]))

    split = fitted.split
    report = PairFitReport(
        source_model=source_geometry.name,
        target_model=target_geometry.name,
        neighbour_layers=neighbour_layers,
        rows=int(rows.groups.shape[0]),
        fit_passages=named(split.train),
        validation_passages=named(split.validation),
        test_passages=named(split.holdout),
        key_alphas=fitted.alphas["keys"],
        value_alphas=fitted.alphas["values"],
        key_test_r2=tuple(q.information_retention for q in fitted.qualities["keys"]),
        value_test_r2=tuple(q.information_retention for q in fitted.qualities["values"]),
        key_test_cosine=tuple(q.cosine_similarity for q in fitted.qualities["keys"]),
        value_test_cosine=tuple(q.cosine_similarity for q in fitted.qualities["values"]),
    )
    return fitted.aligner, report


@dataclass(frozen=True)
class KVFit:
    """`fit_kv_arrays`' result: the aligner, and per map (layer, or layer x head) the chosen
    relative α (nan: none, orthogonal) and the test-row diagnostics."""

    aligner: KVAligner
    split: RowSplit
    alphas: dict[Kind, tuple[float, ...]]
    qualities: dict[Kind, tuple[AlignmentQuality, ...]]


def fit_kv_arrays(
    source: dict[Kind, NDArray[Any]],
    target: dict[Kind, NDArray[Any]],
    *,
    source_geometry: KVGeometry,
    target_geometry: KVGeometry,
    groups: npt.ArrayLike | None = None,
    positions: tuple[npt.ArrayLike, npt.ArrayLike] | None = None,
    estimator: Estimator = "ridge",
    unified_dim: int = 128,
    granularity: Granularity = "layer",
    layer_map: Sequence[int] | None = None,
    head_map: Sequence[int] | None = None,
    neighbour_layers: int = 0,
    relative_alphas: Sequence[float] = RELATIVE_ALPHAS,
    test_fraction: float = TEST_FRACTION_DEFAULT,
    validation_fraction: float = VALIDATION_FRACTION_DEFAULT,
    random_state: int = 0,
) -> KVFit:
    """The one KV estimator: key and value maps from row-paired caches of two geometries.

    source / target: {"keys": [L, H, n, D], "values": [L, H, n, Dv]}, rows paired by token; keys
    pre-RoPE, or rotated at `positions` = (source positions [n], target positions [n]), in which
    case they are de-rotated first. groups [n] (passage ids) keeps a passage's rows in one part
    of the split. Each map (per target layer, or per target head with granularity "head") reads
    the source heads KVMapping assigns; `estimator` fits it: "ridge" — affine ridge in closed
    form on d x d moments; "orthogonal" / "learned" / "hybrid" — a WMatrix through R^unified_dim
    (section 4.3.2). α is chosen on validation rows, diagnostics measured on test rows, and the
    shipped map refitted on every row (the module docstring).
    """
    s = {kind: np.asarray(source[kind], dtype=np.float32) for kind in KINDS}
    t = {kind: np.asarray(target[kind], dtype=np.float32) for kind in KINDS}
    rows = source_geometry.check_cache(s["keys"], s["values"])
    if target_geometry.check_cache(t["keys"], t["values"]) != rows:
        raise DimensionMismatch(
            f"source has {rows} anchor tokens, target {t['keys'].shape[2]}: rows must pair",
            details={"source_rows": rows, "target_rows": int(t["keys"].shape[2])},
        )
    if positions is not None:
        s["keys"] = derotate_keys(s["keys"], source_geometry, positions[0])
        t["keys"] = derotate_keys(t["keys"], target_geometry, positions[1])
    mapping = KVMapping.build(
        source_geometry, target_geometry, granularity=granularity, layer_map=layer_map,
        head_map=head_map, neighbour_layers=neighbour_layers,
    )  # fmt: skip
    split = split_rows(
        rows, holdout_fraction=test_fraction, validation_fraction=validation_fraction,
        random_state=random_state, groups=groups,
    )  # fmt: skip
    inputs = mapping.inputs
    layers, heads = int(inputs.shape[0]), int(inputs.shape[1])
    units = [[h] for h in range(heads)] if granularity == "head" else [list(range(heads))]
    maps: dict[Kind, HeadMaps] = {}
    alphas: dict[Kind, tuple[float, ...]] = {}
    qualities: dict[Kind, tuple[AlignmentQuality, ...]] = {}
    for kind in KINDS:
        width_in, width_out = s[kind].shape[3], t[kind].shape[3]
        weight = np.zeros((layers, heads, inputs.shape[2] * width_in, width_out), np.float32)
        bias = np.zeros((layers, heads, width_out), np.float32)
        kind_alphas, kind_qualities = [], []
        for layer in range(layers):
            for unit in units:
                x = _features(s[kind], inputs[layer, unit[0]])
                y = _features(t[kind], [(layer, h) for h in unit])
                if estimator == "ridge":
                    w, b, alpha, quality = _fit_ridge_unit(x, y, split, relative_alphas)
                else:
                    w, b, alpha, quality = _fit_wmatrix_unit(
                        x, y, method=estimator, unified_dim=unified_dim, groups=groups,
                        test_fraction=test_fraction, validation_fraction=validation_fraction,
                        random_state=random_state,
                    )  # fmt: skip
                for slot, h in enumerate(unit):
                    columns = slice(slot * width_out, (slot + 1) * width_out)
                    weight[layer, h] = w[:, columns]
                    bias[layer, h] = b[columns]
                kind_alphas.append(alpha)
                kind_qualities.append(quality)
        maps[kind] = HeadMaps(inputs.copy(), weight, bias)
        alphas[kind], qualities[kind] = tuple(kind_alphas), tuple(kind_qualities)
    aligner = KVAligner.from_head_maps(
        source_geometry,
        target_geometry,
        maps["keys"],
        maps["values"],
        granularity=granularity,
        keys_quality=mean_quality(qualities["keys"]),
        values_quality=mean_quality(qualities["values"]),
    )
    return KVFit(aligner, split, alphas, qualities)


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


def _affine(
    x: NDArray[np.float64], y: NDArray[np.float64], relative_alpha: float
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(W, b) of the ridge fit of y on x with their own means removed: y ≈ x W + b."""
    x_mean, y_mean = x.mean(axis=0), y.mean(axis=0)
    weight = fit_ridge(x - x_mean, y - y_mean, relative_alpha, solver="moments")
    return weight, y_mean - x_mean @ weight


def _fit_ridge_unit(
    x32: NDArray[np.float32],
    y32: NDArray[np.float32],
    split: RowSplit,
    relative_alphas: Sequence[float],
) -> tuple[NDArray[np.float64], NDArray[np.float64], float, AlignmentQuality]:
    """(W [d_s, d_t], b [d_t] fitted on every row, chosen relative α, test-row diagnostics)."""
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


def _fit_wmatrix_unit(
    x: NDArray[np.float32],
    y: NDArray[np.float32],
    *,
    method: Method,
    unified_dim: int,
    groups: npt.ArrayLike | None,
    test_fraction: float,
    validation_fraction: float,
    random_state: int,
) -> tuple[NDArray[np.float64], NDArray[np.float64], float, AlignmentQuality]:
    """The same for a WMatrix of `method`: its split is the same passages (same rows, groups,
    fractions and seed), it measures on the test rows and ships its refit on every row."""
    wmatrix = WMatrix(
        method, unified_dim, holdout_fraction=test_fraction,
        validation_fraction=validation_fraction, random_state=random_state,
    ).fit(x, y, groups=groups)  # fmt: skip
    weight, bias = wmatrix.affine()
    alpha = math.nan if wmatrix.alpha_ is None else float(wmatrix.alpha_)
    return weight, bias, alpha, wmatrix.quality
