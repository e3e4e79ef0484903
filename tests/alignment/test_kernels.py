"""The fused numba kernel against its numpy twin, and its float16/bfloat16 conversions."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest

from latentmas_mesh.alignment.kernels import HeadMaps, align_heads, align_heads_reference
from latentmas_mesh.alignment.rope import RotarySpec, rotary_tables
from latentmas_mesh.errors import DimensionMismatch, InvalidRequest

BF16 = np.dtype(ml_dtypes.bfloat16)
DTYPES = [np.dtype(np.float32), np.dtype(np.float16), BF16]


def _random_maps(rng, source_shape, target_layers, target_heads, target_dim, n_in):  # noqa: PLR0917
    layers, heads, _, width = source_shape
    inputs = np.stack(
        [
            rng.integers(0, layers, (target_layers, target_heads, n_in)),
            rng.integers(0, heads, (target_layers, target_heads, n_in)),
        ],
        axis=-1,
    )
    weight = rng.standard_normal((target_layers, target_heads, n_in * width, target_dim)) / np.sqrt(
        n_in * width
    )
    bias = rng.standard_normal((target_layers, target_heads, target_dim))
    return HeadMaps(inputs.astype(np.int64), weight.astype(np.float32), bias.astype(np.float32))


def _ulp(values: np.ndarray) -> np.ndarray:
    """Spacing of the output dtype at each value (1 ulp)."""
    if values.dtype == BF16:
        return np.abs(values.astype(np.float32)) * 2.0**-7 + 1e-38
    return np.spacing(np.abs(values)).astype(np.float64)


CASES = [  # (source shape, target layers, heads, dim, inputs per head, seed)
    ((3, 2, 300, 16), 2, 3, 8, 1, 1),
    ((4, 3, 257, 32), 5, 1, 32, 2, 2),
    ((2, 4, 64, 8), 2, 2, 24, 4, 3),
]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("src_dtype", DTYPES, ids=lambda d: d.name)
@pytest.mark.parametrize("out_dtype", DTYPES, ids=lambda d: d.name)
def test_fused_kernel_matches_numpy_reference(case, src_dtype, out_dtype):
    """De-rotate, map, re-rotate and cast agree with the whole-array numpy twin."""
    shape, target_layers, target_heads, target_dim, n_in, seed = case
    rng = np.random.default_rng(seed)
    src = rng.standard_normal(shape).astype(src_dtype)
    maps = _random_maps(rng, shape, target_layers, target_heads, target_dim, n_in)
    positions = np.arange(shape[2]) + seed * 7
    source_rotary = rotary_tables(
        [RotarySpec(1e4, "half", rotary_dim=shape[3] // 2 * 2)] * (shape[0] - 1)
        + [RotarySpec(1e6, "half", rotary_dim=4)],
        shape[3],
        positions,
    )
    target_rotary = rotary_tables(
        [RotarySpec(5e5, "interleaved")] * target_layers, target_dim, positions[::-1].copy()
    )
    kwargs = {
        "source_rotary": source_rotary,
        "target_rotary": target_rotary,
        "out_dtype": out_dtype,
    }

    fused = align_heads(src, maps, tile=64, **kwargs)
    reference = align_heads_reference(src, maps, **kwargs)

    assert (out_dtype, reference.shape) == (fused.dtype, fused.shape)
    if out_dtype == np.float32:
        np.testing.assert_allclose(fused, reference, rtol=1e-5, atol=1e-5)
    else:
        gap = np.abs(fused.astype(np.float64) - reference.astype(np.float64))
        assert bool(np.all(gap <= _ulp(reference)))


def test_result_does_not_depend_on_tile_size(rng):
    """Tiles of 1, 7 and 256 positions give identical bits."""
    src = rng.standard_normal((2, 2, 100, 16)).astype(np.float16)
    maps = _random_maps(rng, src.shape, 2, 2, 16, 1)
    tables = rotary_tables([RotarySpec()] * 2, 16, np.arange(100))

    results = [
        align_heads(src, maps, source_rotary=tables, target_rotary=tables, tile=tile)
        for tile in (1, 7, 256)
    ]

    np.testing.assert_array_equal(results[0], results[1])
    np.testing.assert_array_equal(results[0], results[2])


def _identity_maps(width: int) -> HeadMaps:
    return HeadMaps(
        np.zeros((1, 1, 1, 2), dtype=np.int64),
        np.eye(width, dtype=np.float32)[None, None],
        np.zeros((1, 1, width), dtype=np.float32),
    )


class TestCasts:
    def test_every_finite_float16_value_survives_a_round_trip(self):
        """All 63,488 finite float16 bit patterns read and written through W = I come back
        exactly (inf and NaN are left out: inf·0 inside any matrix product is NaN; and a sum of
        products turns −0 into +0)."""
        values = np.arange(1 << 16, dtype=np.uint16).view(np.float16)
        src = values[np.isfinite(values)].reshape(1, 1, 496, 128)

        out = align_heads(src, _identity_maps(128))

        expected = np.where(src == 0, np.float16(0.0), src)
        np.testing.assert_array_equal(out.view(np.uint16), expected.view(np.uint16))

    @pytest.mark.parametrize("target", [np.dtype(np.float16), BF16], ids=lambda d: d.name)
    def test_float32_to_16_bit_rounds_like_numpy(self, rng, target):
        """float32 -> float16 / bfloat16 matches numpy / ml_dtypes bit for bit, including ties,
        subnormals, underflow to zero and overflow to infinity."""
        special = np.array(
            [
                0.0,
                65504.0,
                65519.99,
                65520.0,
                1e6,
                -1e6,
                3e38,
                5.96e-8,
                2.98e-8,
                2.99e-8,
                6.1e-5,
                1e-40,
                -1e-7,
            ],
            dtype=np.float32,
        )
        random_bits = rng.integers(0, 1 << 32, 8192 - special.size, dtype=np.uint64)
        values = np.concatenate([special, random_bits.astype(np.uint32).view(np.float32)])
        values = np.where(np.isfinite(values), values, np.float32(1.5)).astype(np.float32)
        halfway = (np.arange(1, 1 + 2048, dtype=np.uint32) << 13 | 0x1000) + 0x38800000
        values[-2048:] = halfway.view(np.float32)  # exact float16 ties in the normal range

        out = align_heads(values.reshape(1, 1, 64, 128), _identity_maps(128), out_dtype=target)

        with np.errstate(over="ignore"):
            expected = values.astype(target)
        np.testing.assert_array_equal(out.reshape(-1).view(np.uint16), expected.view(np.uint16))

    def test_nan_propagates_to_the_output(self):
        """A NaN input row stays NaN after mapping (fastmath is off)."""
        src = np.zeros((1, 1, 2, 4), dtype=np.float32)
        src[0, 0, 1, 2] = np.nan

        out = align_heads(src, _identity_maps(4), out_dtype=np.float16)

        assert [False, True] == np.isnan(out[0, 0, :, 2]).tolist()


class TestRefusals:
    def test_cache_narrower_than_the_maps_is_a_dimension_mismatch(self, rng):
        """A head_dim other than the maps' input width is refused before any work."""
        with pytest.raises(DimensionMismatch):
            align_heads(rng.standard_normal((1, 1, 4, 8)).astype(np.float32), _identity_maps(16))

    def test_maps_reading_missing_heads_are_a_dimension_mismatch(self, rng):
        """Maps that read source head 3 of a one-head cache are refused."""
        maps = _identity_maps(4)
        maps.inputs[0, 0, 0, 1] = 3

        with pytest.raises(DimensionMismatch):
            align_heads(np.zeros((1, 1, 4, 4), dtype=np.float32), maps)

    def test_float64_caches_are_invalid(self):
        """Only the three dtypes models cache in are accepted."""
        with pytest.raises(InvalidRequest):
            align_heads(np.zeros((1, 1, 4, 4)), _identity_maps(4))


def test_every_dtype_combination_shares_one_compiled_signature(rng):
    """Inputs and outputs of all three dtypes run on one compiled kernel: after warm-up no
    request compiles anything."""
    from latentmas_mesh.alignment.kernels import _fused_kernel, warm_up

    warm_up()
    for src_dtype in DTYPES:
        for out_dtype in DTYPES:
            align_heads(
                rng.standard_normal((1, 1, 3, 4)).astype(src_dtype),
                _identity_maps(4),
                out_dtype=out_dtype,
            )

    assert 1 == len(_fused_kernel.signatures)
