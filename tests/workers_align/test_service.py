"""The alignment services' handlers, called directly (no sockets)."""

from __future__ import annotations

import json
import tracemalloc
from dataclasses import replace

import numpy as np
import pytest

from latentmas_mesh.alignment import AlignmentQuality, geometry_from_registry
from latentmas_mesh.alignment.kernels import HeadMaps
from latentmas_mesh.alignment.kv import KVAligner, KVMapping
from latentmas_mesh.alignment.wmatrix import WMatrix
from latentmas_mesh.errors import (
    DimensionMismatch,
    InvalidRequest,
    ModelNotSupported,
    PayloadTooLarge,
    QualityBelowThreshold,
    WMatrixNotFound,
)
from latentmas_mesh.protocol.align import (
    REPREFILL_FALLBACK,
    AlignKVCacheRequest,
    ExchangeMemoryRequest,
)
from latentmas_mesh.protocol.anchors import RegisterAnchorsRequest
from latentmas_mesh.protocol.registry import ModelRequest, ModelsRequest
from latentmas_mesh.protocol.v1 import AlignVectorRequest
from latentmas_mesh.protocol.wmatrix import GenerateWMatrixRequest, WMatrixVersionsRequest
from latentmas_mesh.registry import ModelSpec
from latentmas_mesh.services.alignment import vector_bytes
from tests.registry.conftest import open_entry
from tests.workers_align.conftest import (
    GEMMA,
    SMOL,
    fitted_smol_to_gemma,
    kv_cache,
    make_service,
    paired_anchors,
)
from workers.align import build_service


def _register_pair(service, rng, anchor_set="corpus:v1"):
    x, y = paired_anchors(rng)
    service.handle_wmatrix(
        RegisterAnchorsRequest(model=SMOL, anchor_set=anchor_set, activations=x), None
    )
    service.handle_wmatrix(
        RegisterAnchorsRequest(model=GEMMA, anchor_set="corpus:v1", activations=y), None
    )
    return x, y


