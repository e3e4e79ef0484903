"""Rotary embedding: round trips, both conventions, partial rotary, per-layer bases, registry."""

from __future__ import annotations

import numpy as np
import pytest

from latentmas_mesh.alignment.geometry import geometry_from_registry
from latentmas_mesh.alignment.rope import RotarySpec, apply_rotary, cos_sin, rotary_tables
from latentmas_mesh.errors import DimensionMismatch, ModelNotSupported


def _complex_reference(x: np.ndarray, angles: np.ndarray, convention: str) -> np.ndarray:
    """Rotation written as complex multiplication, independent of apply_rotary's code."""
    half = angles.shape[-1]
    if convention == "half":
        z = x[..., :half] + 1j * x[..., half : 2 * half]
    else:
        z = x[..., 0 : 2 * half : 2] + 1j * x[..., 1 : 2 * half : 2]
    z = z * np.exp(1j * angles)
    out = x.astype(np.float64).copy()
    if convention == "half":
        out[..., :half], out[..., half : 2 * half] = z.real, z.imag
    else:
        out[..., 0 : 2 * half : 2], out[..., 1 : 2 * half : 2] = z.real, z.imag
    return out


@pytest.mark.parametrize("convention", ["half", "interleaved"])
@pytest.mark.parametrize("rotary_dim", [None, 8])
class TestRotation:
    def test_rotation_equals_complex_multiplication(self, rng, convention, rotary_dim):
        """Each pair (a, b) turns as a + ib times e^{iθ}; unrotated coordinates pass through."""
        spec = RotarySpec(theta=10_000.0, convention=convention, rotary_dim=rotary_dim)
        positions = np.arange(50) * 3
        x = rng.standard_normal((2, 50, 16)).astype(np.float32)
        cos, sin = cos_sin(spec, 16, positions)
        angles = np.arctan2(sin, cos).astype(np.float64)

        rotated = apply_rotary(x, cos, sin, convention)

        np.testing.assert_allclose(rotated, _complex_reference(x, angles, convention), atol=1e-5)

    def test_derotation_undoes_rotation(self, rng, convention, rotary_dim):
        """apply_rotary(inverse=True) returns the keys a model had before rotating them."""
        spec = RotarySpec(theta=500_000.0, convention=convention, rotary_dim=rotary_dim)
        x = rng.standard_normal((3, 2048, 16)).astype(np.float32)
        cos, sin = cos_sin(spec, 16, np.arange(2048))

        back = apply_rotary(
            apply_rotary(x, cos, sin, convention), cos, sin, convention, inverse=True
        )

        np.testing.assert_allclose(back, x, atol=1e-5)


class TestSpecs:
    def test_inverse_frequencies_follow_theta_power_law(self):
        """ω_i = θ^(−2i/r) for the rotated dims r."""
        omega = RotarySpec(theta=10_000.0, rotary_dim=8).inverse_frequencies(16)

        np.testing.assert_allclose(omega, 10_000.0 ** (-np.arange(0, 8, 2) / 8), rtol=1e-6)

    def test_rotation_depends_only_on_relative_position(self, rng):
        """⟨R(p)q, R(p')k⟩ is unchanged when both positions shift: what attention relies on."""
        spec = RotarySpec(theta=10_000.0)
        q, k = rng.standard_normal((2, 1, 32)).astype(np.float32)

        def score(p: int, p2: int) -> float:
            cq, sq = cos_sin(spec, 32, [p])
            ck, sk = cos_sin(spec, 32, [p2])
            rotated_q, rotated_k = apply_rotary(q, cq, sq, "half"), apply_rotary(k, ck, sk, "half")
            return float((rotated_q @ rotated_k.T)[0, 0])

        assert score(5, 2) == pytest.approx(score(105, 102), rel=1e-4)

    def test_odd_rotary_dim_is_a_dimension_mismatch(self):
        """Rotation works on pairs, so an odd count of rotated dims is refused."""
        with pytest.raises(DimensionMismatch):
            RotarySpec(rotary_dim=7).rotated_dims(16)

    def test_per_layer_bases_share_tables(self):
        """Layers with equal specs share one table; each layer finds its own base."""
        local, full = RotarySpec(theta=10_000.0), RotarySpec(theta=1_000_000.0)

        tables = rotary_tables([local, local, full, local], 8, np.arange(4))

        assert [0, 0, 1, 0] == tables.layer_table.tolist()
        assert 2 == tables.cos.shape[0]


class TestRegistryGeometry:
    def test_gemma_layers_use_their_own_rope_base(self):
        """gemma-3-270m: full-attention layers 5, 11, 17 rotate with base 1e6, others 1e4."""
        geometry = geometry_from_registry("gemma-3-270m")

        thetas = [spec.theta for spec in geometry.rotary]

        assert (18, 1, 256) == (geometry.layers, geometry.kv_heads, geometry.head_dim)
        assert [5, 11, 17] == [i for i, theta in enumerate(thetas) if theta == 1e6]
        assert {1e4, 1e6} == set(thetas)

    def test_smollm2_geometry_and_convention(self):
        """SmolLM2-135M: 30 layers, 3 KV heads, head_dim 64, base 1e5, rotate_half."""
        geometry = geometry_from_registry("smollm2-135m-instruct")

        assert (30, 3, 64) == (geometry.layers, geometry.kv_heads, geometry.head_dim)
        assert {("half", 100_000.0)} == {(s.convention, s.theta) for s in geometry.rotary}

    def test_unknown_and_closed_models_are_not_supported(self):
        """An unknown name and a closed model both give MODEL_NOT_SUPPORTED."""
        with pytest.raises(ModelNotSupported):
            geometry_from_registry("no-such-model-9000")
        with pytest.raises(ModelNotSupported):
            geometry_from_registry("gpt-4")
