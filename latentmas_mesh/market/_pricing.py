"""The memory-market price formula of spec 7.4.2 in exact rational arithmetic, in int units."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import StrEnum
from fractions import Fraction
from typing import Final

from latentmas_mesh.errors import InvalidRequest
from latentmas_mesh.units import PRICE_UNITS_MAX, AssetType

BASIS_POINTS: Final = 10_000


class ChargeModel(StrEnum):
    """How often a buyer pays for an asset (spec 7.4.1's "Pricing Model" column)."""

    PER_USE = "per_use"
    PER_PURCHASE = "per_purchase"


CHARGE_MODELS: Final[dict[AssetType, ChargeModel]] = {
    AssetType.MEMORY: ChargeModel.PER_USE,
    AssetType.REASONING: ChargeModel.PER_USE,
    AssetType.CAPABILITY: ChargeModel.PER_PURCHASE,
}


@dataclass(frozen=True, slots=True)
class PricingWeights:
    """alpha, beta, gamma, delta of the formula in basis points; the spec's 30/25/25/20."""

    tokens_bp: int = 3_000
    tier_bp: int = 2_500
    quality_bp: int = 2_500
    uniqueness_bp: int = 2_000

    def __post_init__(self) -> None:
        for name in ("tokens_bp", "tier_bp", "quality_bp", "uniqueness_bp"):
            value = getattr(self, name)
            if type(value) is not int or not 0 <= value <= BASIS_POINTS:
                msg = f"{name} must be an int in [0, {BASIS_POINTS}], got {value!r}"
                raise ValueError(msg)


@dataclass(frozen=True, slots=True)
class PricingFactors:
    """The four normalised factors, each an exact fraction in [0, 1] (build them with `factors`)."""

    tokens: Fraction
    tier: Fraction
    quality: Fraction
    uniqueness: Fraction

    def __post_init__(self) -> None:
        for name in ("tokens", "tier", "quality", "uniqueness"):
            value = getattr(self, name)
            if not isinstance(value, Fraction) or not 0 <= value <= 1:
                msg = f"factor {name} must be a Fraction in [0, 1], got {value!r}"
                raise InvalidRequest(msg, details={"factor": name})


@dataclass(frozen=True, slots=True)
class PriceSchedule:
    """Configuration of the market: base price per asset type, the token cap, the weights."""

    base_units: dict[AssetType, int] = field(
        default_factory=lambda: {
            AssetType.MEMORY: 100,
            AssetType.REASONING: 200,
            AssetType.CAPABILITY: 5_000,
        }
    )
    tokens_cap: int = 32_768
    weights: PricingWeights = field(default_factory=PricingWeights)

    def __post_init__(self) -> None:
        if type(self.tokens_cap) is not int or self.tokens_cap <= 0:
            msg = f"tokens_cap must be a positive int, got {self.tokens_cap!r}"
            raise ValueError(msg)
        for asset_type in AssetType:
            base = self.base_units.get(asset_type)
            if type(base) is not int or not 0 <= base <= PRICE_UNITS_MAX // 2:
                msg = f"base_units[{asset_type}] must be an int in [0, {PRICE_UNITS_MAX // 2}]"
                raise ValueError(msg)


def tokens_factor(tokens: int, tokens_cap: int) -> Fraction:
    """min(tokens, cap) / cap: linear in context length, saturating at the configured cap."""
    _require_int("tokens", tokens, 0)
    _require_int("tokens_cap", tokens_cap, 1)
    return Fraction(min(tokens, tokens_cap), tokens_cap)


def tier_factor(tier: int, tier_count: int) -> Fraction:
    """(tier - 1) / (tier_count - 1): the smallest tier scores 0, the frontier tier scores 1.

    Tiers are the registry's capability tiers (`ModelSpec.capability_tier`, 1 = small ...
    `tier_count` = frontier; the registry's `tier_scale` says what each means).
    With a single tier every model gets factor 1.
    """
    _require_int("tier_count", tier_count, 1)
    _require_int("tier", tier, 1)
    if tier > tier_count:
        msg = f"tier {tier} is beyond the {tier_count} tiers configured"
        raise InvalidRequest(msg, details={"tier": tier, "tier_count": tier_count})
    if tier_count == 1:
        return Fraction(1)
    return Fraction(tier - 1, tier_count - 1)


def quality_factor(quality: float | Fraction) -> Fraction:
    """The alignment quality score (spec 4.3.4, in [0, 1]) as an exact fraction, clamped to [0, 1].

    A float is converted exactly (`Fraction(x)` is the float's binary value); NaN and infinities
    are rejected, never clamped.
    """
    if isinstance(quality, float) and not math.isfinite(quality):
        msg = f"quality must be finite, got {quality!r}"
        raise InvalidRequest(msg, details={"factor": "quality"})
    if isinstance(quality, bool) or not isinstance(quality, float | int | Fraction):
        msg = f"quality must be a number, got {quality!r}"
        raise InvalidRequest(msg, details={"factor": "quality"})
    return min(Fraction(1), max(Fraction(0), Fraction(quality)))


def uniqueness_factor(similar_assets: int) -> Fraction:
    """1 / (1 + similar_assets): 1 for a one-of-a-kind asset, halving with the first near-duplicate.

    `similar_assets` is how many other listings the market judges near-duplicates of this one.
    """
    _require_int("similar_assets", similar_assets, 0)
    return Fraction(1, 1 + similar_assets)


def factors(
    *,
    tokens: int,
    tokens_cap: int,
    tier: int,
    tier_count: int,
    quality: float | Fraction,
    similar_assets: int,
) -> PricingFactors:
    """All four factors normalised by the rules above."""
    return PricingFactors(
        tokens=tokens_factor(tokens, tokens_cap),
        tier=tier_factor(tier, tier_count),
        quality=quality_factor(quality),
        uniqueness=uniqueness_factor(similar_assets),
    )


def price_units(base_units: int, weighted: PricingFactors, weights: PricingWeights) -> int:
    """P = P_base × (1 + α·tokens + β·tier + γ·quality + δ·uniqueness), rounded half up to a unit.

    Exact: the sum is a Fraction, and the only rounding is the last step,
    round(x) = floor(x + 1/2), so a price is the integer nearest the formula (halves go up).
    """
    _require_int("base_units", base_units, 0)
    weighted_sum = (
        weights.tokens_bp * weighted.tokens
        + weights.tier_bp * weighted.tier
        + weights.quality_bp * weighted.quality
        + weights.uniqueness_bp * weighted.uniqueness
    ) / BASIS_POINTS
    exact = base_units * (1 + weighted_sum)
    price = round_half_up(exact)
    if price > PRICE_UNITS_MAX:
        msg = f"price {price} exceeds the maximum of {PRICE_UNITS_MAX} units"
        raise InvalidRequest(msg, details={"price_units": price})
    return price


def asset_price_units(
    schedule: PriceSchedule, asset_type: AssetType, weighted: PricingFactors
) -> int:
    """The price of one use (memory, reasoning) or one purchase (capability) of an asset."""
    return price_units(schedule.base_units[asset_type], weighted, schedule.weights)


def round_half_up(value: Fraction) -> int:
    """floor(value + 1/2) for a non-negative fraction, in integers only."""
    if value < 0:
        msg = f"cannot round a negative amount {value}"
        raise InvalidRequest(msg)
    return (2 * value.numerator + value.denominator) // (2 * value.denominator)


def _require_int(name: str, value: object, minimum: int) -> None:
    """Reject bools, floats and strings where a count is expected; money never passes as a float."""
    if type(value) is not int or value < minimum:
        msg = f"{name} must be an int >= {minimum}, got {value!r}"
        raise InvalidRequest(msg, details={"field": name})
