"""`latentmas models`: the table and the JSON listing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from latentmas_mesh.cli import _register_subcommands, app
from latentmas_mesh.registry import Registry

_register_subcommands()
runner = CliRunner()


class TestModelsCommand:
    def test_json_lists_every_model_with_its_numbers(self, registry: Registry):
        """--json prints one object per model, with the registry's values."""
        result = runner.invoke(app, ["models", "--json"])

        assert 0 == result.exit_code, result.output
        listing = json.loads(result.output)
        assert len(registry) == listing["count"] == len(listing["models"])
        assert [1, 2, 3, 4, 5] == [level["tier"] for level in listing["tier_scale"]]
        smol = next(m for m in listing["models"] if m["name"] == "smollm2-135m-instruct")
        assert (30, 9, 3, 64, 576) == (
            smol["num_layers"],
            smol["num_attention_heads"],
            smol["num_kv_heads"],
            smol["head_dim"],
            smol["hidden_size"],
        )

    def test_family_filter_applies_to_json(self):
        """--family gemini lists only Gemini models."""
        result = runner.invoke(app, ["models", "--family", "gemini", "--json"])

        assert 0 == result.exit_code, result.output
        assert {"gemini"} == {m["family"] for m in json.loads(result.output)["models"]}

    def test_table_shows_names_and_unknown_dimensions(self):
        """The table names each model and prints ? for unpublished numbers."""
        result = runner.invoke(app, ["models", "--family", "gpt"])

        assert 0 == result.exit_code, result.output
        assert "gpt-4o" in result.output
        assert "?" in result.output
        assert "OpenAI GPT" in result.output

    def test_table_shows_rope_scaling(self):
        """A scaled rotary encoding is marked with its type and factor (InternLM2: dynamic x2)."""
        result = runner.invoke(app, ["models", "--family", "internlm"])

        assert (0, True) == (result.exit_code, "dynamicx2" in result.output)

    def test_unknown_family_exits_non_zero_with_the_known_families(self):
        """A family nobody belongs to is an error that lists the real ones."""
        result = runner.invoke(app, ["models", "--family", "nope"])

        assert 1 == result.exit_code
        assert "llama" in result.output

    def test_broken_operator_file_exits_2_naming_the_file(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ):
        """A malformed LATENTMAS_REGISTRY_PATH file is reported in one line, not a traceback."""
        broken = tmp_path / "models.json"
        broken.write_text("{not json", encoding="utf-8")
        monkeypatch.setenv("LATENTMAS_REGISTRY_PATH", str(broken))

        result = runner.invoke(app, ["models"])

        assert (2, True, True) == (
            result.exit_code,
            str(broken) in result.output,
            result.exception is None or isinstance(result.exception, SystemExit),
        )
