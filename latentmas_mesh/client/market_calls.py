"""The markets' and long-term memory's SDK calls as data (see `calls`): what each sends to
`latentmas.market` and how its reply is read. A use is three steps, written once here and
taken by both clients: `quote`, then the buyer's own reservation on the ledger
(`reservation`), then `use` under the same request id."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any, Final, TypeVar

import numpy as np
from pydantic import BaseModel

from latentmas_mesh.client._kv import KVInput, as_kv_cache
from latentmas_mesh.client.calls import Call, build, expect
from latentmas_mesh.protocol.ledger import ReserveEvent
from latentmas_mesh.protocol.market import (
    MARKET_SERVICE,
    Attestation,
    AttestRequest,
    CapabilityDelivery,
    ForgetReply,
    ForgetRequest,
    Listing,
    ListingRequest,
    MarketQuote,
    MarketQuoteLookup,
    MarketQuoteRequest,
    MemoryDelivery,
    MemoryRecord,
    PublishCapabilityRequest,
    PublishMemoryRequest,
    PublishReasoningChainRequest,
    ReasoningChain,
    ReasoningDelivery,
    RecallReply,
    RecallRequest,
    RememberRequest,
    SearchReply,
    SearchRequest,
    UseRequest,
    WithdrawRequest,
)
from latentmas_mesh.units import AssetType

RESERVATION_GRACE_MS: Final = 4 * 60 * 1000
"""A use's reservation outlives its quote by this much, so a slow alignment still gets paid."""
D = TypeVar("D", MemoryDelivery, ReasoningDelivery, CapabilityDelivery)
R = TypeVar("R", bound=BaseModel)


def reader(reply_type: type[R]) -> Callable[[BaseModel], R]:
    """How a market call's reply is read: it must be a `reply_type`."""
    return lambda reply: expect(reply, reply_type)


def _market(message: BaseModel, reply_type: type[R]) -> Call[R]:
    return Call(MARKET_SERVICE, message, reader(reply_type))


def market_of(listing_id: str) -> AssetType | None:
    """The market a listing id belongs to (ids are `<market>-<32 hex>`), None if none."""
    prefix = listing_id.partition("-")[0]
    return AssetType(prefix) if prefix in set(AssetType) else None


def _vector(values: Any) -> np.ndarray[Any, Any] | None:  # noqa: ANN401 (array-like)
    return None if values is None else np.asarray(values, np.float32)


def publish_memory(
    kv_cache: KVInput,
    source: str,
    title: str,
    *,
    description: str = "",
    tags: Sequence[str] = (),
    embedding: Any = None,  # noqa: ANN401 (array-like)
) -> Call[Listing]:
    """List a KV-cache snapshot of `source` on the Memory Market."""
    request = build(
        PublishMemoryRequest, kv_cache=as_kv_cache(kv_cache, source), title=title,
        description=description, tags=tuple(tags), embedding=_vector(embedding),
    )  # fmt: skip
    return _market(request, Listing)


def publish_reasoning_chain(
    chain: ReasoningChain | dict[str, Any],
    title: str,
    *,
    description: str = "",
    tags: Sequence[str] = (),
    embedding: Any = None,  # noqa: ANN401 (array-like)
) -> Call[Listing]:
    """List a reasoning chain (ordered steps of one model) on the Reasoning Market."""
    request = build(
        PublishReasoningChainRequest, chain=chain, title=title, description=description,
        tags=tuple(tags), embedding=_vector(embedding),
    )  # fmt: skip
    return _market(request, Listing)


def publish_capability(
    embedding: Any,  # noqa: ANN401 (array-like)
    model: str,
    title: str,
    *,
    description: str = "",
    tags: Sequence[str] = (),
) -> Call[Listing]:
    """List a static embedding of `model` on the Capability Market (paid once per buyer)."""
    request = build(
        PublishCapabilityRequest, embedding=_vector(embedding), model=model, title=title,
        description=description, tags=tuple(tags),
    )  # fmt: skip
    return _market(request, Listing)


