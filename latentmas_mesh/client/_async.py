"""The asyncio SDK client: the same calls as MeshClient, awaitable and safe to run concurrently."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

import numpy as np
import zmq

from latentmas_mesh.client import calls
from latentmas_mesh.client._connection import (
    TIMEOUT_MS_DEFAULT,
    MeshKeys,
    acting_agent,
    transport_settings,
)
from latentmas_mesh.client._kv import KVInput
from latentmas_mesh.client._market_async import AsyncMarketCalls
from latentmas_mesh.protocol.align import AlignKVCacheResponse, ExchangeMemoryResponse
from latentmas_mesh.protocol.anchors import RegisterAnchorsResponse
from latentmas_mesh.protocol.ledger import BalanceReply, StatementReply
from latentmas_mesh.protocol.v1 import AlignVectorResponse
from latentmas_mesh.protocol.wmatrix import WMatrixMethod, WMatrixStandard, WMatrixVersionsReply
from latentmas_mesh.registry import ModelSpec
from latentmas_mesh.settlement.ledger_client import LedgerClient
from latentmas_mesh.transport import AsyncTransport, Transport

T = TypeVar("T")


class AsyncMeshClient(AsyncMarketCalls):
    """The asyncio twin of `MeshClient` (`async with AsyncMeshClient(url) as client:`): same
    arguments, same answers and refusals, same deadline and same-id retries.

    Exchanges run concurrently (one socket each, `sockets_max` at most). Ledger calls go
    through the blocking LedgerClient, which checks each answer's seal, on a worker thread
    with its own transport, one at a time.
    """

    def __init__(
        self,
        url: str,
        *,
        agent: str | None = None,
        keys: MeshKeys | None = None,
        timeout_ms: int = TIMEOUT_MS_DEFAULT,
        attempt_timeout_ms: int | None = None,
        context: zmq.Context[zmq.Socket[bytes]] | None = None,
    ) -> None:
        self.settings = transport_settings(
            url, keys, timeout_ms=timeout_ms, attempt_timeout_ms=attempt_timeout_ms
        )
        self.agent = acting_agent(agent, self.settings)
        self.transport = AsyncTransport(self.settings, context=context)
        self._context = context
        self._ledger: LedgerClient | None = None
        self._ledger_turn = asyncio.Lock()

    async def __aenter__(self) -> AsyncMeshClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the idle sockets and the ledger's transport."""
        self.transport.close()
        if self._ledger is not None and isinstance(self._ledger.caller, Transport):
            self._ledger.caller.close()

    # ------------------------------------------------------------------------ exchanges

    async def align_vector(
        self,
        vector: calls.VectorInput,
        source: str,
        target: str,
        *,
        reservation_id: str | None = None,
        request_id: str | None = None,
    ) -> AlignVectorResponse:
        """See `MeshClient.align_vector`."""
        call = calls.align_vector(vector, source, target, reservation_id=reservation_id)
        return await self._run(call, request_id)

    async def generate_w_matrix(
        self, source: str, target: str, method: WMatrixMethod = "hybrid"
    ) -> WMatrixStandard:
        """See `MeshClient.generate_w_matrix`."""
        return await self._run(calls.generate_w_matrix(source, target, method))

    async def register_anchors(
        self, model: str, anchor_set: str, activations: np.ndarray[Any, Any]
    ) -> RegisterAnchorsResponse:
        """See `MeshClient.register_anchors`."""
        return await self._run(calls.register_anchors(model, anchor_set, activations))

    async def w_matrix_versions(self, source: str, target: str) -> WMatrixVersionsReply:
        """See `MeshClient.w_matrix_versions`."""
        return await self._run(calls.w_matrix_versions(source, target))

    async def align_kv_cache(
        self,
        kv_cache: KVInput,
        source: str,
        target: str,
        *,
        w_matrix_version: str | None = None,
        min_quality: float | None = None,
        reservation_id: str | None = None,
        request_id: str | None = None,
    ) -> AlignKVCacheResponse:
        """See `MeshClient.align_kv_cache`."""
        call = calls.align_kv_cache(
            kv_cache, source, target, w_matrix_version=w_matrix_version,
            min_quality=min_quality, reservation_id=reservation_id,
        )  # fmt: skip
        return await self._run(call, request_id)

    async def exchange_memory(
        self,
        kv_source: KVInput,
        source: str,
        target: str,
        *,
        w_matrix_version: str | None = None,
        min_quality: float | None = None,
        reservation_id: str | None = None,
        request_id: str | None = None,
    ) -> ExchangeMemoryResponse:
        """See `MeshClient.exchange_memory`."""
        call = calls.exchange_memory(
            kv_source, source, target, w_matrix_version=w_matrix_version,
            min_quality=min_quality, reservation_id=reservation_id,
        )  # fmt: skip
        return await self._run(call, request_id)

    # ------------------------------------------------------------------------- registry

    async def models(self, family: str | None = None) -> tuple[ModelSpec, ...]:
        """See `MeshClient.models`."""
        found: list[ModelSpec] = []
        call: calls.Call[calls.ModelsPage] | None = calls.models_page(family)
        pages = 0
        while call is not None:
            page = await self._run(call)
            pages += 1
            found.extend(page.models)
            call = calls.following(page, pages)
        return tuple(found)

    async def model(self, name: str) -> ModelSpec:
        """See `MeshClient.model`."""
        return await self._run(calls.model(name))

    # --------------------------------------------------------------------------- ledger

    async def balance(self, account: str | None = None) -> BalanceReply:
        """See `MeshClient.balance`."""
        return await self._in_ledger_thread(lambda ledger: ledger.balance(account))

    async def statement(
        self, account: str | None = None, *, after_entry_id: int = 0, limit: int = 100
    ) -> StatementReply:
        """See `MeshClient.statement`."""
        return await self._in_ledger_thread(
            lambda ledger: ledger.statement(account, after_entry_id=after_entry_id, limit=limit)
        )

    # ------------------------------------------------------------------------ internals

    async def _run(self, call: calls.Call[T], request_id: str | None = None) -> T:
        decoded = await self.transport.call(call.service, call.message, request_id=request_id)
        return call.read(decoded.message)

    async def _in_ledger_thread(self, ask: Callable[[LedgerClient], T]) -> T:
        """`ask(ledger)` on a worker thread; one at a time, as a Transport serves one thread."""
        async with self._ledger_turn:
            if self._ledger is None:
                self._ledger = LedgerClient(Transport(self.settings, context=self._context))
            return await asyncio.to_thread(ask, self._ledger)


__all__ = ["AsyncMeshClient"]
