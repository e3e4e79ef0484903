"""Wire messages of the `latentmas.market` service: the memory, reasoning and capability markets
(spec 7.4.1) and an agent's long-term memory (spec 3.5.4).

As at the ledger, nothing here names the caller: the creator of a listing, the buyer of a use
and the owner of a memory are always the authenticated identity the request arrives with.
"""

from __future__ import annotations

from typing import Annotated, Final, Literal

from pydantic import Field, Strict, model_validator

from latentmas_mesh.protocol.arrays import FloatVector
from latentmas_mesh.protocol.base import ModelName, WireModel, register_message
from latentmas_mesh.protocol.kv import KVCache
from latentmas_mesh.protocol.ledger import EventId, Identity, Quote
from latentmas_mesh.protocol.quality import AlignmentQuality
from latentmas_mesh.units import PRICE_UNITS_MAX, AssetType

MARKET_SERVICE: Final = "latentmas.market"
TITLE_CHARS_MAX: Final = 200
DESCRIPTION_CHARS_MAX: Final = 4_000
TAGS_MAX: Final = 16
TAG_CHARS_MAX: Final = 48
STEP_CHARS_MAX: Final = 16_384
STEPS_MAX: Final = 256
QUERY_CHARS_MAX: Final = 256
SEARCH_LIMIT_MAX: Final = 100
RECALL_K_MAX: Final = 100
MEMORY_TEXT_CHARS_MAX: Final = 65_536

ListingId = Annotated[str, Field(pattern=r"^[a-z]{1,16}-[0-9a-f]{32}$")]
MemoryId = Annotated[str, Field(pattern=r"^mem-[0-9a-f]{32}$")]
Count = Annotated[int, Strict(), Field(ge=0, le=1 << 40)]
Tag = Annotated[str, Field(pattern=r"^[A-Za-z0-9._:-]{1,48}$")]


class ListingText(WireModel):
    """What a buyer reads before paying: a title, a description, tags (all searchable)."""

    title: str = Field(min_length=1, max_length=TITLE_CHARS_MAX)
    description: str = Field(default="", max_length=DESCRIPTION_CHARS_MAX)
    tags: tuple[Tag, ...] = Field(default=(), max_length=TAGS_MAX)


class ReasoningStep(WireModel):
    """One step of a reasoning chain: its text and, optionally, the producing model's working
    memory at the end of the step (a KV snapshot, a hidden state [d])."""

    text: str = Field(min_length=1, max_length=STEP_CHARS_MAX)
    tokens: Count = 0
    kv_cache: KVCache | None = None
    hidden_state: FloatVector | None = None


@register_message("market.reasoning_chain")
class ReasoningChain(WireModel):
    """An ordered reasoning process (spec 7.4.1's Reasoning Market asset) of one model."""

    model: ModelName
    steps: tuple[ReasoningStep, ...] = Field(min_length=1, max_length=STEPS_MAX)

    @model_validator(mode="after")
    def _snapshots_of_the_model(self) -> ReasoningChain:
        for index, step in enumerate(self.steps):
            if step.kv_cache is not None and step.kv_cache.source_model != self.model:
                source = step.kv_cache.source_model
                msg = f"step {index}'s kv_cache is of {source}, not of the chain's {self.model}"
                raise ValueError(msg)
        return self


@register_message("market.publish_memory")
class PublishMemoryRequest(ListingText):
    """List a KV-cache snapshot on the Memory Market (priced per use). `embedding`, optional,
    makes it findable by similarity; its model is the cache's."""

    kv_cache: KVCache
    embedding: FloatVector | None = None


@register_message("market.publish_reasoning")
class PublishReasoningChainRequest(ListingText):
    """List a reasoning chain on the Reasoning Market (priced per use)."""

    chain: ReasoningChain
    embedding: FloatVector | None = None


@register_message("market.publish_capability")
class PublishCapabilityRequest(ListingText):
    """List a static embedding on the Capability Market (priced per purchase: a buyer uses it
    again without paying again)."""

    model: ModelName
    embedding: FloatVector


