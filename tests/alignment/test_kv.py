"""KV-cache alignment: mappings, fitting on synthetic caches with known truth, identity, errors."""

from __future__ import annotations

import tracemalloc

import ml_dtypes
import numpy as np
import pytest

from latentmas_mesh.alignment.geometry import geometry_from_registry
from latentmas_mesh.alignment.kernels import HeadMaps
from latentmas_mesh.alignment.kv import (
    KVAligner,
    KVGeometry,
    KVMapping,
    layer_window,
    proportional_head_map,
    proportional_layer_map,
)
from latentmas_mesh.alignment.kv_fit import fit_kv_arrays
from latentmas_mesh.alignment.rope import RotarySpec, apply_rotary
from latentmas_mesh.alignment.tokens import pooling_weights
from latentmas_mesh.artifacts.maps import load_kv_aligner, save_kv_aligner
from latentmas_mesh.errors import DimensionMismatch

SOURCE = KVGeometry(
    layers=4,
    kv_heads=2,
    head_dim=16,
    rotary=(RotarySpec(1e4, "half"),) * 3 + (RotarySpec(1e6, "half", rotary_dim=8),),
    value_dim=12,
    name="source",
)
TARGET = KVGeometry(
    layers=3,
    kv_heads=1,
    head_dim=8,
    rotary=(
        RotarySpec(5e5, "interleaved"),
        RotarySpec(1e4, "interleaved"),
        RotarySpec(5e5, "interleaved"),
    ),
    name="target",
)
LATENT = 6


class SyntheticModels:
    """Two 'models' whose un-rotated keys and values are linear in one shared latent z."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.source_keys = rng.standard_normal((4, 2, LATENT, 16))
        self.source_values = rng.standard_normal((4, 2, LATENT, 12))
        self.target_keys = rng.standard_normal((3, 1, LATENT, 8))
        self.target_values = rng.standard_normal((3, 1, LATENT, 8))
        self.offset = rng.standard_normal(8)

    @staticmethod
    def _cache(z, weights, geometry, positions, key_offset=0.0):
        keys, values = weights
        raw_keys = np.einsum("nz,lhzd->lhnd", z, keys) + key_offset
        raw_values = np.einsum("nz,lhzd->lhnd", z, values)
        tables = geometry.tables(positions)
        rotated = np.stack([
            apply_rotary(raw_keys[layer].astype(np.float32), *tables.layer(layer),
                         tables.convention_name)
            for layer in range(geometry.layers)
        ])  # fmt: skip
        return rotated.astype(np.float32), raw_values.astype(np.float32)

    def source(self, z, positions):
        return self._cache(z, (self.source_keys, self.source_values), SOURCE, positions)

    def target(self, z, positions):
        return self._cache(
            z, (self.target_keys, self.target_values), TARGET, positions, self.offset
        )


@pytest.fixture
def models(rng) -> SyntheticModels:
    return SyntheticModels(rng)


def _fit(models, rng, **kwargs) -> KVAligner:
    z = rng.standard_normal((800, LATENT))
    source_positions = rng.integers(0, 4000, 800)
    target_positions = rng.integers(0, 4000, 800)
    s_keys, s_values = models.source(z, source_positions)
    t_keys, t_values = models.target(z, target_positions)
    return fit_kv_arrays(
        {"keys": s_keys, "values": s_values}, {"keys": t_keys, "values": t_values},
        source_geometry=SOURCE, target_geometry=TARGET,
        positions=(source_positions, target_positions),
        estimator=kwargs.pop("method", "hybrid"), granularity=kwargs.pop("granularity", "head"),
        **kwargs,
    ).aligner  # fmt: skip


class TestMappings:
    def test_proportional_layers_keep_relative_depth(self):
        """30 source layers onto 18: first to first, last to last, monotone in between."""
        layers = proportional_layer_map(30, 18)

        assert (0, 29) == (layers[0], layers[-1])
        assert bool(np.all(np.diff(layers) > 0))

    def test_gqa_heads_map_proportionally(self):
        """8 KV heads onto 2: each target head reads the middle of its group of four."""
        assert [2, 6] == proportional_head_map(8, 2).tolist()

    def test_neighbour_window_shifts_inward_at_the_ends(self):
        """Three layers around the first layer are 0, 1, 2; around the last, the last three."""
        assert ([0, 1, 2], [27, 28, 29]) == (layer_window(0, 1, 30), layer_window(29, 1, 30))

    def test_explicit_maps_override_the_defaults(self):
        """A caller's layer and head maps decide which source heads each target head reads."""
        mapping = KVMapping.build(SOURCE, TARGET, layer_map=[3, 3, 0], head_map=[1])

        assert [[3, 1]] == mapping.inputs[0, 0].tolist()
        assert [[0, 1]] == mapping.inputs[2, 0].tolist()

    def test_layer_granularity_reads_every_head_of_the_window(self):
        """Per layer, a target head reads all source heads of each layer in its window."""
        mapping = KVMapping.build(SOURCE, TARGET, granularity="layer", neighbour_layers=1)

        assert (3, 1, 6, 2) == mapping.inputs.shape

    def test_map_of_the_wrong_length_is_a_dimension_mismatch(self):
        """A layer map must name one source layer per target layer, within range."""
        with pytest.raises(DimensionMismatch):
            KVMapping.build(SOURCE, TARGET, layer_map=[0, 1])
        with pytest.raises(DimensionMismatch):
            KVMapping.build(SOURCE, TARGET, layer_map=[0, 1, 4])


