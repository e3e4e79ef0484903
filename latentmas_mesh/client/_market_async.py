"""The markets' and long-term memory's calls of the asyncio client (see `_market_sync`)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from latentmas_mesh.client import calls
from latentmas_mesh.client import market_calls as mc
from latentmas_mesh.client._kv import KVInput
from latentmas_mesh.protocol.market import (
    Attestation,
    CapabilityDelivery,
    ForgetReply,
    Listing,
    MarketQuote,
    MemoryDelivery,
    MemoryRecord,
    ReasoningChain,
    ReasoningDelivery,
    RecallReply,
    SearchReply,
)
from latentmas_mesh.settlement.ledger_client import LedgerClient
from latentmas_mesh.units import AssetType

T = TypeVar("T")
D = TypeVar("D", MemoryDelivery, ReasoningDelivery, CapabilityDelivery)


class AsyncMarketCalls:
    """The awaitable twins of `MarketCalls`: same arguments, same answers and refusals."""

    async def _run(self, call: calls.Call[T], request_id: str | None = None) -> T:
        raise NotImplementedError

    async def _in_ledger_thread(self, ask: Callable[[LedgerClient], T]) -> T:
        raise NotImplementedError

    async def publish_memory(
        self, kv_cache: KVInput, source: str, title: str, *, description: str = "",
        tags: Sequence[str] = (), embedding: Any = None,  # noqa: ANN401 (array-like)
    ) -> Listing:  # fmt: skip
        return await self._run(mc.publish_memory(kv_cache, source, title, description=description,
                                                 tags=tags, embedding=embedding))  # fmt: skip

    async def publish_reasoning_chain(
        self, chain: ReasoningChain | dict[str, Any], title: str, *, description: str = "",
        tags: Sequence[str] = (), embedding: Any = None,  # noqa: ANN401 (array-like)
    ) -> Listing:  # fmt: skip
        return await self._run(mc.publish_reasoning_chain(
            chain, title, description=description, tags=tags, embedding=embedding))  # fmt: skip

    async def publish_capability(
        self, embedding: Any, model: str, title: str, *,  # noqa: ANN401 (array-like)
        description: str = "", tags: Sequence[str] = (),
    ) -> Listing:  # fmt: skip
        call = mc.publish_capability(embedding, model, title, description=description, tags=tags)
        return await self._run(call)

    async def search(self, market: AssetType | str, **filters: Any) -> SearchReply:  # noqa: ANN401
        return await self._run(mc.search(market, **filters))

    async def listing(self, listing_id: str) -> Listing:
        return await self._run(mc.listing(listing_id))

    async def withdraw(self, listing_id: str) -> Listing:
        return await self._run(mc.withdraw(listing_id))

    async def quote(self, listing_id: str) -> MarketQuote:
        return await self._run(mc.quote(listing_id))

    async def use_memory(
        self, listing_id: str, model: str, *, min_quality: float | None = None,
        request_id: str | None = None,
    ) -> MemoryDelivery:  # fmt: skip
        return await self._use(listing_id, model, MemoryDelivery, min_quality, request_id)

    async def use_reasoning_chain(
        self, chain_id: str, model: str, *, min_quality: float | None = None,
        request_id: str | None = None,
    ) -> ReasoningDelivery:  # fmt: skip
        return await self._use(chain_id, model, ReasoningDelivery, min_quality, request_id)

    async def buy_capability(
        self, listing_id: str, model: str, *, min_quality: float | None = None,
        request_id: str | None = None,
    ) -> CapabilityDelivery:  # fmt: skip
        return await self._use(listing_id, model, CapabilityDelivery, min_quality, request_id)

    async def attest(
        self, listing_id: str, model: str, quality: float, method: str = ""
    ) -> Attestation:
        return await self._run(mc.attest(listing_id, model, quality, method))

    async def remember(
        self, text: str, *, embedding: Any = None,  # noqa: ANN401 (array-like)
        kv_cache: KVInput | None = None, source: str | None = None, tags: Sequence[str] = (),
    ) -> MemoryRecord:  # fmt: skip
        return await self._run(mc.remember(text, embedding=embedding, kv_cache=kv_cache,
                                           source=source, tags=tags))  # fmt: skip

    async def recall(
        self, q: str | None = None, *, embedding: Any = None,  # noqa: ANN401 (array-like)
        k: int = 10, with_kv: bool = False,
    ) -> RecallReply:  # fmt: skip
        return await self._run(mc.recall(q, embedding=embedding, k=k, with_kv=with_kv))

    async def forget(self, memory_id: str) -> ForgetReply:
        return await self._run(mc.forget(memory_id))

    async def _use(
        self, listing_id: str, model: str, delivered: type[D], min_quality: float | None,
        request_id: str | None,
    ) -> D:  # fmt: skip
        request_id = request_id or uuid.uuid4().hex
        quoted = await self._run(mc.quote(listing_id))
        reservation_id = None
        if not quoted.bought:
            event = mc.reservation(quoted, request_id)
            await self._in_ledger_thread(lambda ledger: ledger.apply(event))
            reservation_id = event.event_id
        call = mc.use(listing_id, model, delivered, quote_id=quoted.quote.quote_id,
                      reservation_id=reservation_id, min_quality=min_quality)  # fmt: skip
        return await self._run(call, request_id)


__all__ = ["AsyncMarketCalls"]