class TestWMatrixService:
    def test_generate_answers_the_new_version_and_its_held_out_quality(self, service, rng):
        """Appendix C.1: registered anchors in, version 1.0.0 and measured quality out."""
        _register_pair(service, rng)

        reply = service.handle_wmatrix(
            GenerateWMatrixRequest(source_model=SMOL, target_model=GEMMA, method="hybrid"), None
        )

        assert ("1.0.0", 16) == (reply.version, reply.unified_dimension)
        assert reply.quality_metrics.expected_quality > 0.99
        assert 24 * 16 + 16 * 32 == reply.quality_metrics.computational_cost

    def test_a_fit_of_the_same_inputs_answers_the_stored_map_without_fitting(
        self, service, rng, monkeypatch
    ):
        """Generate twice with the same anchors and method: one fit, one version; new anchors
        or another method fit anew (a retried generate never stores a second copy)."""
        x, _ = _register_pair(service, rng)
        fits = _spy(monkeypatch, type(service), "_fit")
        request = GenerateWMatrixRequest(source_model=SMOL, target_model=GEMMA, method="hybrid")

        first = service.handle_wmatrix(request, None)
        again = service.handle_wmatrix(request, None)
        other_method = service.handle_wmatrix(
            request.model_copy(update={"method": "learned"}), None
        )
        service.handle_wmatrix(
            RegisterAnchorsRequest(model=SMOL, anchor_set="corpus:v1", activations=x * 2), None
        )
        new_anchors = service.handle_wmatrix(request, None)

        assert first == again
        assert ["1.0.0", "1.1.0", "1.2.0"] == [
            first.version,
            other_method.version,
            new_anchors.version,
        ]
        assert 3 == len(fits)

    def test_stored_versions_list_both_kinds_with_their_quality(self, service, rng):
        """w_matrix_versions_request: the pair's W-matrices and KV maps, oldest first, with
        their held-out figures; a pair with nothing stored lists nothing."""
        _register_pair(service, rng)
        generated = service.handle_wmatrix(
            GenerateWMatrixRequest(source_model=SMOL, target_model=GEMMA, method="orthogonal"),
            None,
        )
        aligner = fitted_smol_to_gemma(rng)
        service.kv_maps.put(aligner, source=SMOL, target=GEMMA, version="1.0.0")
        service.kv_maps.put(aligner, source=SMOL, target=GEMMA, version="1.2.0")

        listed = service.handle_wmatrix(
            WMatrixVersionsRequest(source_model=SMOL.upper(), target_model=GEMMA), None
        )
        empty = service.handle_wmatrix(
            WMatrixVersionsRequest(source_model=GEMMA, target_model=SMOL), None
        )

        assert (SMOL, GEMMA) == (listed.source_model, listed.target_model)
        assert [(generated.version, "orthogonal", generated.quality_metrics)] == [
            (m.version, m.method, m.quality_metrics) for m in listed.w_matrices
        ]
        assert ["1.0.0", "1.2.0"] == [m.version for m in listed.kv_maps]
        assert aligner.quality.information_retention == pytest.approx(
            listed.kv_maps[0].alignment_quality.information_retention
        )
        assert ((), ()) == (empty.w_matrices, empty.kv_maps)

    def test_aliases_resolve_to_the_registry_name(self, service, rng):
        """Anchors registered under any case of a name land under the canonical name."""
        x, _ = paired_anchors(rng)

        reply = service.handle_wmatrix(
            RegisterAnchorsRequest(model=SMOL.upper(), anchor_set="c", activations=x), None
        )

        assert (SMOL, 400, 24) == (reply.model, reply.rows, reply.dim)

    def test_enforced_thresholds_refuse_a_poor_map_with_its_figures(self, tmp_path, rng):
        """With the spec's targets enforced, a map of unrelated anchors is not stored and the
        error carries the measured figures and the resolution "Try different method"."""
        from dataclasses import replace

        from latentmas_mesh.alignment import QualityThresholds
        from latentmas_mesh.errors import QualityBelowThreshold

        service = make_service(tmp_path)
        service.policy = replace(service.policy, thresholds=QualityThresholds())
        for model in (SMOL, GEMMA):
            service.register_anchors(RegisterAnchorsRequest(
                model=model, anchor_set="c", activations=rng.standard_normal((300, 8))
            ))  # fmt: skip

        with pytest.raises(QualityBelowThreshold) as raised:
            service.generate(
                GenerateWMatrixRequest(source_model=SMOL, target_model=GEMMA, method="learned")
            )

        assert raised.value.details["measured"]["information_retention"] < 0.5
        assert [] == service.wmatrices.records(SMOL, GEMMA)

    def test_generate_without_anchors_is_model_not_supported(self, service):
        """A model whose owner registered no activations cannot be fitted."""
        with pytest.raises(ModelNotSupported):
            service.generate(
                GenerateWMatrixRequest(source_model=SMOL, target_model=GEMMA, method="learned")
            )

    def test_anchors_of_different_sets_do_not_pair(self, service, rng):
        """Activations on different anchor corpora are refused, not silently mis-paired."""
        _register_pair(service, rng, anchor_set="corpus:v2")

        with pytest.raises(InvalidRequest):
            service.generate(
                GenerateWMatrixRequest(source_model=SMOL, target_model=GEMMA, method="learned")
            )

    def test_unknown_model_is_model_not_supported(self, service, rng):
        """A name outside the registry gets MODEL_NOT_SUPPORTED."""
        with pytest.raises(ModelNotSupported):
            service.handle_wmatrix(RegisterAnchorsRequest(
                model="my-secret-model", anchor_set="c", activations=np.zeros((9, 2), np.float32)
            ), None)  # fmt: skip


