"""The markets' and long-term memory's calls of the blocking client (`MeshClient` has them)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
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


class MarketCalls:
    """Publish, find, buy and use assets; remember, recall and forget (spec 7.4, 3.5.4)."""

    def _run(self, call: calls.Call[T], request_id: str | None = None) -> T:
        raise NotImplementedError

    def _ledger_client(self) -> LedgerClient:
        raise NotImplementedError

    def publish_memory(
        self, kv_cache: KVInput, source: str, title: str, *, description: str = "",
        tags: Sequence[str] = (), embedding: Any = None,  # noqa: ANN401 (array-like)
    ) -> Listing:  # fmt: skip
        """List a KV-cache snapshot of `source` on the Memory Market (priced per use)."""
        return self._run(mc.publish_memory(kv_cache, source, title, description=description,
                                           tags=tags, embedding=embedding))  # fmt: skip

    def publish_reasoning_chain(
        self, chain: ReasoningChain | dict[str, Any], title: str, *, description: str = "",
        tags: Sequence[str] = (), embedding: Any = None,  # noqa: ANN401 (array-like)
    ) -> Listing:  # fmt: skip
        """List a reasoning chain on the Reasoning Market (priced per use)."""
        return self._run(mc.publish_reasoning_chain(chain, title, description=description,
                                                    tags=tags, embedding=embedding))  # fmt: skip

    def publish_capability(
        self, embedding: Any, model: str, title: str, *,  # noqa: ANN401 (array-like)
        description: str = "", tags: Sequence[str] = (),
    ) -> Listing:  # fmt: skip
        """List a static embedding of `model` on the Capability Market (paid once per buyer)."""
        return self._run(mc.publish_capability(embedding, model, title, description=description,
                                               tags=tags))  # fmt: skip

    def search(self, market: AssetType | str, **filters: Any) -> SearchReply:  # noqa: ANN401
        """A ranked page of `market`'s listings: q, model, creator, min_quality, max_price,
        embedding, limit, cursor (see market_calls.search)."""
        return self._run(mc.search(market, **filters))

    def listing(self, listing_id: str) -> Listing:
        return self._run(mc.listing(listing_id))

    def withdraw(self, listing_id: str) -> Listing:
        """Take one of this agent's listings off the market."""
        return self._run(mc.withdraw(listing_id))

    def quote(self, listing_id: str) -> MarketQuote:
        """The ledger's signed price for one use by this agent, with its factors."""
        return self._run(mc.quote(listing_id))

    def use_memory(
        self, listing_id: str, model: str, *, min_quality: float | None = None,
        request_id: str | None = None,
    ) -> MemoryDelivery:  # fmt: skip
        """Pay for and receive a memory listing's cache in `model`'s space."""
        return self._use(listing_id, model, MemoryDelivery, min_quality, request_id)

    def use_reasoning_chain(
        self, chain_id: str, model: str, *, min_quality: float | None = None,
        request_id: str | None = None,
    ) -> ReasoningDelivery:  # fmt: skip
        """`client.use_reasoning_chain(chain_id, "my-model")`: the chain in my model's space."""
        return self._use(chain_id, model, ReasoningDelivery, min_quality, request_id)

    def buy_capability(
        self, listing_id: str, model: str, *, min_quality: float | None = None,
        request_id: str | None = None,
    ) -> CapabilityDelivery:  # fmt: skip
        """Buy (once) and receive a capability embedding in `model`'s space."""
        return self._use(listing_id, model, CapabilityDelivery, min_quality, request_id)

    def attest(self, listing_id: str, model: str, quality: float, method: str = "") -> Attestation:
        """As a registered validator: the quality measured for a listing aligned to `model`."""
        return self._run(mc.attest(listing_id, model, quality, method))

    def remember(
        self, text: str, *, embedding: Any = None,  # noqa: ANN401 (array-like)
        kv_cache: KVInput | None = None, source: str | None = None, tags: Sequence[str] = (),
    ) -> MemoryRecord:  # fmt: skip
        """Append to this agent's long-term memory."""
        return self._run(mc.remember(text, embedding=embedding, kv_cache=kv_cache,
                                     source=source, tags=tags))  # fmt: skip

    def recall(
        self, q: str | None = None, *, embedding: Any = None,  # noqa: ANN401 (array-like)
        k: int = 10, with_kv: bool = False,
    ) -> RecallReply:  # fmt: skip
        """This agent's memories: newest first, or nearest `q` or `embedding`."""
        return self._run(mc.recall(q, embedding=embedding, k=k, with_kv=with_kv))

    def forget(self, memory_id: str) -> ForgetReply:
        """Remove one memory for real (text, embedding, snapshot)."""
        return self._run(mc.forget(memory_id))

    def _use(
        self, listing_id: str, model: str, delivered: type[D], min_quality: float | None,
        request_id: str | None,
    ) -> D:  # fmt: skip
        """Quote, reserve the quoted price as this agent, use under one request id (a retry
        with the same id is charged once)."""
        request_id = request_id or uuid.uuid4().hex
        quoted = self._run(mc.quote(listing_id))
        reservation_id = None
        if not quoted.bought:
            event = mc.reservation(quoted, request_id)
            self._ledger_client().apply(event)  # InsufficientFunds: nothing reserved or used
            reservation_id = event.event_id
        call = mc.use(listing_id, model, delivered, quote_id=quoted.quote.quote_id,
                      reservation_id=reservation_id, min_quality=min_quality)  # fmt: skip
        return self._run(call, request_id)


__all__ = ["MarketCalls"]
