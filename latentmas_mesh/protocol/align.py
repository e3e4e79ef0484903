"""Appendix C.1's align request/response and section 3.5.3's EXCHANGE_MEMORY pair."""

from __future__ import annotations

from typing import Final

from pydantic import Field

from latentmas_mesh.errors import QualityBelowThreshold
from latentmas_mesh.protocol.base import (
    EnvelopeV2,
    ModelName,
    WireFloat,
    WireModel,
    WireStr,
    register_message,
)
from latentmas_mesh.protocol.kv import KVCache
from latentmas_mesh.protocol.ledger import EventId
from latentmas_mesh.protocol.quality import AlignmentQuality
from latentmas_mesh.protocol.wmatrix import VERSION_PATTERN

ALIGN_SERVICE: Final = "latentmas.align"
"""The service that answers these messages and v1's align_vector."""
RESERVATION_ID_DESCRIPTION = (
    "Payment reference: the event id of a reservation the caller made on latentmas.ledger for"
    " this exchange's price (creator and validators as the service states them). Required when"
    " the service charges for exchanges; absent otherwise."
)
MIN_QUALITY_DESCRIPTION = (
    "The least information_retention (0..1: the share of the receiver's own reading of a text"
    " that the maps retain, measured on held-out passages) the caller accepts. Maps measured"
    " below it are refused QUALITY_BELOW_THRESHOLD before anything is aligned, so a priced"
    " exchange is voided, not charged. This project's addition; absent, any stored map serves."
)
REPREFILL_FALLBACK: Final = (
    "re-prefill: send the context as text and let the target model compute its own KV cache"
)
"""The fallback C.2 tells a caller to use when no map (W_MATRIX_NOT_FOUND) or no good enough
map (QUALITY_BELOW_THRESHOLD) carries a cache to the target: named in those errors' details."""


@register_message("align_kv_cache_request")
class AlignKVCacheRequest(EnvelopeV2):
    """Appendix C.1 `POST /api/latentmas/kv-cache/align` body.

    The source model is `kv_cache.source_model`. `w_matrix_version` None means the newest
    version for the pair (the v2.0 SDK call `align_kv_cache(kv, source, target)` names none).
    `reservation_id` (pay-then-deliver, spec 7.4) and `min_quality` are this project's
    additions: the spec's body stays valid without them.
    """

    kv_cache: KVCache
    target_model: ModelName
    w_matrix_version: WireStr | None = Field(default=None, pattern=VERSION_PATTERN)
    reservation_id: EventId | None = Field(default=None, description=RESERVATION_ID_DESCRIPTION)
    min_quality: WireFloat | None = Field(
        default=None, ge=0.0, le=1.0, description=MIN_QUALITY_DESCRIPTION
    )


@register_message("align_kv_cache_response")
class AlignKVCacheResponse(WireModel):
    """Appendix C.1 align response: the cache in the target's space and its measured quality."""

    aligned_kv_cache: KVCache
    alignment_quality: AlignmentQuality


@register_message("exchange_memory_request")
class ExchangeMemoryRequest(EnvelopeV2):
    """Section 3.5.3 EXCHANGE_MEMORY: (kv_source, M_source, M_target, W).

    `source_model` names M_source explicitly; the service resolves it and
    `kv_source.source_model` through the registry (aliases allowed) and refuses a disagreement.
    `reservation_id` pays for the exchange and `min_quality` bounds it (see
    AlignKVCacheRequest).
    """

    kv_source: KVCache
    source_model: ModelName
    target_model: ModelName
    w_matrix_version: WireStr | None = Field(default=None, pattern=VERSION_PATTERN)
    reservation_id: EventId | None = Field(default=None, description=RESERVATION_ID_DESCRIPTION)
    min_quality: WireFloat | None = Field(
        default=None, ge=0.0, le=1.0, description=MIN_QUALITY_DESCRIPTION
    )


@register_message("exchange_memory_response")
class ExchangeMemoryResponse(WireModel):
    """Section 3.5.3 EXCHANGE_MEMORY result: (kv_aligned, quality)."""

    kv_aligned: KVCache
    quality: AlignmentQuality


def require_retention(quality: AlignmentQuality, min_quality: float | None, *, maps: str) -> None:
    """QualityBelowThreshold, with the measured figures and the fallback, when `quality`
    retains less than the caller's `min_quality` (None: no floor); `maps` names them.

    The one reading of `min_quality`: the align service applies it before aligning, the SDK
    again to every reply, so an aligned cache is never silently below what was asked.
    """
    if min_quality is None or quality.information_retention >= min_quality:
        return
    raise QualityBelowThreshold(
        f"the KV maps {maps} retain {quality.information_retention:.4f} of the receiver's own"
        f" reading (information_retention, measured on held-out passages), below the"
        f" min_quality {min_quality} asked for; fall back to {REPREFILL_FALLBACK}",
        details={"metric": "information_retention", "min_quality": min_quality,
                 "measured": quality.model_dump(mode="json"), "maps": maps,
                 "fallback": REPREFILL_FALLBACK},
    )  # fmt: skip


__all__ = [
    "ALIGN_SERVICE",
    "MIN_QUALITY_DESCRIPTION",
    "REPREFILL_FALLBACK",
    "RESERVATION_ID_DESCRIPTION",
    "AlignKVCacheRequest",
    "AlignKVCacheResponse",
    "ExchangeMemoryRequest",
    "ExchangeMemoryResponse",
    "require_retention",
]
