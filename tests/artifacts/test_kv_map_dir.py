"""A KV map as a directory others can read (manifest, per-layer weights, SHA256SUMS): round
trip, the layout, the earlier one-file maps, and failing closed on anything that is off."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from latentmas_mesh.alignment import geometry_from_registry
from latentmas_mesh.artifacts.kv_map_dir import (
    FORMAT,
    MANIFEST,
    RETENTION_DEFINITION,
    SUMS,
    WEIGHTS,
    read_kv_map,
    write_kv_map,
)
from latentmas_mesh.artifacts.kv_map_store import KVMapStore
from latentmas_mesh.artifacts.maps import save_kv_aligner
from latentmas_mesh.errors import InvalidRequest
from tests.workers_align.conftest import GEMMA, SMOL, fitted_smol_to_gemma, kv_cache

PROVENANCE = {"method": "closed-form ridge", "fit": {"anchor_corpus_sha256": "ab" * 32}}


@pytest.fixture
def aligner(rng):
    return fitted_smol_to_gemma(rng)


@pytest.fixture
def stored(tmp_path, aligner):
    directory = tmp_path / "1.0.0"
    write_kv_map(directory, aligner, source=SMOL, target=GEMMA, version="1.0.0",
                 provenance=PROVENANCE)  # fmt: skip
    return directory


class TestLayout:
    def test_the_directory_reads_back_as_the_same_maps(self, stored, aligner, rng):
        loaded, manifest = read_kv_map(stored)
        cache = kv_cache(SMOL, rng)

        assert aligner.content_hash == loaded.content_hash
        assert aligner.quality == loaded.quality
        np.testing.assert_array_equal(
            aligner.align(cache.keys, cache.values)[0], loaded.align(cache.keys, cache.values)[0]
        )
        assert (FORMAT, SMOL, GEMMA, "1.0.0") == (
            manifest["format"], manifest["source_model"], manifest["target_model"],
            manifest["version"],
        )  # fmt: skip

    def test_files_names_and_what_the_manifest_says(self, stored, aligner):
        weights = load_file(str(stored / WEIGHTS))
        manifest = json.loads((stored / MANIFEST).read_text())
        layers = geometry_from_registry(GEMMA).layers

        assert {MANIFEST, WEIGHTS, SUMS} == {path.name for path in stored.iterdir()}
        assert {f"target.{layer}.{kind}.{part}" for layer in range(layers) for kind in "kv"
                for part in ("W", "b", "inputs")} == set(weights)  # fmt: skip
        assert PROVENANCE == manifest["provenance"]
        assert RETENTION_DEFINITION == manifest["quality"]["definition"]
        assert aligner.quality.to_dict() == manifest["quality"]["held_out"]
        assert geometry_from_registry(SMOL).to_json() == manifest["source_geometry"]
        assert {f"{name}" for name in (MANIFEST, WEIGHTS)} == {
            line.split("  ")[1] for line in (stored / SUMS).read_text().splitlines()
        }


class TestFailsClosed:
    @pytest.mark.parametrize("name", [MANIFEST, WEIGHTS])
    def test_a_changed_file_is_refused(self, stored, name):
        path = stored / name
        data = bytearray(path.read_bytes())
        data[-2] ^= 0x01
        path.write_bytes(bytes(data))

        with pytest.raises(InvalidRequest, match="SHA-256"):
            read_kv_map(stored)

    @pytest.mark.parametrize("name", [MANIFEST, WEIGHTS, SUMS])
    def test_a_missing_file_is_refused(self, stored, name):
        (stored / name).unlink()

        with pytest.raises(InvalidRequest):
            read_kv_map(stored)

    def test_weights_rewritten_with_their_sums_still_fail_the_content_hash(self, stored):
        """Someone edits a tensor and recomputes SHA256SUMS: the manifest's content hash of
        the arrays still refuses it."""
        import hashlib

        weights = load_file(str(stored / WEIGHTS))
        weights["target.0.k.b"] = weights["target.0.k.b"] + 1
        save_file(weights, str(stored / WEIGHTS))
        sums = "".join(
            f"{hashlib.sha256((stored / n).read_bytes()).hexdigest()}  {n}\n"
            for n in (MANIFEST, WEIGHTS)
        )
        (stored / SUMS).write_text(sums)

        with pytest.raises(InvalidRequest, match="content hash"):
            read_kv_map(stored)


class TestStore:
    def test_put_writes_a_directory_and_a_one_file_map_still_reads(self, tmp_path, aligner):
        store = KVMapStore(tmp_path)
        store.put(aligner, source=SMOL, target=GEMMA, version="1.1.0", provenance=PROVENANCE)
        pair = tmp_path / f"{SMOL}__{GEMMA}"
        save_kv_aligner(pair / "1.0.0.safetensors", aligner)

        listed = KVMapStore(tmp_path).versions(SMOL, GEMMA)
        old, _ = KVMapStore(tmp_path).get(SMOL, GEMMA, "1.0.0")

        assert (pair / "1.1.0" / MANIFEST).is_file()
        assert ("1.0.0", "1.1.0") == listed
        assert aligner.content_hash == old.content_hash
        assert PROVENANCE == store.manifest(SMOL, GEMMA, "1.1.0")["provenance"]
        assert store.manifest(SMOL, GEMMA, "1.0.0") is None

    def test_a_write_in_progress_is_not_a_version(self, tmp_path, aligner):
        pair = tmp_path / f"{SMOL}__{GEMMA}"
        (pair / ".1.0.0.abc").mkdir(parents=True)

        assert () == KVMapStore(tmp_path).versions(SMOL, GEMMA)

    def test_the_same_content_again_is_a_no_op_and_other_content_refused(self, tmp_path, rng):
        store = KVMapStore(tmp_path)
        first = fitted_smol_to_gemma(rng)
        store.put(first, source=SMOL, target=GEMMA, version="1.0.0")
        store.put(first, source=SMOL, target=GEMMA, version="1.0.0")

        with pytest.raises(InvalidRequest, match="other content"):
            store.put(fitted_smol_to_gemma(rng), source=SMOL, target=GEMMA, version="1.0.0")
