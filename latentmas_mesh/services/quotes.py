"""Signed quotes by the spec's formula (7.4.2): the one place a price is computed and signed.

The ledger signs with it; so does a market worker that holds the ledger's quote key (same
host, LATENTMAS_LEDGER_QUOTE_KEY_FILE), saving a round trip to the ledger per quote: the
ledger verifies every quote a reservation carries against the same key either way.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable

from latentmas_mesh.market import (
    PriceSchedule,
    PricingFactors,
    asset_price_units,
    factors,
    issue_quote,
)
from latentmas_mesh.protocol.ledger import Quote, QuoteRequest
from latentmas_mesh.registry import Registry
from latentmas_mesh.units import AssetType


@dataclasses.dataclass(frozen=True, slots=True)
class Pricing:
    """The formula's inputs that are configuration: the schedule and the registry's tiers."""

    schedule: PriceSchedule
    registry: Registry

    def factors(self, model: str, tokens: int, quality: float, similar: int) -> PricingFactors:
        """The four normalised factors of an asset of `model` (unknown: MODEL_NOT_SUPPORTED)."""
        spec = self.registry.get(model)
        return factors(
            tokens=tokens,
            tokens_cap=self.schedule.tokens_cap,
            tier=spec.capability_tier,
            tier_count=max(len(self.registry.tier_scale), spec.capability_tier),
            quality=quality,
            similar_assets=similar,
        )

    def price_units(
        self, asset_type: AssetType, model: str, tokens: int, quality: float, similar: int
    ) -> int:
        """What a quote asked now charges for one use (or purchase)."""
        weighted = self.factors(model, tokens, quality, similar)
        return asset_price_units(self.schedule, asset_type, weighted)


@dataclasses.dataclass(frozen=True, slots=True)
class QuoteSigner:
    """Prices a request (`pricing`) and signs its terms with the ledger's quote key."""

    key: bytes
    pricing: Pricing
    currency: str = "credit"
    ttl_ms_max: int = 60_000

    def quote(self, request: QuoteRequest, now_ms: int) -> Quote:
        price = self.pricing.price_units(request.asset_type, request.source_model,
                                         request.tokens, request.quality,
                                         request.similar_assets)  # fmt: skip
        signed = issue_quote(
            key=self.key, quote_id=uuid.uuid4().hex, asset_type=request.asset_type,
            asset_id=request.asset_id, creator=request.creator, validators=request.validators,
            price_units=price, currency=self.currency, now_ms=now_ms,
            ttl_ms=min(request.ttl_ms, self.ttl_ms_max),
        )  # fmt: skip
        fields = {f.name: getattr(signed.terms, f.name) for f in dataclasses.fields(signed.terms)}
        return Quote(**fields, signature=signed.signature)


@dataclasses.dataclass(frozen=True, slots=True)
class LocalQuoter:
    """A market's Quoter that signs itself (see the module), on its own clock."""

    signer: QuoteSigner
    clock: Callable[[], int]

    def quote(self, request: QuoteRequest) -> Quote:
        return self.signer.quote(request, self.clock())


__all__ = ["LocalQuoter", "Pricing", "QuoteSigner"]
