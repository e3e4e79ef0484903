"""Pure pricing, quotes and revenue split for the memory, reasoning and capability markets."""

from latentmas_mesh.market._pricing import (
    BASIS_POINTS,
    CHARGE_MODELS,
    ChargeModel,
    PriceSchedule,
    PricingFactors,
    PricingWeights,
    asset_price_units,
    factors,
    price_units,
    quality_factor,
    round_half_up,
    tier_factor,
    tokens_factor,
    uniqueness_factor,
)
from latentmas_mesh.market._quote import (
    QuoteTerms,
    SignedQuote,
    issue_quote,
    verify_quote,
)
from latentmas_mesh.market._split import (
    CREATOR_PERCENT,
    PLATFORM_PERCENT,
    VALIDATORS_PERCENT,
    RevenueSplit,
    split_revenue,
    split_units,
)
from latentmas_mesh.units import PRICE_UNITS_MAX, QUOTE_TTL_MS_MAX, VALIDATORS_MAX, AssetType

__all__ = [
    "BASIS_POINTS",
    "CHARGE_MODELS",
    "CREATOR_PERCENT",
    "PLATFORM_PERCENT",
    "PRICE_UNITS_MAX",
    "QUOTE_TTL_MS_MAX",
    "VALIDATORS_MAX",
    "VALIDATORS_PERCENT",
    "AssetType",
    "ChargeModel",
    "PriceSchedule",
    "PricingFactors",
    "PricingWeights",
    "QuoteTerms",
    "RevenueSplit",
    "SignedQuote",
    "asset_price_units",
    "factors",
    "issue_quote",
    "price_units",
    "quality_factor",
    "round_half_up",
    "split_revenue",
    "split_units",
    "tier_factor",
    "tokens_factor",
    "uniqueness_factor",
    "verify_quote",
]
