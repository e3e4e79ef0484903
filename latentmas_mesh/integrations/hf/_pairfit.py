"""Fit a pair's KV aligner from both models' anchor activations, exported once and cached."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Final

from latentmas_mesh.alignment import KVAligner
from latentmas_mesh.alignment.kv_fit import (
    NEIGHBOUR_LAYERS_DEFAULT,
    PairFitReport,
    fit_kv_aligner,
)
from latentmas_mesh.anchors import (
    TEXT_KINDS,
    AnchorPassage,
    Passage,
    anchor_corpus_sha256,
    interleave_works,
    kind_corpus_sha256,
    load_anchor_passages,
    split_anchor_passages,
    split_kind_passages,
)
from latentmas_mesh.artifacts.activations import (
    MANIFEST,
    PassageActivations,
    read_anchor_activations,
    read_manifest,
)
from latentmas_mesh.artifacts.files import write_json
from latentmas_mesh.errors import InvalidRequest
from latentmas_mesh.integrations.hf._activations import export_anchor_activations
from latentmas_mesh.integrations.hf._load import LoadedModel, resolve_model
from latentmas_mesh.integrations.hf._retention import measure_exchange
from latentmas_mesh.settings import MeshSettings

FIT_PASSAGES_DEFAULT: Final = 150
FIT_TOKENS_DEFAULT: Final = 256
MEASURE_PASSAGES_DEFAULT: Final = 12
MEASURE_PER_KIND: Final = 2
"""Held-out passages of each kind in a published figure, when kinds are fitted."""
DEMO_PASSAGES: Final = 1
"""Held-out passages kept for the demo's exchange: the maps' figures are measured after them."""


def fit_passages(count: int = FIT_PASSAGES_DEFAULT, *, seed: int = 0) -> tuple[AnchorPassage, ...]:
    """The first `count` passages of the anchor fit split, round-robin over works."""
    fit, _ = split_anchor_passages(load_anchor_passages(), seed=seed)
    return interleave_works(fit)[:count]


def measure_passages(
    count: int = MEASURE_PASSAGES_DEFAULT, *, seed: int = 0
) -> tuple[AnchorPassage, ...]:
    """Held-out passages the maps' exchange quality is measured on: never fitted on, never used
    to choose anything, and not the demo's passage."""
    _, held_out = split_anchor_passages(load_anchor_passages(), seed=seed)
    return held_out[DEMO_PASSAGES : DEMO_PASSAGES + count]


def cached_anchor_activations(
    loaded: LoadedModel,
    passages: Sequence[Passage],
    *,
    tokens_max: int = FIT_TOKENS_DEFAULT,
    cache_dir: Path | None = None,
    on_passage: Callable[[int, int], None] | None = None,
) -> list[PassageActivations]:
    """`loaded`'s activations on `passages` (no hidden states, float16), exported on first use.

    Kept in `<cache_dir>/anchor-activations/<model>/`: passages already exported with the same
    options are read back, missing ones are exported and added to the manifest.
    """
    root = cache_dir if cache_dir is not None else MeshSettings().cache_dir
    directory = root / "anchor-activations" / loaded.name
    wanted = [p.id for p in passages]
    try:
        manifest = read_manifest(directory)
        same_options = manifest["tokens_max"] == tokens_max and manifest["hidden_states"] is False
        present = list(manifest["passage_ids"]) if same_options else []
    except (InvalidRequest, KeyError):
        present = []
    missing = tuple(p for p in passages if p.id not in set(present))
    if missing:
        export_anchor_activations(
            loaded,
            directory,
            passages=missing,
            tokens_max=tokens_max,
            include_hidden=False,
            on_passage=on_passage,
        )
        _record_passages(directory, [*present, *(p.id for p in missing)])
    return [read_anchor_activations(directory, pid) for pid in wanted]


def _record_passages(directory: Path, passage_ids: list[str]) -> None:
    """Rewrite the export's manifest to list every passage the directory now holds."""
    manifest = read_manifest(directory)
    manifest["passage_ids"] = passage_ids
    manifest["anchor_corpus_sha256"] = anchor_corpus_sha256()
    write_json(directory / MANIFEST, manifest)