class TestAlignVector:
    def test_single_vector_and_batch_are_mapped_by_the_stored_map(self, service, rng):
        """v1 align_vector answers in the request's form with the map's held-out quality."""
        x, _ = _register_pair(service, rng)
        service.generate(
            GenerateWMatrixRequest(source_model=SMOL, target_model=GEMMA, method="learned")
        )
        wmatrix, _ = service.wmatrices.get(SMOL, GEMMA)

        single = service.handle_align(
            AlignVectorRequest(vector=x[0], source_model=SMOL, target_model=GEMMA), None, "r1"
        )
        batch = service.handle_align(
            AlignVectorRequest(vectors=x[:3], source_model=SMOL, target_model=GEMMA), None, "r2"
        )

        np.testing.assert_allclose(single.aligned_vector, wmatrix.transform(x[0]), rtol=1e-5)
        assert (3, 32) == batch.aligned_vectors.shape
        assert single.alignment_quality.cosine_similarity > 0.99

    def test_pair_without_a_map_composes_through_the_hub(self, service, rng):
        """No generated map, but both models charted in the unified space: C.2's fallback
        composes W = decode_target ∘ encode_source and aligns with it."""
        x, y = _register_pair(service, rng)

        reply = service.handle_align(
            AlignVectorRequest(vectors=x[:5], source_model=SMOL, target_model=GEMMA), None, "r1"
        )

        assert [] == service.wmatrices.records(SMOL, GEMMA)
        cosine = np.sum(reply.aligned_vectors * y[:5], axis=1) / (
            np.linalg.norm(reply.aligned_vectors, axis=1) * np.linalg.norm(y[:5], axis=1)
        )
        assert bool(np.all(cosine > 0.99))
        assert reply.alignment_quality.cosine_similarity > 0.99

    def test_pair_without_a_map_is_w_matrix_not_found(self, service):
        """No generated map for the pair and no charts: W_MATRIX_NOT_FOUND."""
        with pytest.raises(WMatrixNotFound):
            service.handle_align(AlignVectorRequest(
                vector=np.zeros(24, np.float32), source_model=SMOL, target_model=GEMMA
            ), None, "r1")  # fmt: skip

    def test_vector_of_the_wrong_width_is_a_dimension_mismatch(self, service, rng):
        """A 25-d vector for a 24-d source map is refused."""
        _register_pair(service, rng)
        service.generate(
            GenerateWMatrixRequest(source_model=SMOL, target_model=GEMMA, method="orthogonal")
        )

        with pytest.raises(DimensionMismatch):
            service.handle_align(AlignVectorRequest(
                vector=np.zeros(25, np.float32), source_model=SMOL, target_model=GEMMA
            ), None, "r1")  # fmt: skip


class TestAlignKV:
    def test_same_model_exchange_returns_the_cache_unchanged(self, service, rng):
        """EXCHANGE_MEMORY from a model to itself is the identity, bit for bit, quality exact."""
        cache = kv_cache(SMOL, rng)

        reply = service.handle_align(
            ExchangeMemoryRequest(kv_source=cache, source_model=SMOL, target_model=SMOL),
            None,
            "r1",
        )

        np.testing.assert_array_equal(cache.keys, reply.kv_aligned.keys)
        assert 1.0 == reply.quality.cosine_similarity

    def test_cross_model_alignment_gives_the_targets_shape(self, service, rng):
        """With stored smollm2 -> gemma-3 maps the aligned cache has gemma-3's geometry."""
        aligner = fitted_smol_to_gemma(rng)
        service.kv_maps.put(aligner, source=SMOL, target=GEMMA, version="1.0.0")
        cache = kv_cache(SMOL, rng, dtype=np.float16)

        reply = service.handle_align(
            AlignKVCacheRequest(kv_cache=cache, target_model=GEMMA), None, "r1"
        )

        aligned = reply.aligned_kv_cache
        assert ((18, 1, 5, 256), np.float16) == (aligned.keys.shape, aligned.keys.dtype)
        assert (GEMMA, 5) == (aligned.source_model, aligned.metadata.sequence_length)
        assert aligner.quality.cosine_similarity == pytest.approx(
            reply.alignment_quality.cosine_similarity
        )

    def test_missing_maps_and_pinned_versions_are_w_matrix_not_found(self, service, rng):
        """No stored maps, or a pinned version that does not exist: W_MATRIX_NOT_FOUND."""
        cache = kv_cache(SMOL, rng)

        with pytest.raises(WMatrixNotFound):
            service.handle_align(
                AlignKVCacheRequest(kv_cache=cache, target_model=GEMMA), None, "r1"
            )
        with pytest.raises(WMatrixNotFound):
            service.handle_align(
                AlignKVCacheRequest(kv_cache=cache, target_model=SMOL, w_matrix_version="2.0.0"),
                None,
                "r2",
            )

    def test_cache_of_the_wrong_shape_is_a_dimension_mismatch(self, service, rng):
        """A gemma-shaped cache declared as smollm2's is refused."""
        cache = kv_cache(GEMMA, rng).model_copy(update={"source_model": SMOL})

        with pytest.raises(DimensionMismatch):
            service.handle_align(AlignKVCacheRequest(kv_cache=cache, target_model=SMOL), None, "r1")

    def test_closed_target_model_is_not_supported(self, service, rng):
        """A closed model cannot receive a cache."""
        with pytest.raises(ModelNotSupported):
            service.handle_align(
                AlignKVCacheRequest(kv_cache=kv_cache(SMOL, rng), target_model="gpt-4"), None, "r"
            )

    def test_exchange_refuses_a_source_disagreement(self, service, rng):
        """kv_source.source_model must name the same model as source_model."""
        with pytest.raises(InvalidRequest):
            service.handle_align(ExchangeMemoryRequest(
                kv_source=kv_cache(SMOL, rng), source_model=GEMMA, target_model=SMOL
            ), None, "r1")  # fmt: skip


