"""Compatibility tier of a model pair (spec Appendix D.2), decided from recorded fields only."""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict

from latentmas_mesh.registry._spec import ModelSpec, PositionalKind

# "Similar architecture": layer counts within this factor of each other.
LAYER_RATIO_MAX = 1.5
# "Similar size": capability tiers at most this far apart.
TIER_DISTANCE_MAX = 1


class CompatibilityTier(StrEnum):
    """D.2's three tiers. `spec_quality_claim` is the spec's claimed range, NOT a measurement."""

    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"

    @property
    def spec_quality_claim(self) -> tuple[float, float]:
        """The alignment-quality range D.2 claims for this tier (a claim to measure, not a fact)."""
        return _SPEC_QUALITY_CLAIMS[self]

    @property
    def spec_quality_claim_text(self) -> str:
        """D.2's wording of the claim: ">95%", "90-95%", "85-90%"."""
        return _SPEC_QUALITY_TEXT[self]


_SPEC_QUALITY_CLAIMS = {
    CompatibilityTier.HIGH: (0.95, 1.0),
    CompatibilityTier.MEDIUM: (0.90, 0.95),
    CompatibilityTier.LOW: (0.85, 0.90),
}
_SPEC_QUALITY_TEXT = {
    CompatibilityTier.HIGH: ">95%",
    CompatibilityTier.MEDIUM: "90-95%",
    CompatibilityTier.LOW: "85-90%",
}


class Compatibility(BaseModel):
    """A tier with the rule that produced it, so callers can show why."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tier: CompatibilityTier
    rule: str


def similar_architecture(a: ModelSpec, b: ModelSpec) -> bool:
    """True when both geometries are published and match: same attention kind, same positional
    kind and rotary convention, equal head_dim, and layer counts within LAYER_RATIO_MAX.

    Closed models never qualify: an unpublished architecture cannot be shown similar, so D.2's
    example "GPT-4 -> Claude-3" falls to the size rule (MEDIUM) instead of being assumed HIGH.
    """
    if PositionalKind.UNKNOWN in (a.positional.kind, b.positional.kind):
        return False
    if a.head_dim is None or b.head_dim is None or a.num_layers is None or b.num_layers is None:
        return False
    ratio = max(a.num_layers, b.num_layers) / min(a.num_layers, b.num_layers)
    return (
        a.attention == b.attention
        and a.positional.kind == b.positional.kind
        and a.positional.rotary_convention == b.positional.rotary_convention
        and a.head_dim == b.head_dim
        and ratio <= LAYER_RATIO_MAX
    )


def compatibility(a: ModelSpec, b: ModelSpec) -> Compatibility:
    """D.2: HIGH for the same family or a similar architecture; MEDIUM for different families of
    similar size (capability tiers at most TIER_DISTANCE_MAX apart); LOW otherwise."""
    if a.family.casefold() == b.family.casefold():
        return Compatibility(tier=CompatibilityTier.HIGH, rule="same family")
    if similar_architecture(a, b):
        return Compatibility(tier=CompatibilityTier.HIGH, rule="similar architecture")
    if abs(a.capability_tier - b.capability_tier) <= TIER_DISTANCE_MAX:
        return Compatibility(tier=CompatibilityTier.MEDIUM, rule="different family, similar size")
    return Compatibility(tier=CompatibilityTier.LOW, rule="significantly different")


def compatibility_tier(a: ModelSpec, b: ModelSpec) -> CompatibilityTier:
    """The D.2 tier of aligning `a`'s cache into `b` (symmetric)."""
    return compatibility(a, b).tier
