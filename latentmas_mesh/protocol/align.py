"""Appendix C.1's align request/response and section 3.5.3's EXCHANGE_MEMORY pair."""

from __future__ import annotations

from pydantic import Field

from latentmas_mesh.protocol.base import (
    EnvelopeV2,
    ModelName,
    WireModel,
    WireStr,
    register_message,
)
from latentmas_mesh.protocol.kv import KVCache
from latentmas_mesh.protocol.ledger import EventId
from latentmas_mesh.protocol.quality import AlignmentQuality
from latentmas_mesh.protocol.wmatrix import VERSION_PATTERN

RESERVATION_ID_DESCRIPTION = (
    "Payment reference: the event id of a reservation the caller made on latentmas.ledger for"
    " this exchange's price (creator and validators as the service states them). Required when"
    " the service charges for exchanges; absent otherwise."
)


@register_message("align_kv_cache_request")
class AlignKVCacheRequest(EnvelopeV2):
    """Appendix C.1 `POST /api/latentmas/kv-cache/align` body.

    The source model is `kv_cache.source_model`. `w_matrix_version` None means the newest
    version for the pair (the v2.0 SDK call `align_kv_cache(kv, source, target)` names none).
    `reservation_id` is this project's addition (pay-then-deliver, spec 7.4): the spec's body
    stays valid without it.
    """

    kv_cache: KVCache
    target_model: ModelName
    w_matrix_version: WireStr | None = Field(default=None, pattern=VERSION_PATTERN)
    reservation_id: EventId | None = Field(default=None, description=RESERVATION_ID_DESCRIPTION)


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
    `reservation_id` pays for the exchange (see AlignKVCacheRequest).
    """

    kv_source: KVCache
    source_model: ModelName
    target_model: ModelName
    w_matrix_version: WireStr | None = Field(default=None, pattern=VERSION_PATTERN)
    reservation_id: EventId | None = Field(default=None, description=RESERVATION_ID_DESCRIPTION)


@register_message("exchange_memory_response")
class ExchangeMemoryResponse(WireModel):
    """Section 3.5.3 EXCHANGE_MEMORY result: (kv_aligned, quality)."""

    kv_aligned: KVCache
    quality: AlignmentQuality


__all__ = [
    "RESERVATION_ID_DESCRIPTION",
    "AlignKVCacheRequest",
    "AlignKVCacheResponse",
    "ExchangeMemoryRequest",
    "ExchangeMemoryResponse",
]
