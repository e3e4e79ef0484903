"""The unified-space hub: N charts, composition, registration, and direct pairwise fits compared."""

from __future__ import annotations

import numpy as np
import pytest

from latentmas_mesh.alignment import fit_w_matrix
from latentmas_mesh.alignment.hub import UnifiedSpace
from latentmas_mesh.artifacts.maps import load_space, save_space
from latentmas_mesh.errors import DimensionMismatch, WMatrixNotFound

LATENT = 12
DIMS = {"a": 32, "b": 48, "c": 24}


@pytest.fixture
def anchors(rng) -> dict[str, np.ndarray]:
    """Three 'models' reading one 12-d latent through different linear maps, with 2% noise."""
    z = rng.standard_normal((1200, LATENT)) * np.linspace(2.0, 0.5, LATENT)
    out = {}
    for name, dim in DIMS.items():
        clean = z @ rng.standard_normal((LATENT, dim)) + rng.normal(size=dim)
        out[name] = clean + 0.02 * clean.std() * rng.standard_normal(clean.shape)
    return out


class TestHub:
    @pytest.mark.parametrize("method", ["learned", "hybrid"])
    def test_composed_maps_recover_the_shared_latent(self, anchors, method):
        """W(a->c) composed through the hub (c registered later) reaches near-perfect quality."""
        space = UnifiedSpace(16, method=method).fit({"a": anchors["a"], "b": anchors["b"]})
        space.register("c", anchors["c"])

        quality = space.w_matrix("a", "c").quality

        assert quality.cosine_similarity > 0.999
        assert quality.information_retention > 0.99

    def test_orthogonal_charts_cannot_express_a_general_linear_relation(self, anchors):
        """Models related by a non-orthogonal map keep a clear error under orthogonal charts,
        as a direct orthogonal fit does: norms and angles are preserved, not re-shaped."""
        space = UnifiedSpace(16).fit(anchors)

        quality = space.w_matrix("a", "c").quality

        assert 0.85 < quality.cosine_similarity < 0.98

    def test_n_models_need_n_charts(self, anchors):
        """Three models give three charts and six directed maps by composition."""
        space = UnifiedSpace(16).fit(anchors)

        maps = [space.w_matrix(s, t) for s in DIMS for t in DIMS if s != t]

        assert ["a", "b", "c"] == space.models
        assert 6 == len(maps)

    def test_registering_a_model_leaves_the_others_untouched(self, anchors):
        """Adding c changes neither the unified coordinates nor a's and b's charts."""
        space = UnifiedSpace(16).fit({"a": anchors["a"], "b": anchors["b"]})
        before = (space.reference_.copy(), space.chart("a").encoder.copy())

        space.register("c", anchors["c"])

        np.testing.assert_array_equal(before[0], space.reference_)
        np.testing.assert_array_equal(before[1], space.chart("a").encoder)

    def test_orthogonal_chart_is_a_scaled_isometry_of_the_principal_subspace(self, anchors):
        """The orthogonal encoder's columns are orthogonal with one common length."""
        space = UnifiedSpace(16).fit(anchors)
        encoder = space.chart("b").encoder

        gram = encoder.T @ encoder

        np.testing.assert_allclose(gram, gram[0, 0] * np.eye(16), atol=1e-10)

    @pytest.mark.parametrize("method", ["orthogonal", "learned", "hybrid"])
    def test_composition_compares_with_a_direct_pairwise_fit(self, anchors, method):
        """On the same held-out rows the hub composition is within 0.005 cosine and 0.01 R² of
        a direct pairwise fit (measured: 0.9284 vs 0.9289 orthogonal, 0.9996 both otherwise)."""
        space = UnifiedSpace(16, method=method).fit(anchors)
        hub = space.w_matrix("a", "c").quality
        direct = fit_w_matrix(anchors["a"], anchors["c"], method=method, unified_dim=16).quality

        assert hub.heldout_rows == direct.heldout_rows
        assert abs(direct.cosine_similarity - hub.cosine_similarity) < 0.005
        assert abs(direct.information_retention - hub.information_retention) < 0.01

    def test_unknown_model_is_w_matrix_not_found(self, anchors):
        """A model that never registered has no chart to compose with."""
        space = UnifiedSpace(16).fit({"a": anchors["a"], "b": anchors["b"]})

        with pytest.raises(WMatrixNotFound):
            space.w_matrix("a", "z")

    def test_registration_needs_the_same_anchor_rows(self, anchors):
        """A model with activations on other rows cannot be charted."""
        space = UnifiedSpace(16).fit({"a": anchors["a"]})

        with pytest.raises(DimensionMismatch):
            space.register("c", anchors["c"][:-1])

    def test_save_and_load_keeps_every_chart(self, anchors, tmp_path):
        """A reloaded space composes the same maps."""
        space = UnifiedSpace(16, method="hybrid").fit(anchors)
        save_space(tmp_path / "hub.safetensors", space)

        loaded = load_space(tmp_path / "hub.safetensors")

        assert space.w_matrix("c", "a").content_hash == loaded.w_matrix("c", "a").content_hash