class TestFittedAlignment:
    @pytest.mark.parametrize("granularity", ["head", "layer"])
    def test_aligned_cache_matches_the_target_models_own_cache(self, models, rng, granularity):
        """Keys de-rotated with the source's angles, mapped, re-rotated with the target's,
        equal the target model's own cache of the same latent tokens at new positions."""
        aligner = _fit(models, rng, method="learned", granularity=granularity)
        z = rng.standard_normal((40, LATENT))
        positions = np.arange(40) + 100
        keys, values = models.source(z, positions)
        expected_keys, expected_values = models.target(z, positions)

        aligned_keys, aligned_values = aligner.align(keys, values, positions=positions)

        np.testing.assert_allclose(aligned_keys, expected_keys, atol=2e-3)
        np.testing.assert_allclose(aligned_values, expected_values, atol=2e-3)
        assert aligner.regression_quality.cosine_similarity > 0.999

    def test_kernel_and_numpy_backends_agree(self, models, rng):
        """The fused kernel and the numpy twin give the same aligned cache."""
        aligner = _fit(models, rng, method="hybrid")
        keys, values = models.source(rng.standard_normal((64, LATENT)), np.arange(64))

        fused = aligner.align(keys, values, backend="kernel")
        reference = aligner.align(keys, values, backend="numpy")

        np.testing.assert_allclose(fused[0], reference[0], rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(fused[1], reference[1], rtol=1e-5, atol=1e-5)

    def test_target_positions_move_where_keys_are_rotated(self, models, rng):
        """Asking for other target positions equals the target's cache at those positions."""
        aligner = _fit(models, rng, method="learned")
        z = rng.standard_normal((16, LATENT))
        keys, values = models.source(z, np.arange(16))
        expected_keys, _ = models.target(z, np.arange(16) + 1000)

        aligned_keys, _ = aligner.align(keys, values, target_positions=np.arange(16) + 1000)

        np.testing.assert_allclose(aligned_keys, expected_keys, atol=2e-3)

    def test_pooling_onto_target_tokens_averages_mapped_entries(self, models, rng):
        """Two source tokens pooled into one target token give the mean of their mapped keys
        before rotation (the map is affine and pooling weights sum to one)."""
        aligner = _fit(models, rng, method="learned")
        z = rng.standard_normal((4, LATENT))
        keys, values = models.source(z, np.arange(4))
        weights, covered = pooling_weights([[0, 2], [2, 4], [4, 5], [5, 9]], [[0, 4], [4, 9]])
        pooled_z = weights @ z
        expected_keys, expected_values = models.target(pooled_z, np.arange(2))

        aligned_keys, aligned_values = aligner.align_pooled(keys, values, weights)

        assert [True, True] == covered.tolist()
        np.testing.assert_allclose(aligned_keys, expected_keys, atol=2e-3)
        np.testing.assert_allclose(aligned_values, expected_values, atol=2e-3)


class TestIdentity:
    @pytest.mark.parametrize("dtype", [np.float32, ml_dtypes.bfloat16])
    def test_same_model_exchange_returns_the_cache_bit_for_bit(self, rng, dtype):
        """A model aligned to itself gets exactly its own cache back."""
        keys = rng.standard_normal((4, 2, 10, 16)).astype(dtype)
        values = rng.standard_normal((4, 2, 10, 12)).astype(dtype)

        aligned_keys, aligned_values = KVAligner.identity(SOURCE).align(keys, values)

        np.testing.assert_array_equal(aligned_keys.view(np.uint8), keys.view(np.uint8))
        np.testing.assert_array_equal(aligned_values.view(np.uint8), values.view(np.uint8))


class TestRefusals:
    def test_cache_of_another_shape_is_a_dimension_mismatch(self, models, rng):
        """A cache with a head_dim the source model does not have is refused."""
        aligner = KVAligner.identity(SOURCE)
        with pytest.raises(DimensionMismatch) as raised:
            aligner.align(np.zeros((4, 2, 5, 8), np.float32), np.zeros((4, 2, 5, 12), np.float32))
        assert "Regenerate W-Matrix" == raised.value.resolution

    def test_unpaired_anchor_rows_are_a_dimension_mismatch(self, models, rng):
        """Source and target anchors must have the same number of tokens."""
        s_keys, s_values = models.source(rng.standard_normal((20, LATENT)), np.arange(20))
        t_keys, t_values = models.target(rng.standard_normal((21, LATENT)), np.arange(21))

        with pytest.raises(DimensionMismatch):
            fit_kv_arrays(
                {"keys": s_keys, "values": s_values},
                {"keys": t_keys, "values": t_values},
                source_geometry=SOURCE,
                target_geometry=TARGET,
                positions=(np.arange(20), np.arange(21)),
            )


class TestPersistence:
    def test_save_and_load_gives_the_same_aligned_cache(self, models, rng, tmp_path):
        """A reloaded aligner has the same hash, quality and output."""
        aligner = _fit(models, rng, method="hybrid")
        keys, values = models.source(rng.standard_normal((8, LATENT)), np.arange(8))
        path = tmp_path / "kv.safetensors"

        digest = save_kv_aligner(path, aligner)
        loaded = load_kv_aligner(path)

        assert digest == loaded.content_hash
        assert aligner.regression_quality == loaded.regression_quality
        np.testing.assert_array_equal(aligner.align(keys, values)[0], loaded.align(keys, values)[0])

    def test_identity_survives_a_round_trip(self, rng, tmp_path):
        """A saved identity aligner still returns caches bit for bit."""
        save_kv_aligner(tmp_path / "id.safetensors", KVAligner.identity(SOURCE))
        keys = rng.standard_normal((4, 2, 3, 16)).astype(np.float16)
        values = rng.standard_normal((4, 2, 3, 12)).astype(np.float16)

        aligned, _ = load_kv_aligner(tmp_path / "id.safetensors").align(keys, values)

        np.testing.assert_array_equal(keys.view(np.uint16), aligned.view(np.uint16))


def _random_aligner(source: KVGeometry, target: KVGeometry, rng) -> KVAligner:
    """Head maps of the right shapes with random weights (what align allocates ignores values)."""
    inputs = KVMapping.build(source, target).inputs

    def maps(source_dim: int, target_dim: int) -> HeadMaps:
        shape = (target.layers, target.kv_heads, source_dim, target_dim)
        weight = (rng.standard_normal(shape) / source_dim).astype(np.float32)
        bias = np.zeros((target.layers, target.kv_heads, target_dim), np.float32)
        return HeadMaps(inputs, weight, bias)

    return KVAligner.from_head_maps(
        source,
        target,
        maps(source.head_dim, target.head_dim),
        maps(source.value_width, target.value_width),
    )


def _traced_peak(aligner: KVAligner, keys: np.ndarray, values: np.ndarray) -> tuple[int, int]:
    """(bytes of the aligned cache, tracemalloc's peak during align; numba's buffers included)."""
    aligner.align(keys[:, :, :1], values[:, :, :1])  # the kernel loaded before tracing
    tracemalloc.start()
    try:
        aligned_keys, aligned_values = aligner.align(keys, values)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return aligned_keys.nbytes + aligned_values.nbytes, peak


# Angle tables outweigh the cache: two rotations of 256-wide heads mapped onto 8 unrotated dims.
WIDE_ROTARY = KVGeometry(2, 1, 256, (RotarySpec(1e4), RotarySpec(1e6)), name="wide-rotary")
NARROW = KVGeometry.uniform(1, 1, 8, RotarySpec.none(), name="narrow")


def _case(name: str, models: SyntheticModels, rng) -> tuple[KVAligner, KVGeometry, int]:
    """(aligner, its source geometry, positions) of one TestAlignBytes case."""
    if name in ("head", "layer"):
        return _fit(models, rng, granularity=name), SOURCE, 20_000
    if name == "identity":
        return KVAligner.identity(SOURCE), SOURCE, 20_000
    if name == "tables":
        return _random_aligner(WIDE_ROTARY, NARROW, rng), WIDE_ROTARY, 20_000
    source, target = (geometry_from_registry(model) for model in name.split(" -> "))
    return _random_aligner(source, target, rng), source, 1000


OBJECTS_SLACK = 16 * 1024  # tracemalloc also counts the call's small Python objects


class TestAlignBytes:
    @pytest.mark.parametrize(
        ("name", "dtype"),
        [
            ("head", np.float32),
            ("layer", np.float16),
            ("identity", ml_dtypes.bfloat16),
            ("tables", np.float32),
            ("smollm2-135m-instruct -> gemma-3-270m", ml_dtypes.bfloat16),
            ("gemma-3-270m -> smollm2-135m-instruct", np.float16),
        ],
    )
    def test_prediction_is_the_output_and_the_peak_of_align(self, models, rng, name, dtype):
        """Output bytes exactly; the peak to within the kernel's tiles (whether every thread
        holds one at once is timing) and a few Python objects. Cases: partial and interleaved
        rotation (SOURCE, TARGET), an identity, tables larger than the cache, and the registry's
        gemma-3 (two layer rotations)."""
        aligner, source, seq = _case(name, models, rng)
        keys = rng.standard_normal((source.layers, source.kv_heads, seq, source.head_dim))
        values = rng.standard_normal((source.layers, source.kv_heads, seq, source.value_width))

        predicted = aligner.align_bytes(seq, dtype)
        untiled = aligner.align_bytes(seq, dtype, threads=0)
        output, peak = _traced_peak(aligner, keys.astype(dtype), values.astype(dtype))

        assert output == predicted.output == untiled.output
        assert untiled.total - OBJECTS_SLACK <= peak <= predicted.total + OBJECTS_SLACK

    def test_a_large_target_geometry_is_predicted_without_allocating_it(self):
        """Prediction is arithmetic: a 1,000-token smollm2 cache into llama-3.1-70b's geometry
        (327,680 bfloat16 bytes a token) is 328 MB of output, predicted from shapes alone."""
        source = geometry_from_registry("smollm2-135m-instruct")
        target = geometry_from_registry("llama-3.1-70b")
        aligner = KVAligner.from_head_maps(source, target, *[HeadMaps(
            KVMapping.build(source, target).inputs,
            np.broadcast_to(np.float32(0), (target.layers, target.kv_heads, 64, 128)),
            np.broadcast_to(np.float32(0), (target.layers, target.kv_heads, 128)),
        )] * 2)  # fmt: skip

        tracemalloc.start()
        try:
            predicted = aligner.align_bytes(1000, ml_dtypes.bfloat16)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()

        assert 80 * 8 * 1000 * (128 + 128) * 2 == predicted.output
        assert peak < 1_000_000
