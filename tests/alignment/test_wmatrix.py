"""W-matrix estimators on synthetic paired data with known ground truth."""

from __future__ import annotations

import numpy as np
import pytest

from latentmas_mesh.alignment import (
    QualityThresholds,
    WMatrix,
    check_quality,
    cycle_consistency,
    fit_w_matrix,
)
from latentmas_mesh.alignment.ridge import RELATIVE_ALPHAS, fit_ridge
from latentmas_mesh.artifacts.maps import load_wmatrix, save_wmatrix
from latentmas_mesh.errors import (
    DimensionMismatch,
    InternalError,
    InvalidRequest,
    QualityBelowThreshold,
)
from tests.alignment.conftest import Paired, anisotropic_rows


class TestOrthogonal:
    def test_recovers_a_scaled_rotation_exactly(self, rotated: Paired):
        """On y = c·x·Q + b the orthogonal map's affine form is c·Q and b to machine precision."""
        wmatrix = fit_w_matrix(rotated.x, rotated.y, method="orthogonal", unified_dim=64)

        matrix, bias = wmatrix.affine()

        np.testing.assert_allclose(matrix, rotated.matrix, atol=1e-10)
        np.testing.assert_allclose(bias, rotated.bias, atol=1e-9)
        assert 1.0 == pytest.approx(wmatrix.quality.cosine_similarity, abs=1e-12)

    def test_core_preserves_norms_and_angles_exactly(self, linear: Paired, rng):
        """Inside the unified space the orthogonal map is a rotation: norms and angles stay."""
        wmatrix = fit_w_matrix(linear.x, linear.y, method="orthogonal", unified_dim=32)
        core = wmatrix.core_
        u, v = rng.standard_normal((2, 32))

        np.testing.assert_allclose(core.T @ core, np.eye(32), atol=1e-12)
        assert np.linalg.norm(u) == pytest.approx(np.linalg.norm(u @ core), rel=1e-12)
        assert u @ v == pytest.approx((u @ core) @ (v @ core), rel=1e-10, abs=1e-12)

    def test_isometric_embedding_into_a_larger_model_is_recovered(self, rng):
        """A 24-d source isometrically embedded in a 40-d target maps back with cosine 1."""
        x = anisotropic_rows(rng, 400, 24)
        embed, _ = np.linalg.qr(rng.standard_normal((40, 24)))
        y = x @ embed.T

        quality = fit_w_matrix(x, y, method="orthogonal", unified_dim=128).quality

        assert 1.0 == pytest.approx(quality.cosine_similarity, abs=1e-10)
        assert quality.euclidean_distance < 1e-10


class TestLearned:
    def test_recovers_a_general_linear_map(self, linear: Paired):
        """Ridge plus scaling recovers M of a noisy y = x·M + b to within the noise."""
        wmatrix = fit_w_matrix(linear.x, linear.y, method="learned", unified_dim=56)

        matrix, _ = wmatrix.affine()

        assert np.abs(matrix - linear.matrix).max() < 0.05
        assert wmatrix.quality.information_retention > 0.99

    def test_ridge_penalty_is_small_for_clean_data_and_large_for_noise(self, rng):
        """Noise-free targets pick the smallest penalty; a target unrelated to x the largest."""
        x = anisotropic_rows(rng, 500, 20)
        clean = x @ rng.standard_normal((20, 20))
        unrelated = rng.standard_normal((500, 20))

        clean_fit = WMatrix("learned", 20).fit(x, clean)
        noise_fit = WMatrix("learned", 20).fit(x, unrelated)

        assert RELATIVE_ALPHAS[0] == clean_fit.alpha_
        assert noise_fit.alpha_ > 100 * clean_fit.alpha_

    def test_scaling_factors_stay_near_one_with_plentiful_data(self, linear: Paired):
        """With 1,500 clean-ish rows ridge barely shrinks, so the per-dimension scales are ~1."""
        wmatrix = fit_w_matrix(linear.x, linear.y, method="learned", unified_dim=40)

        assert np.abs(wmatrix.scaling_ - 1.0).mean() < 0.02
        assert np.abs(wmatrix.scaling_ - 1.0).max() < 0.1


class TestHybrid:
    def test_matches_orthogonal_when_the_truth_is_a_rotation(self, rotated: Paired):
        """The hybrid refinement has nothing to add to an exact rotation."""
        wmatrix = fit_w_matrix(rotated.x, rotated.y, method="hybrid", unified_dim=64)

        matrix, _ = wmatrix.affine()

        assert np.abs(matrix - rotated.matrix).max() < 1e-3

    def test_beats_orthogonal_when_the_truth_is_not_a_rotation(self, linear: Paired):
        """On a general linear map the learned refinement lowers the held-out error."""
        orthogonal = fit_w_matrix(linear.x, linear.y, method="orthogonal", unified_dim=56)
        hybrid = fit_w_matrix(linear.x, linear.y, method="hybrid", unified_dim=56)

        assert hybrid.quality.euclidean_distance < 0.5 * orthogonal.quality.euclidean_distance


