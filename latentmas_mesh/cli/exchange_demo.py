"""The main job: model A's cache of a held-out passage travels through a local mesh to model B."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from latentmas_mesh.alignment import AlignmentQuality as AlignmentQualityFigures
from latentmas_mesh.anchors import AnchorPassage, load_anchor_passages, split_anchor_passages
from latentmas_mesh.artifacts.kv_map_store import KVMapStore
from latentmas_mesh.artifacts.naming import parse_version
from latentmas_mesh.errors import InvalidRequest, WMatrixNotFound
from latentmas_mesh.integrations.hf import (
    LoadedModel,
    continuation_nll,
    extract_kv_cache,
    fit_pair_from_anchors,
    fit_signature,
    greedy_continue,
    inject_kv_cache,
    load_model,
    pair_provenance,
    prefill_cache,
    start_entry_cache,
    tokenize_context,
    without_start_entry,
)
from latentmas_mesh.protocol import AlignmentQuality, ExchangeMemoryRequest, ExchangeMemoryResponse
from latentmas_mesh.services.alignment import ALIGN_SERVICE
from latentmas_mesh.services.alignment_settings import AlignmentSettings
from latentmas_mesh.testing.mesh import LocalMesh

SENDER_DEFAULT = "smollm2-135m-instruct"
RECEIVER_DEFAULT = "gemma-3-270m"
MAPS_VERSION = "1.0.0"
ALIGN_TIMEOUT_MS = 120_000
FIT_PASSAGES_DEMO = 48
KIND_PASSAGES_DEMO = 16
"""Fit passages of each kind of text beside the novels (data/TEXT_KINDS.md)."""
"""Fewer than the benchmark's 150, so that the first `make run` fits in minutes (both models
export each passage); maps stored by `latentmas hf fit-pair` are used instead when present."""

T = TypeVar("T")
Step = Callable[[str], None]
"""Reports the name of the step that starts now (a progress display)."""


@dataclass(frozen=True)
class Continuations:
    """B's greedy continuation of the same prompt from three caches: the point of an exchange
    is that `aligned` reads like `own` and unlike `none`."""

    aligned: str
    own: str
    none: str


@dataclass
class DemoResult:
    """What one exchange through the mesh measured; every figure comes from this run."""

    sender: str
    receiver: str
    passage_id: str
    passage_title: str
    context_text: str
    prompt_text: str
    continuations: Continuations
    quality: AlignmentQuality
    regression: AlignmentQualityFigures | None
    maps_version: str
    maps_fitted_now: bool
    nll_none: float
    nll_aligned: float
    nll_own: float
    timings_s: dict[str, float] = field(default_factory=dict)
    models: tuple[LoadedModel, LoadedModel] | None = field(default=None, repr=False)
    """Both models as loaded, for what the main job does next with them (the market story)."""

    @property
    def retention(self) -> float:
        """(NLL_none − NLL_aligned) / (NLL_none − NLL_own) on this passage's true continuation."""
        gain_own = self.nll_none - self.nll_own
        return float("nan") if gain_own <= 0 else (self.nll_none - self.nll_aligned) / gain_own


def held_out_passage(index: int = 0) -> AnchorPassage:
    """A passage of the anchor corpus that no shipped or fitted map was fitted on."""
    _, held_out = split_anchor_passages(load_anchor_passages())
    if not 0 <= index < len(held_out):
        raise InvalidRequest(f"held-out passage index {index} is outside 0..{len(held_out) - 1}")
    return held_out[index]


def ensure_pair_maps(
    sender: LoadedModel, receiver: LoadedModel, store: KVMapStore, *, fit_passages: int
) -> tuple[str, bool]:
    """(version, fitted_now): the pair's stored maps, fitted on first use on the anchor fit
    split and KIND_PASSAGES_DEMO fit passages of each kind of text.

    Fitting runs both models over the fit passages (their activations are cached), so the first
    run takes minutes and every later run reads the stored maps; stored maps whose manifest
    records other fit data are fitted again under the next version.
    """
    version = MAPS_VERSION
    signature = fit_signature(fit_passages, KIND_PASSAGES_DEMO)
    try:
        stored, version = store.get(sender.name, receiver.name, None)
        manifest = store.manifest(sender.name, receiver.name, version)
        provenance = {} if manifest is None else manifest.get("provenance", {})
        if stored.quality is not None and provenance.get("signature") == signature:
            return version, False
        # Maps of other fit data (e.g. novels only, before the kinds of text): the next version.
        major, minor, _ = parse_version(version)
        version = f"{major}.{minor + 1}.0"
    except WMatrixNotFound:
        pass
    aligner, report = fit_pair_from_anchors(
        sender, receiver, passages=fit_passages, kind_passages=KIND_PASSAGES_DEMO
    )
    store.put(
        aligner, source=sender.name, target=receiver.name, version=version,
        provenance=pair_provenance(sender, receiver, report, signature=signature),
    )  # fmt: skip
    return version, True


