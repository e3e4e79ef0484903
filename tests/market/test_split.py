"""Properties of the 80/15/5 revenue split: exact sums, no negatives, monotone, near exact."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from latentmas_mesh.errors import InvalidRequest
from latentmas_mesh.market import PRICE_UNITS_MAX, VALIDATORS_MAX, split_revenue

prices = st.integers(min_value=0, max_value=PRICE_UNITS_MAX)
validator_sets = st.lists(
    st.text(alphabet="abcdefgh", min_size=1, max_size=4), max_size=8, unique=True
)


class TestSplitProperties:
    @given(prices, validator_sets)
    def test_parts_sum_to_the_price_exactly(self, price, validators):
        """Creator, platform and every validator share add up to the price, to the unit."""
        split = split_revenue(price, validators)

        assert price == split.creator_units + split.platform_units + split.validators_units

    @given(prices, validator_sets)
    def test_no_part_is_negative(self, price, validators):
        """Rounding never hands anyone a negative share."""
        split = split_revenue(price, validators)

        parts = [split.creator_units, split.platform_units, *(u for _, u in split.validators)]
        assert [] == [part for part in parts if part < 0]

    @given(st.integers(min_value=0, max_value=PRICE_UNITS_MAX - 1), validator_sets)
    def test_every_part_is_monotone_in_the_price(self, price, validators):
        """One more unit of price never gives any party less (no Alabama paradox)."""
        lower = split_revenue(price, validators)
        higher = split_revenue(price + 1, validators)

        assert lower.creator_units <= higher.creator_units
        assert lower.platform_units <= higher.platform_units
        pairs = zip(lower.validators, higher.validators, strict=True)
        assert all(a <= b for (_, a), (_, b) in pairs)

    @given(prices, validator_sets)
    def test_every_part_is_within_one_unit_of_its_exact_share(self, price, validators):
        """Each share differs from price × percentage by less than one unit."""
        split = split_revenue(price, validators)
        pool = Fraction(price * 5, 100)
        platform_exact = Fraction(price * 15, 100) + (0 if validators else pool)

        assert abs(split.creator_units - Fraction(price * 80, 100)) < 1
        assert abs(split.platform_units - platform_exact) < 1
        assert all(abs(units - pool / len(validators)) < 1 for _, units in split.validators)

    @given(prices, validator_sets)
    def test_split_does_not_depend_on_validator_order(self, price, validators):
        """The same set of validators gets the same shares whatever order they are listed in."""
        assert split_revenue(price, validators) == split_revenue(price, list(reversed(validators)))


class TestSplitExamples:
    def test_round_price_splits_exactly_80_15_5(self):
        """A price of 1,000 units with two validators is 800 / 150 / 25 + 25."""
        split = split_revenue(1_000, ["v2", "v1"])

        assert (800, 150, (("v1", 25), ("v2", 25))) == (
            split.creator_units,
            split.platform_units,
            split.validators,
        )

    def test_leftover_unit_goes_to_the_first_validator_in_id_order(self):
        """An odd validator pool gives its spare unit to the lowest id, deterministically."""
        split = split_revenue(100, ["b", "a"])

        assert (("a", 3), ("b", 2)) == split.validators

    def test_without_validators_the_platform_takes_their_share(self):
        """Nobody attested the asset, so the platform keeps the 5% with its 15%."""
        split = split_revenue(1_000, [])

        assert (800, 200, ()) == (split.creator_units, split.platform_units, split.validators)

    @pytest.mark.parametrize("price", [-1, 1.5, "10", True, PRICE_UNITS_MAX + 1])
    def test_bad_prices_are_rejected(self, price):
        """Negative, fractional, textual, boolean or oversized prices are invalid requests."""
        with pytest.raises(InvalidRequest):
            split_revenue(price, ["v"])

    def test_duplicate_or_too_many_validators_are_rejected(self):
        """A validator shares once, and the list is bounded."""
        with pytest.raises(InvalidRequest):
            split_revenue(100, ["v", "v"])
        with pytest.raises(InvalidRequest):
            split_revenue(100, [f"v{i}" for i in range(VALIDATORS_MAX + 1)])