def _spy(monkeypatch, owner: type, name: str) -> list[int]:
    """Count calls of owner.name (still calling it): [] proves a refusal came first."""
    calls: list[int] = []
    real = getattr(owner, name)

    def spied(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, spied)
    return calls


def _random_smol_to_gemma(rng) -> KVAligner:
    """Random head maps of the pair's shapes with a stated quality (fitting is slow, and what
    a request allocates does not depend on the weights)."""
    source, target = geometry_from_registry(SMOL), geometry_from_registry(GEMMA)
    inputs = KVMapping.build(source, target).inputs
    shape = (target.layers, target.kv_heads, source.head_dim, target.head_dim)
    maps = HeadMaps(
        inputs,
        rng.standard_normal(shape, dtype=np.float32) / 8,
        np.zeros(shape[:2] + shape[3:], np.float32),
    )
    aligner = KVAligner.from_head_maps(source, target, maps, maps)
    aligner.exchange_quality_ = AlignmentQuality(0.9, 0.2, 0.8, 0.7, 6)
    return aligner


def _limit(service, request_bytes_max: int) -> None:
    service.policy = replace(service.policy, request_bytes_max=request_bytes_max)


VECTOR_SLACK = 96 * 1024  # numpy's 64 KiB ufunc buffer (the broadcast bias) and Python objects


class TestRequestBytes:
    def test_a_cache_predicted_past_the_limit_is_refused_before_the_maps_run(
        self, service, rng, monkeypatch
    ):
        """Input plus the output and working bytes predicted from gemma-3's geometry: one byte
        over the limit is PAYLOAD_TOO_LARGE with the figures, and the maps never run; at the
        limit the same request is served, with the predicted output."""
        aligner = _random_smol_to_gemma(rng)
        service.kv_maps.put(aligner, source=SMOL, target=GEMMA, version="1.0.0")
        cache = kv_cache(SMOL, rng, seq=64, dtype=np.float16)
        request = AlignKVCacheRequest(kv_cache=cache, target_model=GEMMA)
        predicted = aligner.align_bytes(64, np.float16)
        needed = cache.nbytes + predicted.total
        calls = _spy(monkeypatch, KVAligner, "align")

        _limit(service, needed - 1)
        with pytest.raises(PayloadTooLarge) as raised:
            service.handle_align(request, None, "r1")
        refused_calls = len(calls)
        _limit(service, needed)
        aligned = service.handle_align(request, None, "r2").aligned_kv_cache

        assert (0, 1) == (refused_calls, len(calls))
        assert {
            "predicted_bytes": needed,
            "bytes_max": needed - 1,
            "input_bytes": cache.nbytes,
            "output_bytes": predicted.output,
            "working_bytes": predicted.working,
        } == raised.value.details
        assert predicted.output == aligned.keys.nbytes + aligned.values.nbytes

    def test_a_same_model_exchange_counts_its_copy(self, service, rng, monkeypatch):
        """The identity returns a copy: input and output are the cache's size each."""
        cache = kv_cache(SMOL, rng, seq=16)
        calls = _spy(monkeypatch, KVAligner, "align")
        _limit(service, 2 * cache.nbytes)

        with pytest.raises(PayloadTooLarge) as raised:
            service.handle_align(
                ExchangeMemoryRequest(kv_source=cache, source_model=SMOL, target_model=SMOL),
                None,
                "r1",
            )

        assert [] == calls
        assert cache.nbytes == raised.value.details["output_bytes"]

    def test_vectors_predicted_past_the_limit_are_refused_before_the_map_runs(
        self, service, rng, monkeypatch
    ):
        """align_vector: the float64 work of 400 vectors into 32 dimensions, one byte over the
        limit, is refused before the map runs; at the limit it is served."""
        x, _ = _register_pair(service, rng)
        service.generate(
            GenerateWMatrixRequest(source_model=SMOL, target_model=GEMMA, method="learned")
        )
        request = AlignVectorRequest(vectors=x, source_model=SMOL, target_model=GEMMA)
        output, working = vector_bytes(x, 32)
        needed = x.nbytes + output + working
        calls = _spy(monkeypatch, WMatrix, "transform")

        _limit(service, needed - 1)
        with pytest.raises(PayloadTooLarge) as raised:
            service.handle_align(request, None, "r1")
        refused_calls = len(calls)
        _limit(service, needed)
        reply = service.handle_align(request, None, "r2")

        assert 0 == refused_calls < len(calls)  # served: the map and the sampled cycle check
        assert (needed, output) == (
            raised.value.details["predicted_bytes"],
            raised.value.details["output_bytes"],
        )
        assert output == reply.aligned_vectors.nbytes

    @pytest.mark.parametrize("dtype", [np.float32, np.float64])
    def test_vector_prediction_is_the_peak_of_align_vector(self, service, rng, dtype):
        """What align_vector allocates, traced, is the predicted output plus working bytes (a
        second request: the first also samples the cycle check and composes its reverse map)."""
        _register_pair(service, rng)
        service.generate(
            GenerateWMatrixRequest(source_model=SMOL, target_model=GEMMA, method="learned")
        )
        rows = rng.standard_normal((20_000, 24)).astype(dtype)
        request = AlignVectorRequest(vectors=rows, source_model=SMOL, target_model=GEMMA)
        service.align_vector(request, "r1")

        tracemalloc.start()
        try:
            service.align_vector(request, "r2")
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

        predicted = sum(vector_bytes(rows, 32))
        assert predicted <= peak <= predicted + VECTOR_SLACK


