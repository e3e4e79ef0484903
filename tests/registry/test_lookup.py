"""Looking models up by name or alias, and what an unknown name answers."""

from __future__ import annotations

import pytest

from latentmas_mesh.errors import ErrorCode, ModelNotSupported
from latentmas_mesh.registry import Registry


class TestGet:
    def test_canonical_name_and_alias_resolve_to_the_same_entry(self, registry: Registry):
        """An HF repo id and a spelling variant find the canonical entry."""
        expected = "llama-3-8b"

        assert expected == registry.get("meta-llama/Meta-Llama-3-8B-Instruct").name
        assert expected == registry.get("llama3-8b").name

    @pytest.mark.parametrize("spelling", ["LLAMA-3-8B", "Llama3-8B", "  llama-3-8b  "])
    def test_lookup_ignores_case_and_outer_whitespace(self, registry: Registry, spelling: str):
        """Names match case-insensitively, so clients need not know the canonical spelling."""
        assert "llama-3-8b" == registry.get(spelling).name

    def test_contains_reports_known_and_unknown_names(self, registry: Registry):
        """`in` answers without raising."""
        assert "GPT-4" in registry
        assert "gpt-5000" not in registry

    def test_unknown_name_raises_model_not_supported_with_spec_resolution(self, registry: Registry):
        """C.2: an unknown model is MODEL_NOT_SUPPORTED, resolved by "Request model addition"."""
        with pytest.raises(ModelNotSupported) as caught:
            registry.get("llama-9-8b")

        wire = caught.value.to_wire()
        assert ErrorCode.MODEL_NOT_SUPPORTED.value == wire["code"]
        assert "Request model addition" == wire["resolution"]
        assert "llama-9-8b" == wire["details"]["model"]

    def test_unknown_name_suggests_close_matches(self, registry: Registry):
        """A near-miss spelling lists the intended model among the suggestions."""
        with pytest.raises(ModelNotSupported) as caught:
            registry.get("llama-3-8")

        assert "llama-3-8b" in caught.value.details["suggestions"]


class TestModels:
    def test_family_filter_accepts_slug_and_display_name(self, registry: Registry):
        """`models("llama")` and `models("Meta LLaMA")` list the same models."""
        by_slug = [m.name for m in registry.models("llama")]

        assert by_slug == [m.name for m in registry.models("meta llama")]
        assert "llama-3.1-405b" in by_slug
        assert all(m.family == "llama" for m in registry.models("LLAMA"))

    def test_unknown_family_lists_nothing(self, registry: Registry):
        """Filtering by a family nobody belongs to gives an empty list, not an error."""
        assert [] == registry.models("no-such-family")

    def test_unfiltered_list_holds_every_model_once(self, registry: Registry):
        """`models()` has one entry per canonical name."""
        names = [m.name for m in registry.models()]

        assert len(names) == len(set(names)) == len(registry)
