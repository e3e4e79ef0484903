"""The blocking SDK client: the spec's calls on one Transport, for scripts and agents."""

from __future__ import annotations

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
from latentmas_mesh.client._market_sync import MarketCalls
from latentmas_mesh.protocol.align import AlignKVCacheResponse, ExchangeMemoryResponse
from latentmas_mesh.protocol.anchors import RegisterAnchorsResponse
from latentmas_mesh.protocol.ledger import BalanceReply, StatementReply
from latentmas_mesh.protocol.v1 import AlignVectorResponse
from latentmas_mesh.protocol.wmatrix import WMatrixMethod, WMatrixStandard, WMatrixVersionsReply
from latentmas_mesh.registry import ModelSpec
from latentmas_mesh.settlement.ledger_client import LedgerClient
from latentmas_mesh.transport import Transport

T = TypeVar("T")


class MeshClient(MarketCalls):
    """An agent's blocking client of a LatentMAS mesh (`with MeshClient(url) as client:`).

    Every call answers what happened: the aligned cache (or vector, or map) with the quality
    measured for the maps that made it, or the typed ProtocolError that says why not and what
    to do instead (`error.code`, `error.resolution`, `error.details`). Each call has
    `timeout_ms` in all; within it, an attempt met by silence (a broker restart, a worker that
    died holding the request) is sent again with the same request id every
    `attempt_timeout_ms`, so a retried exchange is one exchange, paid at most once. Past the
    deadline: Timeout, whose details carry the request id to retry with.

    `keys` turn CURVE on (`MeshKeys`); without them the LATENTMAS_CURVE_* variables apply.
    `agent` is the agent id the mesh charges, that of the keys (see `acting_agent`). Not
    thread-safe: one client per thread, or `AsyncMeshClient`.
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
        self.transport = Transport(self.settings, context=context)
        self._ledger: LedgerClient | None = None

    def __enter__(self) -> MeshClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the socket; a later call opens a new one."""
        self.transport.close()

    # ------------------------------------------------------------------------ exchanges

    def align_vector(
        self,
        vector: calls.VectorInput,
        source: str,
        target: str,
        *,
        reservation_id: str | None = None,
        request_id: str | None = None,
    ) -> AlignVectorResponse:
        """v1 `client.align_vector(vector, "gpt-4", "bert")`: a vector [d_s] or batch [n, d_s]
        in the target's space, with the map's measured quality."""
        call = calls.align_vector(vector, source, target, reservation_id=reservation_id)
        return self._run(call, request_id)

    def generate_w_matrix(
        self, source: str, target: str, method: WMatrixMethod = "hybrid"
    ) -> WMatrixStandard:
        """Fit and store a W-matrix from both models' registered anchors; its quality is
        measured on held-out anchors. A map already fitted from the same anchors and method is
        answered at once, without fitting again."""
        return self._run(calls.generate_w_matrix(source, target, method))

    def register_anchors(
        self, model: str, anchor_set: str, activations: np.ndarray[Any, Any]
    ) -> RegisterAnchorsResponse:
        """Register `model`'s activations [n, d] on the rows of `anchor_set` (e.g. passage
        embeddings from `integrations.hf.passage_embeddings`): generate_w_matrix fits maps
        between two models registered on the same rows. Registering again replaces them."""
        return self._run(calls.register_anchors(model, anchor_set, activations))

    def w_matrix_versions(self, source: str, target: str) -> WMatrixVersionsReply:
        """The pair's stored W-matrices (vectors) and KV maps (caches), oldest version first,
        each with its held-out quality: which `w_matrix_version` an exchange can pin."""
        return self._run(calls.w_matrix_versions(source, target))

    def align_kv_cache(
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
        """`client.align_kv_cache(kv_cache, "gpt-4", "llama-3-70b")` (Appendix C.1).

        `kv_cache`: a KVCache, a (keys, values) numpy pair [layers, kv_heads, seq, head_dim],
        or a transformers DynamicCache (`hf` extra). `min_quality`: the least
        information_retention accepted; maps below it are refused QUALITY_BELOW_THRESHOLD
        before any work, and the reply is checked again. No maps for the pair:
        W_MATRIX_NOT_FOUND, fallback re-prefill; a closed model: MODEL_NOT_SUPPORTED.
        """
        call = calls.align_kv_cache(
            kv_cache, source, target, w_matrix_version=w_matrix_version,
            min_quality=min_quality, reservation_id=reservation_id,
        )  # fmt: skip
        return self._run(call, request_id)

    def exchange_memory(
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
        """Section 3.5.3 EXCHANGE_MEMORY: (kv_source, M_source, M_target, W) -> (kv_aligned,
        quality); the same inputs, floor and refusals as `align_kv_cache`."""
        call = calls.exchange_memory(
            kv_source, source, target, w_matrix_version=w_matrix_version,
            min_quality=min_quality, reservation_id=reservation_id,
        )  # fmt: skip
        return self._run(call, request_id)

    # ------------------------------------------------------------------------- registry

    def models(self, family: str | None = None) -> tuple[ModelSpec, ...]:
        """Every model of the mesh's registry (the operator's additions included), in file
        order; only `family`'s when given."""
        found: list[ModelSpec] = []
        call: calls.Call[calls.ModelsPage] | None = calls.models_page(family)
        pages = 0
        while call is not None:
            page = self._run(call)
            pages += 1
            found.extend(page.models)
            call = calls.following(page, pages)
        return tuple(found)

    def model(self, name: str) -> ModelSpec:
        """One model by name or alias; unknown: MODEL_NOT_SUPPORTED with suggestions."""
        return self._run(calls.model(name))

    # --------------------------------------------------------------------------- ledger

    def balance(self, account: str | None = None) -> BalanceReply:
        """This agent's balance (another account's for its owner or an operator). Under CURVE
        the answer counts only under a trusted ledger seal (MeshKeys.ledger_keys_dir)."""
        return self._ledger_client().balance(account)

    def statement(
        self, account: str | None = None, *, after_entry_id: int = 0, limit: int = 100
    ) -> StatementReply:
        """A page of this agent's journal, oldest first; pass `next_after` on for the next."""
        return self._ledger_client().statement(account, after_entry_id=after_entry_id, limit=limit)

    # ------------------------------------------------------------------------ internals

    def _run(self, call: calls.Call[T], request_id: str | None = None) -> T:
        decoded = self.transport.call(call.service, call.message, request_id=request_id)
        return call.read(decoded.message)

    def _ledger_client(self) -> LedgerClient:
        """Built on first use: under CURVE it needs the trusted ledger keys, which a client
        that only exchanges caches may lack."""
        if self._ledger is None:
            self._ledger = LedgerClient(self.transport)
        return self._ledger


__all__ = ["MeshClient"]
