"""The align path's per-request costs: what is built once, what is sampled, what is never redone."""

from __future__ import annotations

import numpy as np
import pytest

import latentmas_mesh.alignment.quality as quality_module
import latentmas_mesh.services.alignment as service_module
from latentmas_mesh.alignment.quality import cycle_consistency, cycle_consistency_of_mapped
from latentmas_mesh.errors import DimensionMismatch, ModelNotSupported
from latentmas_mesh.protocol.align import AlignKVCacheRequest
from latentmas_mesh.protocol.anchors import RegisterAnchorsRequest
from latentmas_mesh.protocol.v1 import AlignVectorRequest
from latentmas_mesh.protocol.wmatrix import GenerateWMatrixRequest
from tests.workers_align.conftest import GEMMA, SMOL, kv_cache, paired_anchors


def _register(service, rng):
    x, y = paired_anchors(rng)
    for model, rows in ((SMOL, x), (GEMMA, y)):
        service.handle_wmatrix(
            RegisterAnchorsRequest(model=model, anchor_set="corpus:v1", activations=rows), None
        )
    return x, y


def _counting(monkeypatch, module, name):
    """Replace module.name by a wrapper that records each call's arguments."""
    calls = []
    original = getattr(module, name)

    def spy(*args, **kwargs):
        calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, spy)
    return calls


def _vectors(service, x, request_id, rows=1):
    request = AlignVectorRequest(vectors=x[:rows], source_model=SMOL, target_model=GEMMA)
    return service.handle_align(request, None, request_id)


class TestCycleCheck:
    def test_sampled_first_and_every_nth_request_of_the_pair(self, service, rng, monkeypatch):
        """With the reverse map stored, the cycle runs on request 0, CYCLE_EVERY, 2·CYCLE_EVERY."""
        x, _ = _register(service, rng)
        for source, target in ((SMOL, GEMMA), (GEMMA, SMOL)):
            service.generate(
                GenerateWMatrixRequest(source_model=source, target_model=target, method="learned")
            )
        calls = _counting(monkeypatch, service_module, "cycle_consistency_of_mapped")

        for index in range(2 * service_module.CYCLE_EVERY + 1):
            _vectors(service, x, f"r{index}")

        assert 3 == len(calls)

    def test_sample_is_bounded_and_reuses_the_forward_output(self, service, rng, monkeypatch):
        """A 300-row request is checked on CYCLE_ROWS_MAX rows; the forward map runs once."""
        x, _ = _register(service, rng)
        for source, target in ((SMOL, GEMMA), (GEMMA, SMOL)):
            service.generate(
                GenerateWMatrixRequest(source_model=source, target_model=target, method="learned")
            )
        forward, _ = service.wmatrices.get(SMOL, GEMMA)
        calls = _counting(monkeypatch, service_module, "cycle_consistency_of_mapped")
        transforms = _counting(monkeypatch, type(forward), "transform")

        _vectors(service, x, "r0", rows=300)

        (_backward, rows, mapped) = calls[0]
        assert service_module.CYCLE_ROWS_MAX == rows.shape[0] == mapped.shape[0]
        assert 2 == len(transforms)  # forward on the request, backward on the sample: not 3

    def test_no_reverse_map_no_hub_answers_without_a_cycle(self, service, rng):
        """Only the forward map stored, no unified space: the request is answered all the same."""
        x, _ = _register(service, rng)
        service.generate(
            GenerateWMatrixRequest(source_model=SMOL, target_model=GEMMA, method="learned")
        )
        service.hub = None

        reply = _vectors(service, x, "r0", rows=2)

        assert (2, 32) == reply.aligned_vectors.shape


class TestCycleOfMapped:
    def test_equals_the_full_cycle(self, service, rng):
        """Given forward(x), the check equals cycle_consistency(forward, backward, x)."""
        x, _ = _register(service, rng)
        forward = service.compose(SMOL, GEMMA)
        backward = service.compose(GEMMA, SMOL)

        full = cycle_consistency(forward, backward, x[:20])
        reused = cycle_consistency_of_mapped(backward, x[:20], forward.transform(x[:20]))

        assert full == reused

    def test_mapped_rows_must_pair_with_the_source_rows(self, service, rng):
        x, _ = _register(service, rng)
        forward, backward = service.compose(SMOL, GEMMA), service.compose(GEMMA, SMOL)

        with pytest.raises(DimensionMismatch):
            cycle_consistency_of_mapped(backward, x[:20], forward.transform(x[:19]))


class TestHubComposition:
    def test_measured_once_per_unified_space(self, service, rng, monkeypatch):
        """Served through the hub, requests pay no bootstrap after the first; a changed space
        is composed (and measured) again."""
        x, y = _register(service, rng)
        bootstraps = _counting(monkeypatch, quality_module, "bootstrap_lower_bound")

        _vectors(service, x, "r0")
        first = len(bootstraps)
        for index in range(1, 20):
            _vectors(service, x, f"r{index}")
        repeated = len(bootstraps)
        service.handle_wmatrix(
            RegisterAnchorsRequest(model=GEMMA, anchor_set="corpus:v1", activations=y * 2), None
        )
        _vectors(service, x, "r20")

        assert first >= 1  # the forward composition (and the sampled cycle's reverse one)
        assert first == repeated
        assert len(bootstraps) > repeated


class TestKVGeometry:
    def test_registry_geometry_built_once_per_model(self, service, rng, monkeypatch):
        """Same-model exchanges: one geometry build, one identity aligner, however many calls."""
        calls = _counting(monkeypatch, service_module, "geometry_from_registry")
        identities = _counting(monkeypatch, service_module.KVAligner, "identity")
        cache = kv_cache(SMOL, rng)

        replies = [
            service.handle_align(AlignKVCacheRequest(kv_cache=cache, target_model=SMOL), None, r)
            for r in ("r1", "r2", "r3")
        ]

        assert 1 == len(calls)
        assert 1 == len(identities)
        for reply in replies:
            np.testing.assert_array_equal(cache.keys, reply.aligned_kv_cache.keys)

    def test_unsupported_target_is_refused_every_time(self, service, rng):
        """A refusal is not cached as a geometry: the second request is refused too."""
        cache = kv_cache(SMOL, rng)
        for request_id in ("r1", "r2"):
            with pytest.raises(ModelNotSupported):
                service.handle_align(
                    AlignKVCacheRequest(kv_cache=cache, target_model="gpt-4"), None, request_id
                )