def test_the_request_limit_comes_from_the_environment(monkeypatch, tmp_path):
    """LATENTMAS_ALIGNMENT_REQUEST_BYTES_MAX reaches the align worker's policy (2 GiB unset)."""
    monkeypatch.setenv("LATENTMAS_CACHE_DIR", str(tmp_path))
    default = build_service().policy.request_bytes_max
    monkeypatch.setenv("LATENTMAS_ALIGNMENT_REQUEST_BYTES_MAX", "12345")

    assert (2 << 30, 12345) == (default, build_service().policy.request_bytes_max)


class TestMinQuality:
    def test_maps_below_min_quality_are_refused_before_aligning(self, service, rng, monkeypatch):
        """Maps retaining 0.8 asked for 0.9: QUALITY_BELOW_THRESHOLD with the measured figure
        and the re-prefill fallback, and the maps never run; asked for 0.8 they serve."""
        service.kv_maps.put(fitted_smol_to_gemma(rng), source=SMOL, target=GEMMA, version="1.0.0")
        cache = kv_cache(SMOL, rng)
        calls = _spy(monkeypatch, KVAligner, "align")

        with pytest.raises(QualityBelowThreshold) as raised:
            service.handle_align(
                AlignKVCacheRequest(kv_cache=cache, target_model=GEMMA, min_quality=0.9),
                None,
                "r1",
            )
        refused_calls = len(calls)
        served = service.handle_align(
            AlignKVCacheRequest(kv_cache=cache, target_model=GEMMA, min_quality=0.8), None, "r2"
        )

        assert (0, 1) == (refused_calls, len(calls))
        assert (0.9, 0.8, REPREFILL_FALLBACK) == (
            raised.value.details["min_quality"],
            raised.value.details["measured"]["information_retention"],
            raised.value.details["fallback"],
        )
        assert 0.8 == served.alignment_quality.information_retention

    def test_exchange_memory_takes_the_same_floor(self, service, rng):
        """EXCHANGE_MEMORY with min_quality above the maps' retention is refused the same way."""
        service.kv_maps.put(fitted_smol_to_gemma(rng), source=SMOL, target=GEMMA, version="1.0.0")

        with pytest.raises(QualityBelowThreshold):
            service.handle_align(ExchangeMemoryRequest(
                kv_source=kv_cache(SMOL, rng), source_model=SMOL, target_model=GEMMA,
                min_quality=0.95,
            ), None, "r1")  # fmt: skip

    def test_a_same_model_exchange_meets_any_floor(self, service, rng):
        """The identity retains everything: min_quality 1.0 is served."""
        reply = service.handle_align(ExchangeMemoryRequest(
            kv_source=kv_cache(SMOL, rng), source_model=SMOL, target_model=SMOL, min_quality=1.0
        ), None, "r1")  # fmt: skip

        assert 1.0 == reply.quality.information_retention

    def test_missing_maps_name_the_re_prefill_fallback(self, service, rng):
        """W_MATRIX_NOT_FOUND for a pair without KV maps says what to do instead."""
        with pytest.raises(WMatrixNotFound) as raised:
            service.handle_align(
                AlignKVCacheRequest(kv_cache=kv_cache(SMOL, rng), target_model=GEMMA), None, "r1"
            )

        assert REPREFILL_FALLBACK == raised.value.details["fallback"]
        assert "Use fallback method" == raised.value.resolution


