"""Operator registry files: add and override models without a code change, or fail clearly."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from latentmas_mesh.registry import RegistryFileError, default_registry, load_registry

from .conftest import open_entry

WriteExtra = Callable[[Any], Path]


class TestMerge:
    def test_extra_file_adds_a_model(self, write_extra: WriteExtra):
        """A new entry in the operator's file is resolvable by name and alias."""
        path = write_extra({"families": {"acme": "Acme Labs"}, "models": [open_entry("acme-1b")]})

        registry = load_registry(path)

        assert "acme-1b" == registry.get("ACME/acme-1b").name
        assert ["acme-1b"] == [m.name for m in registry.models("Acme Labs")]
        assert len(load_registry()) + 1 == len(registry)

    def test_extra_file_overrides_a_shipped_model(self, write_extra: WriteExtra):
        """An entry with a shipped canonical name replaces it in place, aliases included."""
        override = open_entry("llama-3-8b", family="llama", aliases=["my-llama"], num_layers=4)
        path = write_extra({"models": [override]})

        registry = load_registry(path)

        assert 4 == registry.get("my-llama").num_layers
        assert "llama3-8b" not in registry
        assert len(load_registry()) == len(registry)

    def test_settings_path_feeds_the_default_registry(
        self, write_extra: WriteExtra, monkeypatch: pytest.MonkeyPatch
    ):
        """LATENTMAS_REGISTRY_PATH is what default_registry() merges."""
        monkeypatch.setenv(
            "LATENTMAS_REGISTRY_PATH", str(write_extra({"models": [open_entry("z")]}))
        )
        default_registry.cache_clear()
        try:
            assert "z" == default_registry().get("z").name
        finally:
            default_registry.cache_clear()


class TestMalformed:
    def test_invalid_json_names_the_file(self, write_extra: WriteExtra):
        """Broken JSON is reported with the file's path."""
        path = write_extra("{not json")

        with pytest.raises(RegistryFileError, match="not valid JSON") as caught:
            load_registry(path)

        assert str(path) in str(caught.value)

    def test_invalid_entry_names_the_entry_and_field(self, write_extra: WriteExtra):
        """A bad field is reported as models[i] (name).field."""
        path = write_extra({"models": [open_entry("ok"), open_entry("bad", num_layers=-2)]})

        with pytest.raises(RegistryFileError, match=r"models\[1\] \(bad\)\.num_layers"):
            load_registry(path)

    def test_top_level_list_is_refused(self, write_extra: WriteExtra):
        """The file must be an object with a `models` list."""
        with pytest.raises(RegistryFileError, match="top level must be a JSON object"):
            load_registry(write_extra([open_entry("a")]))

    def test_unknown_key_is_refused(self, write_extra: WriteExtra):
        """A misspelt field fails loudly rather than being ignored."""
        with pytest.raises(RegistryFileError, match="num_layer"):
            load_registry(write_extra({"models": [open_entry("a", num_layer=3)]}))

    def test_alias_stolen_from_a_shipped_model_is_refused(self, write_extra: WriteExtra):
        """An alias may resolve to one model only."""
        path = write_extra({"models": [open_entry("acme-2b", aliases=["llama3-8b"])]})

        with pytest.raises(RegistryFileError, match="claimed by both"):
            load_registry(path)

    def test_missing_file_is_a_clear_error(self, tmp_path: Path):
        """A path that does not exist is reported, not a bare OSError."""
        with pytest.raises(RegistryFileError, match="cannot read registry file"):
            load_registry(tmp_path / "absent.json")
