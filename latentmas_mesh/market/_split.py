"""The 80/15/5 revenue split of spec 7.4.3 in integer units: parts always sum to the price."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from latentmas_mesh.errors import InvalidRequest
from latentmas_mesh.units import PRICE_UNITS_MAX, VALIDATORS_MAX

CREATOR_PERCENT: Final = 80
PLATFORM_PERCENT: Final = 15
VALIDATORS_PERCENT: Final = 5


@dataclass(frozen=True, slots=True)
class RevenueSplit:
    """Who gets what of one price, in units. `validators` pairs each validator id with its share."""

    price_units: int
    creator_units: int
    platform_units: int
    validators: tuple[tuple[str, int], ...]

    @property
    def validators_units(self) -> int:
        """The validators' pool: the sum of their shares."""
        return sum(units for _, units in self.validators)


def split_revenue(price_units: int, validators: Sequence[str]) -> RevenueSplit:
    """Split a price 80/15/5 among creator, platform and the validators who attested the asset.

    Rounding rule (nested, round half up), which makes every part a non-decreasing function
    of the price and keeps each within one unit of its exact share:

    1. creator  = round(price × 80/100); rest = price − creator
    2. platform = round(rest × 15/20);   pool = rest − platform
    3. pool is shared equally: each validator gets pool // n, and the first pool % n validators
       in sorted id order get one unit more.

    Each step hands out exactly what it was given, so the parts always sum to the price.
    Largest-remainder (Hamilton) rounding was rejected: it is not monotone in the price
    (the Alabama paradox: 80/15/5 with one validator loses a unit going from some price p to
    p + 1). With no validators, their 5% goes to the platform, which then did the checking.
    Duplicate validator ids are rejected; an id shares once.
    """
    if type(price_units) is not int or not 0 <= price_units <= PRICE_UNITS_MAX:
        msg = f"price_units must be an int in [0, {PRICE_UNITS_MAX}], got {price_units!r}"
        raise InvalidRequest(msg, details={"field": "price_units"})
    ordered = sorted(validators)
    if len(ordered) > VALIDATORS_MAX:
        msg = f"at most {VALIDATORS_MAX} validators share a price, got {len(ordered)}"
        raise InvalidRequest(msg, details={"field": "validators"})
    if len(set(ordered)) != len(ordered):
        msg = "a validator may appear only once in a split"
        raise InvalidRequest(msg, details={"field": "validators"})
    creator, platform, shares = split_units(price_units, len(ordered))
    return RevenueSplit(price_units, creator, platform, tuple(zip(ordered, shares, strict=True)))


def split_units(price_units: int, validators_count: int) -> tuple[int, int, list[int]]:
    """`split_revenue`'s arithmetic alone: (creator, platform, one share per validator in sorted
    id order). For a caller whose price is an int already checked to be in range and whose
    validators are already sorted and distinct (the ledger's events are checked when they are
    built, and the ledger checks that every split it writes sums to its price)."""
    # round(x / d) = floor((2x + d) / 2d): round_half_up in integers, done inline for speed
    creator = (2 * price_units * CREATOR_PERCENT + 100) // 200
    rest = price_units - creator
    if not validators_count:
        return creator, rest, []
    pool_percent = PLATFORM_PERCENT + VALIDATORS_PERCENT
    platform = (2 * rest * PLATFORM_PERCENT + pool_percent) // (2 * pool_percent)
    each, extra = divmod(rest - platform, validators_count)
    return creator, platform, [each + 1] * extra + [each] * (validators_count - extra)
