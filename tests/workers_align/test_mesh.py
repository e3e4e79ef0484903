"""The align and wmatrix workers through a real local mesh (broker + worker processes)."""

from __future__ import annotations

import numpy as np
import pytest

from latentmas_mesh.artifacts.kv_map_store import KVMapStore
from latentmas_mesh.errors import DimensionMismatch, ModelNotSupported, WMatrixNotFound
from latentmas_mesh.protocol.align import ExchangeMemoryRequest
from latentmas_mesh.protocol.anchors import RegisterAnchorsRequest
from latentmas_mesh.protocol.v1 import AlignVectorRequest
from latentmas_mesh.protocol.wmatrix import GenerateWMatrixRequest
from latentmas_mesh.testing.mesh import LocalMesh
from tests.workers_align.conftest import GEMMA, SMOL, fitted_smol_to_gemma, kv_cache, paired_anchors

ALIGN, WMATRIX = "latentmas.align", "latentmas.wmatrix"
TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def mesh(tmp_path_factory):
    """One broker, one align worker and one wmatrix worker (registered kinds) sharing a
    temporary cache dir."""
    cache = tmp_path_factory.mktemp("alignment-cache")
    env = {
        "LATENTMAS_CACHE_DIR": str(cache),
        "LATENTMAS_ALIGNMENT_UNIFIED_DIM": "16",
    }
    with LocalMesh({"align": 1, "wmatrix": 1}, env=env).start(timeout_s=120) as local:
        local.cache_dir = cache
        yield local


@pytest.mark.slow
class TestThroughTheMesh:
    def test_register_generate_then_align_vectors(self, mesh, rng):
        """Anchors registered, a map generated, then a vector aligned, all via the broker."""
        x, y = paired_anchors(rng)
        with mesh.transport() as transport:
            for model, rows in ((SMOL, x), (GEMMA, y)):
                transport.call(WMATRIX, RegisterAnchorsRequest(
                    model=model, anchor_set="corpus:v1", activations=rows
                ), timeout_ms=TIMEOUT_MS)  # fmt: skip
            generated = transport.call(WMATRIX, GenerateWMatrixRequest(
                source_model=SMOL, target_model=GEMMA, method="hybrid"
            ), timeout_ms=TIMEOUT_MS).message  # fmt: skip
            aligned = transport.call(ALIGN, AlignVectorRequest(
                vectors=x[:4], source_model=SMOL, target_model=GEMMA
            ), timeout_ms=TIMEOUT_MS).message  # fmt: skip

        assert "1.0.0" == generated.version
        assert (4, 32) == aligned.aligned_vectors.shape
        assert aligned.alignment_quality.information_retention > 0.99

    def test_same_model_exchange_round_trips_the_cache(self, mesh, rng):
        """EXCHANGE_MEMORY smollm2 -> smollm2 returns the same bfloat16 cache bit for bit."""
        import ml_dtypes

        cache = kv_cache(SMOL, rng, seq=7, dtype=ml_dtypes.bfloat16)
        with mesh.transport() as transport:
            reply = transport.call(ALIGN, ExchangeMemoryRequest(
                kv_source=cache, source_model=SMOL, target_model=SMOL
            ), timeout_ms=TIMEOUT_MS).message  # fmt: skip

        np.testing.assert_array_equal(
            cache.keys.view(np.uint16), reply.kv_aligned.keys.view(np.uint16)
        )

    def test_cross_model_exchange_uses_the_stored_kv_maps(self, mesh, rng):
        """With smollm2 -> gemma-3 maps in the store, EXCHANGE_MEMORY returns gemma's shape."""
        aligner = fitted_smol_to_gemma(rng)
        KVMapStore(mesh.cache_dir / "kvmaps").put(
            aligner, source=SMOL, target=GEMMA, version="1.2.0"
        )
        with mesh.transport() as transport:
            reply = transport.call(ALIGN, ExchangeMemoryRequest(
                kv_source=kv_cache(SMOL, rng), source_model=SMOL, target_model=GEMMA,
                w_matrix_version="1.2.0",
            ), timeout_ms=TIMEOUT_MS).message  # fmt: skip

        assert (18, 1, 5, 256) == reply.kv_aligned.keys.shape
        assert GEMMA == reply.kv_aligned.source_model

    def test_errors_reach_the_client_typed(self, mesh, rng):
        """Unknown model, wrong shape and a missing maps version arrive as protocol errors."""
        cache = kv_cache(SMOL, rng)
        wrong_shape = kv_cache(GEMMA, rng).model_copy(update={"source_model": SMOL})
        with mesh.transport() as transport:
            with pytest.raises(ModelNotSupported):
                transport.call(ALIGN, ExchangeMemoryRequest(
                    kv_source=cache, source_model=SMOL, target_model="no-such-model"
                ), timeout_ms=TIMEOUT_MS)  # fmt: skip
            with pytest.raises(DimensionMismatch):
                transport.call(ALIGN, ExchangeMemoryRequest(
                    kv_source=wrong_shape, source_model=SMOL, target_model=SMOL
                ), timeout_ms=TIMEOUT_MS)  # fmt: skip
            with pytest.raises(WMatrixNotFound):
                transport.call(ALIGN, ExchangeMemoryRequest(
                    kv_source=cache, source_model=SMOL, target_model=GEMMA,
                    w_matrix_version="9.9.9",
                ), timeout_ms=TIMEOUT_MS)  # fmt: skip
