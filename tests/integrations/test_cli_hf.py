"""`latentmas hf ...` commands: prepare the models and export anchor activations."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import latentmas_mesh.cli.hf  # noqa: F401  # registers the `hf` commands on the app
from latentmas_mesh.cli.app import app

pytestmark = pytest.mark.realmodel


@pytest.fixture(scope="module")
def runner() -> CliRunner:
    return CliRunner()


class TestHfCommands:
    def test_prepare_reports_the_converted_directory(self, runner: CliRunner, model_a):
        """`hf prepare MODEL` prints where the safetensors copy lies."""
        result = runner.invoke(app, ["hf", "prepare", model_a.name])

        assert 0 == result.exit_code
        assert f"models/{model_a.name}" in result.output

    def test_export_anchors_writes_a_manifest_of_the_passages(
        self, runner: CliRunner, model_a, tmp_path: Path
    ):
        """`hf export-anchors MODEL DIR --limit 1` writes one passage file and its manifest."""
        result = runner.invoke(
            app,
            ["hf", "export-anchors", model_a.name, str(tmp_path), "--limit", "1",
             "--tokens-max", "8", "--no-hidden"],
        )  # fmt: skip
        manifest = json.loads((tmp_path / "manifest.json").read_text(encoding="utf-8"))

        assert 0 == result.exit_code
        assert ["austen-pride-000"] == manifest["passage_ids"]
        assert manifest["hidden_states"] is False
