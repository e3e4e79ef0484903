"""D.2 compatibility tiers for the spec's own examples and the rule's edges."""

from __future__ import annotations

import pytest

from latentmas_mesh.registry import CompatibilityTier, Registry, compatibility, compatibility_tier


class TestSpecExamples:
    def test_llama2_to_llama3_is_high_same_family(self, registry: Registry):
        """D.2: "Same family (e.g., LLaMA-2 -> LLaMA-3)" is high compatibility."""
        result = compatibility(registry.get("llama-2-7b"), registry.get("llama-3-8b"))

        assert (CompatibilityTier.HIGH, "same family") == (result.tier, result.rule)

    def test_gpt4_to_llama3_70b_is_medium(self, registry: Registry):
        """D.2: "Different families, similar size (GPT-4 -> LLaMA-3-70b)" is medium."""
        result = compatibility(registry.get("gpt-4"), registry.get("llama-3-70b"))

        assert CompatibilityTier.MEDIUM == result.tier

    def test_gpt4_to_phi3_is_lower(self, registry: Registry):
        """D.2: "Significantly different architectures (GPT-4 -> Phi-3)" is lower."""
        assert CompatibilityTier.LOW == compatibility_tier(
            registry.get("gpt-4"), registry.get("phi-3-mini")
        )


class TestRule:
    def test_tier_is_symmetric(self, registry: Registry):
        """Aligning a into b and b into a fall in the same tier."""
        names = ["gpt-4", "llama-3-70b", "smollm2-135m-instruct", "gemma-3-270m", "claude-3-haiku"]
        specs = [registry.get(n) for n in names]

        assert all(
            compatibility_tier(a, b) == compatibility_tier(b, a) for a in specs for b in specs
        )

    def test_similar_published_architectures_are_high_across_families(self, registry: Registry):
        """Same attention, positional kind, convention, head_dim and near layer counts: high."""
        result = compatibility(registry.get("llama-3-8b"), registry.get("mistral-7b"))

        assert (CompatibilityTier.HIGH, "similar architecture") == (result.tier, result.rule)

    def test_closed_models_are_never_assumed_similar(self, registry: Registry):
        """GPT-4 -> Claude-3: unpublished architectures cannot be shown similar, so size decides."""
        result = compatibility(registry.get("gpt-4"), registry.get("claude-3-opus"))

        assert CompatibilityTier.MEDIUM == result.tier

    @pytest.mark.parametrize(
        ("tier", "claim"),
        [
            (CompatibilityTier.HIGH, ">95%"),
            (CompatibilityTier.MEDIUM, "90-95%"),
            (CompatibilityTier.LOW, "85-90%"),
        ],
    )
    def test_each_tier_carries_the_spec_claim_text(self, tier: CompatibilityTier, claim: str):
        """The quality range attached to a tier is D.2's wording, kept as a claim."""
        assert claim == tier.spec_quality_claim_text