@register_message("market.listing")
class Listing(WireModel):
    """A listing as anyone may read it: never its payload.

    `quality` is the mean of the validators' attested measurements (0 until one attests);
    `similar_listings` the near-duplicates the uniqueness factor counts; `reputation` the
    creator's; `price_units` what a quote asked now would charge.
    """

    listing_id: str
    market: AssetType
    creator: str
    title: str
    description: str
    tags: tuple[str, ...]
    source_model: str
    tokens: int
    payload_bytes: int
    quality: float
    attestations: int
    validators: tuple[str, ...]
    similar_listings: int
    reputation: float
    uses: int
    price_units: int
    created_at_ms: int
    withdrawn: bool
    score: float | None = None


@register_message("market.search_request")
class SearchRequest(WireModel):
    """Find listings of one market: by text (`q`), source model, creator, quality floor, price
    range, and by similarity to `embedding`; ranked, `limit` per page, `cursor` pages on."""

    market: AssetType
    q: str | None = Field(default=None, min_length=1, max_length=QUERY_CHARS_MAX)
    model: ModelName | None = None
    creator: Identity | None = None
    min_quality: float | None = Field(default=None, ge=0.0, le=1.0)
    min_price: Annotated[int, Strict(), Field(ge=0, le=PRICE_UNITS_MAX)] | None = None
    max_price: Annotated[int, Strict(), Field(ge=0, le=PRICE_UNITS_MAX)] | None = None
    embedding: FloatVector | None = None
    limit: Annotated[int, Strict(), Field(ge=1, le=SEARCH_LIMIT_MAX)] = 20
    cursor: str | None = Field(default=None, max_length=64)


@register_message("market.search_reply")
class SearchReply(WireModel):
    """One page of listings, best first; `next_cursor` None after the last page."""

    listings: tuple[Listing, ...]
    next_cursor: str | None


@register_message("market.listing_request")
class ListingRequest(WireModel):
    """One listing by id (a withdrawn one too: a buyer's history stays readable)."""

    listing_id: ListingId


@register_message("market.withdraw_request")
class WithdrawRequest(WireModel):
    """Take a listing off the market (its creator only); uses already paid stay delivered."""

    listing_id: ListingId


@register_message("market.quote_request")
class MarketQuoteRequest(WireModel):
    """A signed, time-bound price for one use (or purchase) of a listing by the sender."""

    listing_id: ListingId


@register_message("market.quote_lookup")
class MarketQuoteLookup(WireModel):
    """A quote the sender was given, by id, as it was given (the gateway's use reserves it)."""

    quote_id: EventId


class PriceFactors(WireModel):
    """The four normalised factors of spec 7.4.2 and their weights in basis points."""

    tokens: float
    tier: float
    quality: float
    uniqueness: float
    weights_bp: tuple[int, int, int, int]
    base_units: int


@register_message("market.quote_reply")
class MarketQuote(WireModel):
    """The ledger's signed quote for the listing and how its price was formed. Reserve
    `quote.price_units` on latentmas.ledger with this quote, then `use` with both ids.
    `bought`: a capability the sender already bought: use it again without reserving."""

    listing_id: str
    quote: Quote
    factors: PriceFactors
    bought: bool = False


@register_message("market.use_request")
class UseRequest(WireModel):
    """Use (or buy) a listing in the sender's `model`'s space, paid by `reservation_id`, a
    reservation made with the quote `quote_id`. A capability already bought needs neither.
    Retrying with the same request id returns the same delivery and charges nothing more.
    `min_quality`: the least information_retention of the alignment accepted (below it the
    reservation is voided, nothing charged)."""

    listing_id: ListingId
    model: ModelName
    quote_id: EventId | None = None
    reservation_id: EventId | None = None
    min_quality: float | None = Field(default=None, ge=0.0, le=1.0)


@register_message("market.memory_delivery")
class MemoryDelivery(WireModel):
    """A memory listing's KV cache in the buyer's model's space and the alignment's quality."""

    listing_id: str
    kv_cache: KVCache
    quality: AlignmentQuality
    charged_units: int
    reservation_id: str | None


@register_message("market.reasoning_delivery")
class ReasoningDelivery(WireModel):
    """A reasoning chain in the buyer's model's space (spec: `use_reasoning_chain(id, model)`):
    the same steps, each snapshot aligned; `quality` is the weakest step's."""

    listing_id: str
    chain: ReasoningChain
    quality: AlignmentQuality | None
    charged_units: int
    reservation_id: str | None


