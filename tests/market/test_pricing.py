"""The memory price formula: normalisation rules, exact arithmetic, rounding, bounds."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from latentmas_mesh.errors import InvalidRequest
from latentmas_mesh.market import (
    CHARGE_MODELS,
    AssetType,
    ChargeModel,
    PriceSchedule,
    PricingFactors,
    PricingWeights,
    asset_price_units,
    factors,
    price_units,
    quality_factor,
    tier_factor,
    tokens_factor,
    uniqueness_factor,
)

unit_fractions = st.fractions(min_value=0, max_value=1, max_denominator=10**6)
all_factors = st.builds(PricingFactors, *([unit_fractions] * 4))


class TestNormalisation:
    def test_tokens_saturate_at_the_cap(self):
        """Context length counts linearly up to the cap and no further."""
        assert (Fraction(1, 4), Fraction(1), Fraction(0)) == (
            tokens_factor(256, 1024),
            tokens_factor(10**9, 1024),
            tokens_factor(0, 1024),
        )

    def test_frontier_tier_scores_one_and_the_smallest_zero(self):
        """Tier 1 of 4 scores 0, tier 4 scores 1, tiers between are evenly spaced."""
        assert [Fraction(0), Fraction(1, 3), Fraction(2, 3), Fraction(1)] == [
            tier_factor(tier, 4) for tier in (1, 2, 3, 4)
        ]

    def test_quality_is_clamped_and_exact(self):
        """Scores outside [0, 1] clamp; inside they keep the float's exact value."""
        assert (Fraction(0), Fraction(1), Fraction(0.9)) == (
            quality_factor(-0.5),
            quality_factor(1.2),
            quality_factor(0.9),
        )

    def test_uniqueness_halves_with_the_first_duplicate(self):
        """A unique asset scores 1, one near-duplicate makes it 1/2, three make it 1/4."""
        assert [Fraction(1), Fraction(1, 2), Fraction(1, 4)] == [
            uniqueness_factor(n) for n in (0, 1, 3)
        ]

    @pytest.mark.parametrize("bad", [float("nan"), float("inf"), "0.5", True])
    def test_non_numeric_or_non_finite_quality_is_rejected(self, bad):
        """NaN, infinity, strings and booleans are not a quality score."""
        with pytest.raises(InvalidRequest):
            quality_factor(bad)

    @pytest.mark.parametrize(("tokens", "cap"), [(-1, 10), (1.0, 10), (5, 0)])
    def test_bad_token_counts_are_rejected(self, tokens, cap):
        """Token counts and caps are non-negative ints (the cap positive)."""
        with pytest.raises(InvalidRequest):
            tokens_factor(tokens, cap)

    def test_tier_beyond_the_configured_count_is_rejected(self):
        """A tier number larger than the tier count is an invalid request."""
        with pytest.raises(InvalidRequest):
            tier_factor(5, 4)


class TestPrice:
    def test_all_factors_at_one_doubles_the_base(self):
        """The weights sum to 100%, so the maximum price is twice the base."""
        ones = PricingFactors(Fraction(1), Fraction(1), Fraction(1), Fraction(1))

        assert 200 == price_units(100, ones, PricingWeights())

    def test_all_factors_at_zero_is_the_base(self):
        """With every factor zero the buyer pays the base price."""
        zeros = PricingFactors(Fraction(0), Fraction(0), Fraction(0), Fraction(0))

        assert 100 == price_units(100, zeros, PricingWeights())

    def test_weights_follow_the_spec(self):
        """Each factor alone adds its weight: 30% tokens, 25% tier, 25% quality, 20% uniqueness."""
        one, zero = Fraction(1), Fraction(0)
        weights = PricingWeights()

        assert [130, 125, 125, 120] == [
            price_units(100, PricingFactors(one, zero, zero, zero), weights),
            price_units(100, PricingFactors(zero, one, zero, zero), weights),
            price_units(100, PricingFactors(zero, zero, one, zero), weights),
            price_units(100, PricingFactors(zero, zero, zero, one), weights),
        ]

    def test_halves_round_up(self):
        """1 × (1 + 0.3 × 1/2 + ...) with a result of x.5 rounds to x + 1."""
        half_tokens = PricingFactors(Fraction(1, 2), Fraction(0), Fraction(0), Fraction(0))

        assert 12 == price_units(10, half_tokens, PricingWeights())  # 10 × 1.15 = 11.5 -> 12

    @given(st.integers(min_value=0, max_value=10**12), all_factors)
    def test_price_is_the_nearest_integer_to_the_exact_formula(self, base, weighted):
        """The integer price differs from the exact rational formula by at most half a unit."""
        exact = base * (
            1
            + Fraction(30, 100) * weighted.tokens
            + Fraction(25, 100) * weighted.tier
            + Fraction(25, 100) * weighted.quality
            + Fraction(20, 100) * weighted.uniqueness
        )

        actual = price_units(base, weighted, PricingWeights())

        assert type(actual) is int
        assert abs(actual - exact) <= Fraction(1, 2)

    @given(st.integers(min_value=0, max_value=10**12), all_factors, unit_fractions)
    def test_price_never_falls_when_a_factor_rises(self, base, weighted, raised):
        """More tokens (or tier, quality, uniqueness) never makes an asset cheaper."""
        higher = PricingFactors(
            max(weighted.tokens, raised), weighted.tier, weighted.quality, weighted.uniqueness
        )

        assert price_units(base, weighted, PricingWeights()) <= price_units(
            base, higher, PricingWeights()
        )

    def test_asset_types_use_their_own_base_and_charge_model(self):
        """Memory and reasoning are charged per use, capability per purchase, each from its base."""
        schedule = PriceSchedule()
        weighted = factors(
            tokens=16_384, tokens_cap=32_768, tier=3, tier_count=3, quality=1.0, similar_assets=1
        )

        prices = {t: asset_price_units(schedule, t, weighted) for t in AssetType}

        # 1 + 0.3 × 1/2 + 0.25 + 0.25 + 0.2 × 1/2 = 1.75
        expected = {AssetType.MEMORY: 175, AssetType.REASONING: 350, AssetType.CAPABILITY: 8_750}
        assert expected == prices
        assert ChargeModel.PER_PURCHASE == CHARGE_MODELS[AssetType.CAPABILITY]
        assert ChargeModel.PER_USE == CHARGE_MODELS[AssetType.MEMORY]

    def test_factors_outside_the_unit_interval_are_rejected(self):
        """A factor of 3/2 is not normalised and cannot enter the formula."""
        with pytest.raises(InvalidRequest):
            PricingFactors(Fraction(3, 2), Fraction(0), Fraction(0), Fraction(0))
