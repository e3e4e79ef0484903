"""The versioned W-matrix store: round trips, versions, missing maps and fallbacks."""

from __future__ import annotations

import numpy as np
import pytest

from latentmas_mesh.alignment import WMatrix, fit_w_matrix
from latentmas_mesh.artifacts.wmatrix_store import WMatrixStore
from latentmas_mesh.errors import InvalidRequest, WMatrixNotFound
from tests.alignment.conftest import Paired


@pytest.fixture
def store(tmp_path) -> WMatrixStore:
    return WMatrixStore(tmp_path / "wmatrices")


def _fit(paired: Paired, method: str, unified_dim: int = 16, seed: int = 0) -> WMatrix:
    return fit_w_matrix(
        paired.x, paired.y, method=method, unified_dim=unified_dim, random_state=seed
    )


class TestVersions:
    def test_put_then_get_returns_the_same_map(self, store, linear):
        """A stored map comes back with its hash and its outputs."""
        wmatrix = _fit(linear, "hybrid")
        record = store.put(wmatrix, source_model="org/model-a", target_model="model-b")

        loaded, found = store.get("org/model-a", "model-b", method="hybrid", version="1.0.0")

        assert record == found
        assert wmatrix.content_hash == loaded.content_hash == record.content_hash
        np.testing.assert_array_equal(wmatrix.transform(linear.x), loaded.transform(linear.x))

    def test_new_fits_bump_minor_and_a_new_unified_dimension_bumps_major(self, store, linear):
        """Versions go 1.0.0, 1.1.0, then 2.0.0 when the unified dimension changes."""
        versions = [
            store.put(w, source_model="a", target_model="b").version
            for w in (
                _fit(linear, "orthogonal"),
                _fit(linear, "learned"),
                _fit(linear, "hybrid", unified_dim=8),
            )
        ]

        assert ["1.0.0", "1.1.0", "2.0.0"] == versions

    def test_storing_the_same_content_twice_is_idempotent(self, store, linear):
        """Putting identical content returns the existing record instead of a new version."""
        wmatrix = _fit(linear, "orthogonal")

        first = store.put(wmatrix, source_model="a", target_model="b")
        second = store.put(wmatrix, source_model="a", target_model="b")

        assert first == second
        assert 1 == len(store.records("a", "b"))

    def test_reusing_a_version_for_other_content_is_refused(self, store, linear):
        """An explicit version cannot be overwritten by a different map."""
        store.put(_fit(linear, "orthogonal"), source_model="a", target_model="b", version="3.0.0")

        with pytest.raises(InvalidRequest):
            store.put(_fit(linear, "learned"), source_model="a", target_model="b", version="3.0.0")

    def test_record_converts_to_the_protocol_standard(self, store, linear):
        """The record plus arrays make a valid WMatrixStandard message (section 4.3.3)."""
        wmatrix = _fit(linear, "hybrid")
        record = store.put(wmatrix, source_model="a", target_model="b")

        standard = record.to_standard(wmatrix)

        assert "1.0.0" == standard.version
        assert (16, 16) == standard.transformation_rules.orthogonal_matrix.shape
        assert 16 * 40 + 16 * 56 == standard.quality_metrics.computational_cost


class TestMissing:
    def test_missing_version_is_w_matrix_not_found_listing_what_exists(self, store, linear):
        """A version that was never stored raises W_MATRIX_NOT_FOUND with the available ones."""
        store.put(_fit(linear, "orthogonal"), source_model="a", target_model="b")

        with pytest.raises(WMatrixNotFound) as raised:
            store.get("a", "b", version="9.9.9")

        assert [{"version": "1.0.0", "method": "orthogonal"}] == raised.value.details["available"]
        assert "Use fallback method" == raised.value.resolution

    def test_unknown_pair_is_w_matrix_not_found(self, store):
        """An empty store has nothing to give."""
        with pytest.raises(WMatrixNotFound):
            store.resolve("a", "b")

    def test_pinned_version_never_falls_back(self, store, linear):
        """A caller who pins a missing version gets an error, not another map."""
        store.put(_fit(linear, "orthogonal"), source_model="a", target_model="b")

        with pytest.raises(WMatrixNotFound):
            store.resolve("a", "b", method="orthogonal", version="1.1.0")


class TestFallback:
    def test_missing_method_falls_back_in_the_documented_order(self, store, linear):
        """Asking for hybrid with only orthogonal and learned stored gives orthogonal."""
        store.put(_fit(linear, "learned"), source_model="a", target_model="b")
        store.put(_fit(linear, "orthogonal"), source_model="a", target_model="b")

        resolved = store.resolve("a", "b", method="hybrid")

        assert "orthogonal" == resolved.wmatrix.method
        assert "method:orthogonal" == resolved.fallback

    def test_no_method_named_prefers_hybrid(self, store, linear):
        """With every method stored and none named, the recommended hybrid is served."""
        for method in ("learned", "hybrid", "orthogonal"):
            store.put(_fit(linear, method), source_model="a", target_model="b")

        resolved = store.resolve("a", "b")

        assert ("hybrid", None) == (resolved.wmatrix.method, resolved.fallback)

    def test_pair_without_maps_composes_through_the_hub(self, store):
        """When nothing is stored for the pair, the composition callback supplies the map."""
        resolved = store.resolve("a", "b", compose=lambda s, t: WMatrix.identity(4))

        assert "hub-composition" == resolved.fallback
        assert resolved.record is None
