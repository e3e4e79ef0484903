"""The stores' request path reads no directory and no file once a pair is known."""

from __future__ import annotations

import numpy as np
import pytest

from latentmas_mesh.alignment import KVAligner, fit_w_matrix, geometry_from_registry
from latentmas_mesh.alignment.hub import UnifiedSpace
from latentmas_mesh.alignment.quality import AlignmentQuality
from latentmas_mesh.artifacts.hub_file import HubFile
from latentmas_mesh.artifacts.kv_map_store import KVMapStore
from latentmas_mesh.artifacts.listing import MISS_REFRESH_S, REFRESH_S_DEFAULT, ListingCache
from latentmas_mesh.artifacts.wmatrix_store import WMatrixStore
from latentmas_mesh.errors import InvalidRequest, WMatrixNotFound

QUALITY = AlignmentQuality(0.9, 0.1, 0.9, 0.8, 10)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _identity(model: str = "smollm2-135m-instruct") -> KVAligner:
    aligner = KVAligner.identity(geometry_from_registry(model))
    aligner.exchange_quality_ = QUALITY
    return aligner


class TestListingCache:
    def test_scans_once_while_fresh_then_again_after_refresh(self, tmp_path):
        """Reads within refresh_s come from memory; the first read after it scans again."""
        clock = Clock()
        cache = ListingCache(lambda d: len(list(d.iterdir())), clock=clock)
        assert 0 == cache.get(tmp_path)
        (tmp_path / "x").touch()
        clock.now += REFRESH_S_DEFAULT - 0.001
        assert 0 == cache.get(tmp_path)
        clock.now += 0.001
        assert 1 == cache.get(tmp_path)
        assert 2 == cache.scans

    def test_a_stricter_age_rescans_an_older_listing_only(self, tmp_path):
        """max_age_s (the miss rule) rescans only a listing older than it."""
        clock = Clock()
        cache = ListingCache(lambda d: 0, clock=clock)
        cache.get(tmp_path)
        clock.now += MISS_REFRESH_S / 2
        cache.get(tmp_path, max_age_s=MISS_REFRESH_S)
        assert 1 == cache.scans
        clock.now += MISS_REFRESH_S
        cache.get(tmp_path, max_age_s=MISS_REFRESH_S)
        assert 2 == cache.scans


class TestKVMapStore:
    def test_repeated_gets_read_no_directory(self, tmp_path):
        """After the first request of a pair, gets are answered from memory."""
        store = KVMapStore(tmp_path)
        store.put(_identity(), source="a", target="b", version="1.0.0")
        first, _ = store.get("a", "b", None)
        scans = store._listing.scans
        for _ in range(50):
            again, version = store.get("a", "b", None)
        assert first is again
        assert "1.0.0" == version
        assert scans == store._listing.scans

    def test_a_version_stored_by_another_process_is_found(self, tmp_path):
        """A pinned version missing from memory makes the store look again (once a second)."""
        clock = Clock()
        reader, writer = KVMapStore(tmp_path, clock=clock), KVMapStore(tmp_path)
        writer.put(_identity(), source="a", target="b", version="1.0.0")
        reader.get("a", "b", None)
        writer.put(_identity("gemma-3-270m"), source="a", target="b", version="1.1.0")
        clock.now += MISS_REFRESH_S
        _, version = reader.get("a", "b", "1.1.0")
        assert "1.1.0" == version

    def test_other_content_under_a_stored_version_is_refused(self, tmp_path):
        """Versions are immutable, which is what lets loaded maps be cached by version."""
        store = KVMapStore(tmp_path)
        store.put(_identity(), source="a", target="b", version="1.0.0")
        store.put(_identity(), source="a", target="b", version="1.0.0")  # same content: no-op
        with pytest.raises(InvalidRequest):
            store.put(_identity("gemma-3-270m"), source="a", target="b", version="1.0.0")

    def test_an_unknown_pair_lists_what_exists(self, tmp_path):
        with pytest.raises(WMatrixNotFound) as error:
            KVMapStore(tmp_path).get("a", "b", "2.0.0")
        assert [] == error.value.details["available"]


def test_wmatrix_store_gets_read_no_directory(tmp_path, rng):
    """WMatrixStore.get and resolve are answered from memory once the pair is listed."""
    x = rng.standard_normal((300, 12))
    store = WMatrixStore(tmp_path)
    store.put(fit_w_matrix(x, x @ rng.standard_normal((12, 10)), unified_dim=8),
              source_model="a", target_model="b")  # fmt: skip
    store.resolve("a", "b")
    scans = store._listing.scans
    for _ in range(20):
        store.resolve("a", "b", method="orthogonal")
    assert scans == store._listing.scans


def test_hub_file_is_read_once_while_unchanged(tmp_path, rng):
    """Composing through the hub reads its file once, then serves the space from memory."""
    clock = Clock()
    hub = HubFile(tmp_path / "hub.safetensors", clock=clock)
    anchors = {"a": rng.standard_normal((200, 12)), "b": rng.standard_normal((200, 10))}
    hub.update(lambda _: UnifiedSpace(6, method="hybrid").fit(anchors))
    for _ in range(10):
        space = hub.read()
        assert space is not None
    clock.now += REFRESH_S_DEFAULT
    hub.read()  # stale: looks at the file, finds it unchanged, reads nothing
    assert 1 == hub.reads
    np.testing.assert_array_equal(
        space.w_matrix("a", "b").affine()[0], hub.read().w_matrix("a", "b").affine()[0]
    )


def test_hub_file_remembers_that_there_is_no_space(tmp_path, rng):
    """With no hub yet, composing asks the disk once per refresh interval, not per request."""
    clock = Clock()
    reader = HubFile(tmp_path / "hub.safetensors", clock=clock)
    assert reader.read() is None
    anchors = {"a": rng.standard_normal((200, 12)), "b": rng.standard_normal((200, 10))}
    HubFile(tmp_path / "hub.safetensors").update(
        lambda _: UnifiedSpace(6, method="hybrid").fit(anchors)
    )
    assert reader.read() is None  # still fresh: remembered, not looked up
    clock.now += REFRESH_S_DEFAULT
    assert reader.read() is not None