class TestHeldOutQuality:
    def test_split_parts_are_disjoint_and_cover_every_row(self, linear: Paired):
        """Train, validation and held-out rows never overlap."""
        split = fit_w_matrix(linear.x, linear.y, method="hybrid").split_
        parts = [set(split.train), set(split.validation), set(split.holdout)]

        assert set() == (parts[0] & parts[1]) | (parts[0] & parts[2]) | (parts[1] & parts[2])
        assert set(range(1500)) == parts[0] | parts[1] | parts[2]

    @pytest.mark.parametrize("method", ["orthogonal", "learned", "hybrid"])
    def test_choices_and_quality_do_not_depend_on_held_out_rows(self, linear: Paired, rng, method):
        """Garbage in every held-out row collapses the measured quality (the measured map never
        saw them) and leaves α and the scaling alone; the shipped refit does read them."""
        first = fit_w_matrix(linear.x, linear.y, method=method, unified_dim=32)
        holdout = first.split_.holdout
        x, y = linear.x.copy(), linear.y.copy()
        x[holdout] = rng.standard_normal((holdout.size, x.shape[1])) * 100
        y[holdout] = rng.standard_normal((holdout.size, y.shape[1])) * 100

        second = fit_w_matrix(x, y, method=method, unified_dim=32)

        np.testing.assert_array_equal(holdout, second.split_.holdout)
        assert first.alpha_ == second.alpha_
        np.testing.assert_array_equal(first.scaling_, second.scaling_)
        assert first.content_hash != second.content_hash
        assert second.quality.cosine_similarity < 0.5 < first.quality.cosine_similarity

    def test_learned_at_full_rank_is_plain_ridge_on_every_row(self, rng):
        """The shipped learned map at full rank is at least plain ridge fitted on the same rows,
        measured on fresh rows (it used to hold 40% of them back and never refit)."""
        x = anisotropic_rows(rng, 240, 24)
        matrix = rng.standard_normal((24, 16))

        def noisy(rows):
            return rows @ matrix + 2.0 * rng.standard_normal((rows.shape[0], 16))

        y = noisy(x)
        fresh_x = anisotropic_rows(rng, 4000, 24)
        fresh_y = noisy(fresh_x)
        learned = fit_w_matrix(x, y, method="learned", unified_dim=16)
        xc, yc = x - x.mean(axis=0), y - y.mean(axis=0)
        weight = fit_ridge(xc, yc, learned.alpha_)
        ridge = (fresh_x - x.mean(axis=0)) @ weight + y.mean(axis=0)

        def mse(predicted):
            return float(np.mean((predicted - fresh_y) ** 2))

        assert mse(learned.transform(fresh_x)) <= 1.02 * mse(ridge)

    @pytest.mark.parametrize("method", ["learned", "hybrid"])
    def test_below_full_rank_is_at_least_reduced_rank_ridge_on_every_row(self, rng, method):
        """At d_u < d_t the map is at least reduced-rank ridge fitted on the same rows (ridge,
        then its prediction projected on its own top-d_u principal directions), measured on
        fresh rows, even when the target has loud directions the source cannot predict (its
        principal chart would spend the rank on them: 16-24% worse, before)."""
        source_dim, target_dim, unified_dim = 32, 40, 8
        matrix = rng.standard_normal((source_dim, target_dim)) / 4

        def paired(rows):
            x = anisotropic_rows(rng, rows, source_dim)
            y = x @ matrix + 0.5 * rng.standard_normal((rows, target_dim))
            y[:, :4] += 6.0 * rng.standard_normal((rows, 4))  # loud and unpredictable
            return x, y

        x, y = paired(400)
        fresh_x, fresh_y = paired(4000)
        fitted = fit_w_matrix(x, y, method=method, unified_dim=unified_dim)
        xc, yc = x - x.mean(axis=0), y - y.mean(axis=0)
        weight = fit_ridge(xc, yc, fitted.chart_alpha_)
        _, _, vt = np.linalg.svd(xc @ weight, full_matrices=False)
        projection = vt[:unified_dim].T @ vt[:unified_dim]
        reduced_rank = (fresh_x - x.mean(axis=0)) @ weight @ projection + y.mean(axis=0)

        def mse(predicted):
            return float(np.mean((predicted - fresh_y) ** 2))

        assert mse(fitted.transform(fresh_x)) <= 1.01 * mse(reduced_rank)

    def test_groups_stay_on_one_side_of_the_split(self, linear: Paired):
        """Rows of one group (a passage) are either all held out or all used for fitting."""
        groups = np.arange(1500) // 50

        split = fit_w_matrix(linear.x, linear.y, groups=groups).split_

        held = set(groups[split.holdout])
        assert set() == held & set(groups[split.fit])

    def test_confidence_is_a_lower_bound_of_the_mean_cosine(self, linear: Paired):
        """The bootstrap lower bound sits at or below the mean cosine it bounds."""
        quality = fit_w_matrix(linear.x, linear.y, method="orthogonal", unified_dim=8).quality

        assert quality.confidence <= quality.cosine_similarity
        assert 300 == quality.heldout_rows