def model_signature(loaded: LoadedModel) -> dict[str, Any]:
    """What a map's manifest records of one model: registry name and family, the weights'
    source and version, and a hash of the tokenizer's vocabulary (a map is meaningless with
    another tokenizer, even for the same geometry)."""
    from importlib.metadata import PackageNotFoundError, version

    _, source = resolve_model(loaded.name)
    try:
        revision = f"{source.distribution}=={version(source.distribution)}:{source.gguf_file}"
    except PackageNotFoundError:
        revision = f"{source.distribution}:{source.gguf_file}"
    vocabulary = json.dumps(sorted(loaded.tokenizer.get_vocab().items()))
    return {
        "name": loaded.name,
        "family": loaded.spec.family,
        "revision": revision,
        "tokenizer_sha256": hashlib.sha256(vocabulary.encode()).hexdigest(),
        "start_token_id": loaded.start_token_id,
    }


def pair_provenance(
    sender: LoadedModel,
    receiver: LoadedModel,
    report: PairFitReport,
    *,
    tokens_max: int = FIT_TOKENS_DEFAULT,
    measured_passages: int = MEASURE_PASSAGES_DEFAULT,
    signature: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The manifest's account of a pair fit: both models, the method, the fit data and the
    penalties the validation passages chose, and how the published quality was measured."""
    return {
        "method": f"closed-form ridge per target layer over {2 * report.neighbour_layers + 1} "
        "source layers; keys de-rotated before and re-rotated after mapping",
        "source": model_signature(sender),
        "target": model_signature(receiver),
        "fit": {
            "anchor_corpus_sha256": anchor_corpus_sha256(),
            "tokens_max": tokens_max,
            "rows": report.rows,
            "fit_passages": list(report.fit_passages),
            "validation_passages": list(report.validation_passages),
            "test_passages": list(report.test_passages),
            "key_alphas": list(report.key_alphas),
            "value_alphas": list(report.value_alphas),
        },
        "measured_on": {
            "split": "held-out anchor passages, and held-out kind passages when kinds are fitted",
            "anchor_passages": measured_passages,
        },
        "signature": signature,
    }


def fit_pair_from_anchors(
    sender: LoadedModel,
    receiver: LoadedModel,
    *,
    passages: int = FIT_PASSAGES_DEFAULT,
    tokens_max: int = FIT_TOKENS_DEFAULT,
    neighbour_layers: int = NEIGHBOUR_LAYERS_DEFAULT,
    measured_passages: int = MEASURE_PASSAGES_DEFAULT,
    kind_passages: int = 0,
    cache_dir: Path | None = None,
) -> tuple[KVAligner, PairFitReport]:
    """The sender -> receiver aligner fitted on `passages` anchor passages of the fit split and
    `kind_passages` fit passages of each kind of text (technical, code, dialogue... see
    data/TEXT_KINDS.md: maps fitted on novels alone keep little of other text), carrying its
    exchange quality measured on held-out passages.

    The fit splits its passages train / validation / test for its own choices and diagnostics;
    the published quality (`aligner.quality`: retention, attention-output cosine and distance,
    confidence) is measured on the receiver on `measured_passages` passages of the anchors'
    held-out split, plus, when kinds are fitted, MEASURE_PER_KIND held-out passages of each
    kind: passages neither the fit nor any choice read. Each model reads the first `tokens_max`
    tokens of a passage.
    """
    kinds_fit, kinds_held_out = split_kind_passages()
    chosen: list[Passage] = [*fit_passages(passages)]
    measured: list[Passage] = [*measure_passages(measured_passages)]
    if kind_passages > 0:
        chosen += [p for kind in TEXT_KINDS for p in kinds_fit[kind][:kind_passages]]
        measured += [p for kind in TEXT_KINDS for p in kinds_held_out[kind][:MEASURE_PER_KIND]]
    source = cached_anchor_activations(sender, chosen, tokens_max=tokens_max, cache_dir=cache_dir)
    target = cached_anchor_activations(receiver, chosen, tokens_max=tokens_max, cache_dir=cache_dir)
    aligner, report = fit_kv_aligner(
        source,
        target,
        source_model=sender.name,
        target_model=receiver.name,
        neighbour_layers=neighbour_layers,
    )
    held_out = [(p.id, p.text) for p in measured]
    aligner.exchange_quality_, _ = measure_exchange(sender, receiver, aligner, held_out)
    return aligner, report


def fit_signature(
    passages: int, kind_passages: int, tokens_max: int = FIT_TOKENS_DEFAULT
) -> dict[str, Any]:
    """What a pair fit reads, as its manifest records it: a stored map whose signature differs
    (another corpus, other counts) is not the map these settings would fit."""
    return {
        "anchor_corpus_sha256": anchor_corpus_sha256(),
        "anchor_passages": passages,
        "kind_corpus_sha256": kind_corpus_sha256() if kind_passages > 0 else None,
        "kind_passages_per_kind": kind_passages,
        "tokens_max": tokens_max,
    }