@register_message("market.capability_delivery")
class CapabilityDelivery(WireModel):
    """A capability embedding in the buyer's model's space; `charged_units` is 0 for a buyer
    who had bought it before."""

    listing_id: str
    model: str
    embedding: FloatVector
    quality: AlignmentQuality | None
    charged_units: int
    reservation_id: str | None


@register_message("market.attest_request")
class AttestRequest(WireModel):
    """A validator's measurement of a listing's quality (information retention, 0..1) when
    aligned to `model` on held-out anchors; the validators who attested share the 5%."""

    listing_id: ListingId
    model: ModelName
    quality: float = Field(ge=0.0, le=1.0)
    method: str = Field(default="", max_length=200)


@register_message("market.attestation")
class Attestation(WireModel):
    """A stored attestation and the listing's quality afterwards."""

    listing_id: str
    validator: str
    model: str
    quality: float
    method: str
    at_ms: int
    listing_quality: float


@register_message("memory.remember_request")
class RememberRequest(WireModel):
    """Append to the sender's long-term memory: text, optionally an embedding [d] (recall by
    similarity) and a KV snapshot."""

    text: str = Field(min_length=1, max_length=MEMORY_TEXT_CHARS_MAX)
    embedding: FloatVector | None = None
    kv_cache: KVCache | None = None
    tags: tuple[Tag, ...] = Field(default=(), max_length=TAGS_MAX)


@register_message("memory.record")
class MemoryRecord(WireModel):
    """One memory of its owner; `kv_cache` only when recalled with `with_kv`."""

    memory_id: str
    text: str
    tags: tuple[str, ...]
    created_at_ms: int
    payload_bytes: int
    has_embedding: bool
    has_kv_cache: bool
    score: float | None = None
    kv_cache: KVCache | None = None


@register_message("memory.recall_request")
class RecallRequest(WireModel):
    """The sender's memories: the newest first, or those nearest `q` (text) or `embedding`."""

    q: str | None = Field(default=None, min_length=1, max_length=QUERY_CHARS_MAX)
    embedding: FloatVector | None = None
    k: Annotated[int, Strict(), Field(ge=1, le=RECALL_K_MAX)] = 10
    with_kv: bool = False

    @model_validator(mode="after")
    def _one_ranking(self) -> RecallRequest:
        if self.q is not None and self.embedding is not None:
            raise ValueError("recall by text (q) or by embedding, not both")
        return self


@register_message("memory.recall_reply")
class RecallReply(WireModel):
    """The memories recalled, best first, and how they were ranked."""

    memories: tuple[MemoryRecord, ...]
    ranked_by: Literal["recency", "text", "embedding"]


@register_message("memory.forget_request")
class ForgetRequest(WireModel):
    """Remove one of the sender's memories for real: its text, embedding and snapshot."""

    memory_id: MemoryId


@register_message("memory.forget_reply")
class ForgetReply(WireModel):
    """The memory is gone (`forgotten` False: there was none of that id for the sender)."""

    memory_id: str
    forgotten: bool


PublishRequest = PublishMemoryRequest | PublishReasoningChainRequest | PublishCapabilityRequest
Delivery = MemoryDelivery | ReasoningDelivery | CapabilityDelivery

__all__ = [
    "MARKET_SERVICE",
    "AttestRequest",
    "Attestation",
    "CapabilityDelivery",
    "Delivery",
    "ForgetReply",
    "ForgetRequest",
    "Listing",
    "ListingRequest",
    "ListingText",
    "MarketQuote",
    "MarketQuoteLookup",
    "MarketQuoteRequest",
    "MemoryDelivery",
    "MemoryRecord",
    "PriceFactors",
    "PublishCapabilityRequest",
    "PublishMemoryRequest",
    "PublishReasoningChainRequest",
    "PublishRequest",
    "ReasoningChain",
    "ReasoningDelivery",
    "ReasoningStep",
    "RecallReply",
    "RecallRequest",
    "RememberRequest",
    "SearchReply",
    "SearchRequest",
    "UseRequest",
    "WithdrawRequest",
]