class TestRegistryMessages:
    def test_pages_of_models_are_the_whole_registry_in_order(self, service):
        """Paging through registry.models_request gives every entry once, in file order."""
        names, offset = [], 0
        while offset is not None:
            reply = service.handle_wmatrix(ModelsRequest(offset=offset, limit=20), None)
            names.extend(entry["name"] for entry in reply.models)
            offset = reply.next_offset

        assert [spec.name for spec in service.registry.models()] == names

    def test_a_family_filter_keeps_only_that_family(self, service):
        """family="llama" lists the llama entries, each a valid ModelSpec document."""
        reply = service.handle_wmatrix(ModelsRequest(family="llama"), None)

        specs = [ModelSpec.model_validate(entry) for entry in reply.models]
        assert [s.name for s in service.registry.models("llama")] == [s.name for s in specs]
        assert {"llama"} == {s.family for s in specs}

    def test_one_model_by_alias_answers_its_canonical_entry(self, service):
        """registry.model_request resolves aliases and case like every other call."""
        reply = service.handle_wmatrix(ModelRequest(name=SMOL.upper()), None)

        assert service.registry.get(SMOL) == ModelSpec.model_validate(reply.model)

    def test_an_unknown_model_is_not_supported_with_suggestions(self, service):
        """A misspelt name gets MODEL_NOT_SUPPORTED naming the close registry names."""
        with pytest.raises(ModelNotSupported) as raised:
            service.handle_wmatrix(ModelRequest(name="gemma-3-27m"), None)

        assert GEMMA in raised.value.details["suggestions"]

    def test_the_operators_registry_file_is_what_the_service_lists(self, monkeypatch, tmp_path):
        """LATENTMAS_REGISTRY_PATH reaches the worker's service: its models are listed."""
        extra = tmp_path / "models.json"
        extra.write_text(json.dumps({"models": [open_entry("acme-1b")]}), encoding="utf-8")
        monkeypatch.setenv("LATENTMAS_CACHE_DIR", str(tmp_path))
        monkeypatch.setenv("LATENTMAS_REGISTRY_PATH", str(extra))

        reply = build_service().handle_wmatrix(ModelRequest(name="acme/acme-1b"), None)

        assert "acme-1b" == reply.model["name"]

    def test_generate_for_a_closed_model_says_it_exports_no_activations(self, service):
        """The spec's own example, gpt-4 -> llama-3-70b: MODEL_NOT_SUPPORTED saying why."""
        with pytest.raises(ModelNotSupported, match="closed model") as raised:
            service.generate(
                GenerateWMatrixRequest(
                    source_model="gpt-4", target_model="llama-3-70b", method="orthogonal"
                )
            )

        assert (False, "gpt-4") == (
            raised.value.details["open_weights"],
            raised.value.details["model"],
        )


def test_the_service_refuses_maps_fitted_for_another_geometry(service, rng):
    """Maps whose stored source geometry differs from the registry's are never applied."""
    from dataclasses import replace

    from latentmas_mesh.alignment import KVAligner

    aligner = fitted_smol_to_gemma(rng)
    other = replace(
        aligner.source, rotary=tuple(replace(r, theta=10_000.0) for r in aligner.source.rotary)
    )
    moved = KVAligner.from_head_maps(
        other, aligner.target, aligner.keys_.heads, aligner.values_.heads
    )
    moved.exchange_quality_ = aligner.quality
    service.kv_maps.put(moved, source=SMOL, target=GEMMA, version="1.0.0")

    with pytest.raises(DimensionMismatch, match="another source geometry"):
        service.handle_align(
            AlignKVCacheRequest(kv_cache=kv_cache(SMOL, rng), target_model=GEMMA), None, "r1"
        )
