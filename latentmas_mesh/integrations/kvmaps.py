"""A KV aligner for a model pair, fitted by closed-form ridge on their paired anchor activations."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Final, Literal

import numpy as np
from numpy.typing import NDArray

from latentmas_mesh.alignment import (
    AlignmentQuality,
    HeadMaps,
    KVAligner,
    KVMapping,
    geometry_from_registry,
    mean_quality,
    measure_quality,
)
from latentmas_mesh.alignment.pairing import PairingMode, pair_tokens
from latentmas_mesh.artifacts.activations import PassageActivations
from latentmas_mesh.errors import DimensionMismatch, InvalidRequest
from latentmas_mesh.protocol import KVCache

Kind = Literal["keys", "values"]
KINDS: Final[tuple[Kind, ...]] = ("keys", "values")
NEIGHBOUR_LAYERS_DEFAULT: Final = 1
# Ridge penalties relative to the mean eigenvalue of the centred XᵀX, so one grid fits any scale.
RELATIVE_ALPHAS_DEFAULT: Final = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0)
VALIDATION_FRACTION_DEFAULT: Final = 0.2
ROWS_MAX_DEFAULT: Final = 80_000


@dataclass(frozen=True)
class PairFitReport:
    """How a pair's maps were fitted and how well each explains held-out target rows.

    key_alphas / value_alphas: [L_t] chosen relative ridge penalties; key_heldout_r2 /
    value_heldout_r2 and key_heldout_cosine / value_heldout_cosine: [L_t] explained variance
    and mean cosine of the target's rows on validation passages, predicted by the map fitted
    without them (keys before RoPE); rows: paired token rows fitted on.
    """

    source_model: str
    target_model: str
    neighbour_layers: int
    rows: int
    fit_passages: tuple[str, ...]
    key_alphas: tuple[float, ...]
    value_alphas: tuple[float, ...]
    key_heldout_r2: tuple[float, ...]
    value_heldout_r2: tuple[float, ...]
    key_heldout_cosine: tuple[float, ...]
    value_heldout_cosine: tuple[float, ...]

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
    source: Sequence[PassageActivations],
    target: Sequence[PassageActivations],
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


def fit_kv_aligner(
    source: Sequence[PassageActivations],
    target: Sequence[PassageActivations],
    *,
    source_model: str,
    target_model: str,
    neighbour_layers: int = NEIGHBOUR_LAYERS_DEFAULT,
    relative_alphas: Sequence[float] = RELATIVE_ALPHAS_DEFAULT,
    validation_fraction: float = VALIDATION_FRACTION_DEFAULT,
    rows_max: int = ROWS_MAX_DEFAULT,
    random_state: int = 0,
) -> tuple[KVAligner, PairFitReport]:
    """A layer-granularity KVAligner from `source_model` to `target_model` and its fit report.

    Target layer l reads every head of the source layers around its proportional layer
    (KVMapping, granularity "layer", `neighbour_layers` on each side); one affine map per target
    layer and kind (keys before RoPE, values) is fitted in closed form:
        W = (X̃ᵀX̃ + α·s·I)⁻¹ X̃ᵀỸ,   b = ȳ − x̄W,   X̃ = X − x̄, Ỹ = Y − ȳ, s = trace(X̃ᵀX̃)/d,
    X the concatenated source heads, Y the target layer's heads side by side. α is chosen from
    `relative_alphas` by mean squared error on validation passages, then the map is refitted on
    all rows. Normal equations on d x d moments keep a pair's 2·L_t maps to minutes on a CPU
    (the SVD-based WMatrix fit takes about 100 s per map at these sizes).
    """
    source_geometry = geometry_from_registry(source_model)
    target_geometry = geometry_from_registry(target_model)
    rows = paired_rows(source, target, rows_max=rows_max)
    source_geometry.check_cache(rows.source["keys"], rows.source["values"])
    target_geometry.check_cache(rows.target["keys"], rows.target["values"])
    mapping = KVMapping.build(
        source_geometry, target_geometry, granularity="layer", neighbour_layers=neighbour_layers
    )
    validation = _validation_rows(rows.groups, validation_fraction, random_state)
    maps: dict[Kind, HeadMaps] = {}
    alphas: dict[Kind, list[float]] = {}
    qualities: dict[Kind, list[AlignmentQuality]] = {}
    for kind in KINDS:
        fitted = [
            _fit_layer(
                _features(rows.source[kind], mapping.inputs[layer, 0]),
                _features(rows.target[kind], [(layer, h) for h in range(target_geometry.kv_heads)]),
                validation,
                relative_alphas,
            )
            for layer in range(target_geometry.layers)
        ]
        maps[kind] = _head_maps(mapping, [(w, b) for w, b, _, _ in fitted])
        alphas[kind] = [a for _, _, a, _ in fitted]
        qualities[kind] = [q for _, _, _, q in fitted]
    aligner = KVAligner.from_head_maps(
        source_geometry, target_geometry, maps["keys"], maps["values"], granularity="layer"
    )
    # Held-out quality travels with the maps (the KV map store refuses maps without it).
    aligner.keys_.quality = mean_quality(qualities["keys"])
    aligner.values_.quality = mean_quality(qualities["values"])
    report = PairFitReport(
        source_model=source_geometry.name,
        target_model=target_geometry.name,
        neighbour_layers=neighbour_layers,
        rows=int(rows.groups.shape[0]),
        fit_passages=tuple(s.passage_id for s in source),
        key_alphas=tuple(alphas["keys"]),
        value_alphas=tuple(alphas["values"]),
        key_heldout_r2=tuple(q.information_retention for q in qualities["keys"]),
        value_heldout_r2=tuple(q.information_retention for q in qualities["values"]),
        key_heldout_cosine=tuple(q.cosine_similarity for q in qualities["keys"]),
        value_heldout_cosine=tuple(q.cosine_similarity for q in qualities["values"]),
    )
    return aligner, report


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


def _validation_rows(
    groups: NDArray[np.int64], fraction: float, random_state: int
) -> NDArray[np.bool_]:
    """Mask of rows whose passage is held out for choosing α (at least one passage each side)."""
    if not 0.0 < fraction < 1.0:
        raise InvalidRequest(f"validation_fraction must lie in (0, 1), got {fraction}")
    passages = np.unique(groups)
    if passages.shape[0] < 2:
        raise InvalidRequest("need at least two passages: one to fit, one to validate on")
    count = min(max(1, round(fraction * passages.shape[0])), passages.shape[0] - 1)
    chosen = np.random.default_rng(random_state).choice(passages, count, replace=False)
    return np.isin(groups, chosen)


def _fit_layer(
    x: NDArray[np.float32],
    y: NDArray[np.float32],
    validation: NDArray[np.bool_],
    relative_alphas: Sequence[float],
) -> tuple[NDArray[np.float64], NDArray[np.float64], float, AlignmentQuality]:
    """(W [d_s, d_t], b [d_t], chosen relative α, held-out quality) for one layer and kind.

    The quality is that of the map fitted without the validation passages, measured on them.
    """
    if not relative_alphas:
        raise InvalidRequest("relative_alphas is empty")
    moments = _Moments.of(x[~validation], y[~validation])
    x_val, y_val = x[validation].astype(np.float64), y[validation].astype(np.float64)
    candidates = [moments.solve(alpha) for alpha in relative_alphas]
    errors = [float(np.mean((x_val @ w + b - y_val) ** 2)) for w, b in candidates]
    best = int(np.argmin(errors))
    chosen_weight, chosen_bias = candidates[best]
    quality = measure_quality(x_val @ chosen_weight + chosen_bias, y_val)
    weight, bias = _Moments.of(x, y).solve(relative_alphas[best])
    return weight, bias, float(relative_alphas[best]), quality


@dataclass(frozen=True)
class _Moments:
    """Centred second moments of paired rows, diagonalised once to solve ridge for any α.

    X̃ᵀX̃ = V diag(λ) Vᵀ, so W(α) = V diag(1 / (λ + α·s)) Vᵀ X̃ᵀỸ costs one matrix product per α.
    """

    x_mean: NDArray[np.float64]
    y_mean: NDArray[np.float64]
    eigenvalues: NDArray[np.float64]  # λ [d_s]
    eigenvectors: NDArray[np.float64]  # V [d_s, d_s]
    projected_cross: NDArray[np.float64]  # Vᵀ X̃ᵀỸ [d_s, d_t]

    @classmethod
    def of(cls, x: NDArray[np.float32], y: NDArray[np.float32]) -> _Moments:
        x64, y64 = x.astype(np.float64), y.astype(np.float64)
        x_mean, y_mean = x64.mean(axis=0), y64.mean(axis=0)
        x64 -= x_mean
        y64 -= y_mean
        eigenvalues, eigenvectors = np.linalg.eigh(x64.T @ x64)
        return cls(x_mean, y_mean, eigenvalues, eigenvectors, eigenvectors.T @ (x64.T @ y64))

    def solve(self, relative_alpha: float) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """W = (X̃ᵀX̃ + α·s·I)⁻¹ X̃ᵀỸ with s = trace(X̃ᵀX̃)/d = mean(λ); b = ȳ − x̄W."""
        scale = float(np.mean(self.eigenvalues)) or 1.0
        shrink = 1.0 / (np.clip(self.eigenvalues, 0.0, None) + relative_alpha * scale)
        weight = self.eigenvectors @ (shrink[:, None] * self.projected_cross)
        return weight, self.y_mean - self.x_mean @ weight


def align_kv_cache(kv: KVCache, aligner: KVAligner) -> KVCache:
    """The KVCache message `kv` of the aligner's source model, aligned to its target model.

    Keys are de-rotated at the cache's positions (position_encodings, default 0..n−1), mapped
    and re-rotated at the same positions: each source entry becomes a latent memory slot of the
    target at its own position (3.5.3 step 2). Raises DimensionMismatch when `kv` does not come
    from the aligner's source model or does not fit its geometry.
    """
    if kv.source_model != aligner.source.name:
        raise DimensionMismatch(
            f"cache of {kv.source_model!r} given to an aligner from {aligner.source.name!r}",
            details={"source_model": kv.source_model, "aligner_source": aligner.source.name},
        )
    positions = None if kv.position_encodings is None else kv.position_encodings.astype(np.int64)
    keys, values = aligner.align(kv.keys, kv.values, positions=positions)
    return kv.model_copy(
        update={"source_model": aligner.target.name, "keys": keys, "values": values}
    )
