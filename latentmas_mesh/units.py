"""The protocol's units and bounds, shared by the wire schemas (protocol/) and the market math
(market/) so that neither imports the other: money limits, quote lifetime, asset kinds."""

from __future__ import annotations

from enum import StrEnum
from typing import Final

PRICE_UNITS_MAX: Final = 10**15  # one quadrillion minor units: far above any price, far below 2**63
VALIDATORS_MAX: Final = 64  # validators one settlement may credit
QUOTE_TTL_MS_MAX: Final = 15 * 60 * 1000  # a signed quote is valid for at most 15 minutes


class AssetType(StrEnum):
    """What is sold (spec 7.4.1). Wire-stable values: append, never rename."""

    MEMORY = "memory"  # KV-cache snapshots, per use
    REASONING = "reasoning"  # reasoning chains, per use
    CAPABILITY = "capability"  # static embeddings (v1 capability market), per purchase


__all__ = ["PRICE_UNITS_MAX", "QUOTE_TTL_MS_MAX", "VALIDATORS_MAX", "AssetType"]