class TestThresholds:
    def test_low_quality_raises_with_the_measured_figures(self, rng):
        """A map of unrelated data misses the spec's targets and the error carries the figures."""
        x, y = rng.standard_normal((2, 300, 16))
        wmatrix = fit_w_matrix(x, y, method="learned", unified_dim=16)

        with pytest.raises(QualityBelowThreshold) as raised:
            check_quality(wmatrix.quality, QualityThresholds(), method="learned")

        details = raised.value.details
        assert wmatrix.quality.to_dict() == details["measured"]
        assert "information_retention" in details["failed"]
        assert "Try different method" == raised.value.resolution

    def test_good_quality_passes_default_thresholds(self, rotated: Paired):
        """An exact map meets every spec target."""
        wmatrix = fit_w_matrix(rotated.x, rotated.y)

        assert [] == QualityThresholds().failures(wmatrix.quality)


class TestTransform:
    def test_any_leading_shape_is_mapped_on_the_last_axis(self, linear: Paired):
        """[a, b, d_s] maps to [a, b, d_t] exactly as the flattened rows do."""
        wmatrix = fit_w_matrix(linear.x, linear.y, unified_dim=16)
        batch = linear.x[:24].reshape(2, 3, 4, 40)

        mapped = wmatrix.transform(batch)

        assert (2, 3, 4, 56) == mapped.shape
        np.testing.assert_allclose(mapped.reshape(24, 56), wmatrix.transform(linear.x[:24]))

    def test_wrong_last_axis_is_a_dimension_mismatch(self, linear: Paired):
        """A vector of the wrong width is refused with DIMENSION_MISMATCH."""
        wmatrix = fit_w_matrix(linear.x, linear.y, unified_dim=16)

        with pytest.raises(DimensionMismatch):
            wmatrix.transform(np.zeros((3, 39)))

    def test_unpaired_rows_are_a_dimension_mismatch(self, rng):
        """Source and target must have the same number of rows."""
        with pytest.raises(DimensionMismatch):
            fit_w_matrix(rng.normal(size=(20, 4)), rng.normal(size=(21, 4)))

    def test_too_few_rows_and_unknown_methods_are_invalid_requests(self, rng):
        """Seven rows cannot be split three ways; 'magic' is not a method."""
        with pytest.raises(InvalidRequest):
            fit_w_matrix(rng.normal(size=(7, 4)), rng.normal(size=(7, 4)))
        with pytest.raises(InvalidRequest):
            fit_w_matrix(rng.normal(size=(50, 4)), rng.normal(size=(50, 4)), method="magic")  # type: ignore[arg-type]

    def test_identity_map_is_exact(self, rng):
        """WMatrix.identity returns its input unchanged."""
        x = rng.normal(size=(5, 64))

        np.testing.assert_array_equal(x, WMatrix.identity(64, 128).transform(x))


class TestPersistence:
    def test_save_and_load_round_trip_keeps_hash_and_results(self, linear: Paired, tmp_path):
        """A loaded map has the same content hash, quality and outputs as the saved one."""
        wmatrix = fit_w_matrix(linear.x, linear.y, method="hybrid", unified_dim=24)
        path = tmp_path / "w.safetensors"

        digest = save_wmatrix(path, wmatrix)
        loaded = load_wmatrix(path)

        assert digest == loaded.content_hash == wmatrix.content_hash
        assert wmatrix.quality == loaded.quality
        np.testing.assert_array_equal(wmatrix.transform(linear.x), loaded.transform(linear.x))

    def test_tampered_file_fails_its_hash_check(self, linear: Paired, tmp_path):
        """A file whose arrays no longer match its recorded hash is refused."""
        from safetensors import safe_open
        from safetensors.numpy import load_file, save_file

        path = tmp_path / "w.safetensors"
        save_wmatrix(path, fit_w_matrix(linear.x, linear.y, unified_dim=8))
        with safe_open(str(path), framework="numpy") as handle:
            metadata = handle.metadata()
        arrays = load_file(str(path))
        arrays["scaling"] = arrays["scaling"] * 2
        save_file(arrays, str(path), metadata=metadata)

        with pytest.raises(InternalError):
            load_wmatrix(path)


class TestCycleConsistency:
    def test_isometric_pair_cycles_back_exactly(self, rotated: Paired):
        """s -> t -> s through two orthogonal maps of a rotation returns the input."""
        forward = fit_w_matrix(rotated.x, rotated.y, unified_dim=48)
        backward = fit_w_matrix(rotated.y, rotated.x, unified_dim=48)

        cycle = cycle_consistency(forward, backward, rotated.x[:50])

        assert 1.0 == pytest.approx(cycle.cosine_similarity, abs=1e-9)

    def test_lossy_pair_shows_in_the_cycle(self, linear: Paired):
        """A 4-d unified space loses most of a 40-d source, and the cycle shows it."""
        forward = fit_w_matrix(linear.x, linear.y, unified_dim=4)
        backward = fit_w_matrix(linear.y, linear.x, unified_dim=4)

        cycle = cycle_consistency(forward, backward, linear.x[:200] - linear.x.mean(axis=0))

        assert cycle.euclidean_distance > 0.3