def search(
    market: AssetType | str,
    *,
    q: str | None = None,
    model: str | None = None,
    creator: str | None = None,
    min_quality: float | None = None,
    min_price: int | None = None,
    max_price: int | None = None,
    embedding: Any = None,  # noqa: ANN401 (array-like)
    limit: int = 20,
    cursor: str | None = None,
) -> Call[SearchReply]:
    """One ranked page of a market's listings; pass `next_cursor` on for the next."""
    request = build(
        SearchRequest, market=market, q=q, model=model, creator=creator,
        min_quality=min_quality, min_price=min_price, max_price=max_price,
        embedding=_vector(embedding),
        limit=limit, cursor=cursor,
    )  # fmt: skip
    return _market(request, SearchReply)


def listing(listing_id: str) -> Call[Listing]:
    return _market(build(ListingRequest, listing_id=listing_id), Listing)


def withdraw(listing_id: str) -> Call[Listing]:
    return _market(build(WithdrawRequest, listing_id=listing_id), Listing)


def quote(listing_id: str) -> Call[MarketQuote]:
    return _market(build(MarketQuoteRequest, listing_id=listing_id), MarketQuote)


def quote_lookup(quote_id: str) -> Call[MarketQuote]:
    """A quote this agent was given, by id, as it was given."""
    return _market(build(MarketQuoteLookup, quote_id=quote_id), MarketQuote)


def reservation(quoted: MarketQuote, request_id: str) -> ReserveEvent:
    """The buyer's reservation of a quoted price, its event id derived from the use's request
    id and the quote: a retried use reserves (and is charged) at most once per quote."""
    digest = hashlib.sha256(f"{request_id}\x1f{quoted.quote.quote_id}".encode()).hexdigest()
    return ReserveEvent(
        event_id=f"use-{digest[:40]}",
        quote=quoted.quote,
        expires_at_ms=quoted.quote.expires_at_ms + RESERVATION_GRACE_MS,
    )


def use(
    listing_id: str,
    model: str,
    delivered: type[D],
    *,
    quote_id: str | None,
    reservation_id: str | None,
    min_quality: float | None = None,
) -> Call[D]:
    """The paid use itself (after `quote` and `reservation`), answered as a `delivered`."""
    request = build(
        UseRequest, listing_id=listing_id, model=model, quote_id=quote_id,
        reservation_id=reservation_id, min_quality=min_quality,
    )  # fmt: skip
    return _market(request, delivered)


def attest(listing_id: str, model: str, quality: float, method: str = "") -> Call[Attestation]:
    """A validator's measured quality of a listing aligned to `model`."""
    request = build(AttestRequest, listing_id=listing_id, model=model, quality=quality,
                    method=method)  # fmt: skip
    return _market(request, Attestation)


def remember(
    text: str,
    *,
    embedding: Any = None,  # noqa: ANN401 (array-like)
    kv_cache: KVInput | None = None,
    source: str | None = None,
    tags: Sequence[str] = (),
) -> Call[MemoryRecord]:
    """Append to this agent's long-term memory (a snapshot needs its `source` model)."""
    cache = None if kv_cache is None else as_kv_cache(kv_cache, source or "")
    request = build(RememberRequest, text=text, embedding=_vector(embedding), kv_cache=cache,
                    tags=tuple(tags))  # fmt: skip
    return _market(request, MemoryRecord)


def recall(
    q: str | None = None,
    *,
    embedding: Any = None,  # noqa: ANN401 (array-like)
    k: int = 10,
    with_kv: bool = False,
) -> Call[RecallReply]:
    """This agent's memories: newest first, or nearest `q` (text) or `embedding`."""
    request = build(RecallRequest, q=q, embedding=_vector(embedding), k=k, with_kv=with_kv)
    return _market(request, RecallReply)


def forget(memory_id: str) -> Call[ForgetReply]:
    return _market(build(ForgetRequest, memory_id=memory_id), ForgetReply)


__all__ = [
    "MARKET_SERVICE",
    "RESERVATION_GRACE_MS",
    "attest",
    "forget",
    "listing",
    "market_of",
    "publish_capability",
    "publish_memory",
    "publish_reasoning_chain",
    "quote",
    "quote_lookup",
    "reader",
    "recall",
    "remember",
    "reservation",
    "search",
    "use",
    "withdraw",
]