def run_demo(
    *,
    sender_name: str = SENDER_DEFAULT,
    receiver_name: str = RECEIVER_DEFAULT,
    passage_index: int = 0,
    context_tokens: int = 128,
    new_tokens: int = 24,
    scored_tokens: int = 32,
    fit_passages: int = FIT_PASSAGES_DEMO,
    step: Step = lambda _: None,
) -> DemoResult:
    """Load both models, make sure the pair has maps, start a mesh with one align worker, and
    exchange A's cache of a held-out passage's opening through it; B continues from it."""
    timings: dict[str, float] = {}
    step("loading models (the first run dequantises their GGUF files)")
    sender, receiver = _timed(
        timings, "load_models", lambda: _load_pair(sender_name, receiver_name)
    )
    step("fitting the pair's KV maps on the anchor corpus (first run only)")
    settings = AlignmentSettings()
    store = KVMapStore(settings.path(settings.alignment_kv_maps_dir))
    version, fitted_now = _timed(
        timings,
        "fit_or_load_maps",
        lambda: ensure_pair_maps(sender, receiver, store, fit_passages=fit_passages),
    )
    passage = held_out_passage(passage_index)
    split = split_passage(sender, passage.text, context_tokens)
    context_text, prompt_text, rest = split
    step("starting the local mesh (broker + align worker)")
    with LocalMesh({"align": 1}) as mesh, mesh.transport() as transport:
        step(f"{sender.name} reads the passage and exports its KV cache")
        sent = _timed(
            timings,
            "sender_extract",
            lambda: without_start_entry(
                extract_kv_cache(sender, context_text, context_description=passage.title)
            ),
        )
        step(f"the cache travels through the broker to {ALIGN_SERVICE} and back aligned")
        request = ExchangeMemoryRequest(
            kv_source=sent, source_model=sender.name, target_model=receiver.name,
            w_matrix_version=version,
        )  # fmt: skip

        def exchange() -> object:
            return transport.call(ALIGN_SERVICE, request, timeout_ms=ALIGN_TIMEOUT_MS).message

        # The first request of a pair loads its maps in the worker; the second is the steady
        # state every later request sees. Both are shown.
        reply = _timed(timings, "align_through_mesh_first", exchange)
        _timed(timings, "align_through_mesh_warm", exchange)
    if not isinstance(reply, ExchangeMemoryResponse):
        raise InvalidRequest(f"{ALIGN_SERVICE} answered {type(reply).__name__}")
    step(f"{receiver.name} injects the aligned cache and continues")
    aligned_cache = _timed(
        timings, "receiver_inject", lambda: inject_kv_cache(receiver, reply.kv_aligned)
    )
    own_context = tokenize_context(receiver, context_text)
    own_cache = _timed(
        timings, "receiver_own_prefill", lambda: prefill_cache(receiver, own_context)
    )
    none_cache = start_entry_cache(receiver)
    prompt_ids = tokenize_context(receiver, prompt_text).ids[1:]
    caches = {"aligned": aligned_cache, "own": own_cache, "none": none_cache}
    decode = receiver.tokenizer.decode
    texts = {
        name: str(decode(greedy_continue(receiver, cache, prompt_ids, new_tokens)))
        for name, cache in caches.items()
    }
    # The prompt's tokens and the `scored_tokens` after them, teacher-forced after each cache.
    scored = len(prompt_ids) + scored_tokens
    truth = tokenize_context(receiver, prompt_text + rest).ids[1:][:scored]
    nll = {
        name: continuation_nll(receiver, cache, truth[:-1], truth[1:])
        for name, cache in caches.items()
    }
    return DemoResult(
        sender=sender.name, receiver=receiver.name, passage_id=passage.id,
        passage_title=passage.title, context_text=context_text, prompt_text=prompt_text,
        continuations=Continuations(**texts), quality=reply.quality,
        regression=store.get(sender.name, receiver.name, version)[0].regression_quality,
        maps_version=version,
        maps_fitted_now=fitted_now, nll_none=nll["none"], nll_aligned=nll["aligned"],
        nll_own=nll["own"], timings_s=timings, models=(sender, receiver),
    )  # fmt: skip


def _load_pair(sender: str, receiver: str) -> tuple[LoadedModel, LoadedModel]:
    return load_model(sender), load_model(receiver)


def split_passage(sender: LoadedModel, text: str, context_tokens: int) -> tuple[str, str, str]:
    """(context, prompt, rest): the sender's first `context_tokens` tokens of text, less their
    last word, which the receiver reads itself as its prompt (it has no logits for a cache)."""
    tokens = tokenize_context(sender, text, tokens_max=context_tokens)
    end = int(tokens.offsets[-1][1])
    cut = text.rfind(" ", 0, end)
    if cut <= 0:
        raise InvalidRequest("the passage's opening has no word boundary to split at")
    return text[:cut], text[cut:end], text[end:]


def _timed(timings: dict[str, float], name: str, work: Callable[[], T]) -> T:
    started = time.perf_counter()
    result = work()
    timings[name] = time.perf_counter() - started
    return result


__all__ = [
    "RECEIVER_DEFAULT",
    "SENDER_DEFAULT",
    "Continuations",
    "DemoResult",
    "ensure_pair_maps",
    "held_out_passage",
    "run_demo",
    "split_passage",
]
