"""The `market` worker kind: `latentmas.market` (the three markets and long-term memory).

It is a client of two other services through its own broker, under its own CURVE key: the
ledger (quotes; checking, posting and voiding buyers' reservations: list its key in
LATENTMAS_LEDGER_SERVICES) and the alignment service (assets carried into buyers' models;
alignment must be free for it, LATENTMAS_ALIGNMENT_PRICE_UNITS=0, as the market pays nothing).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel

from latentmas_mesh.catalog import BlobStore, open_catalog
from latentmas_mesh.codec import Decoded
from latentmas_mesh.errors import InvalidRequest
from latentmas_mesh.log import get_logger
from latentmas_mesh.market import PriceSchedule
from latentmas_mesh.protocol.align import ALIGN_SERVICE, AlignKVCacheRequest, AlignKVCacheResponse
from latentmas_mesh.protocol.kv import KVCache
from latentmas_mesh.protocol.market import MARKET_SERVICE
from latentmas_mesh.protocol.quality import AlignmentQuality
from latentmas_mesh.protocol.v1 import AlignVectorRequest, AlignVectorResponse
from latentmas_mesh.registry import load_registry
from latentmas_mesh.services.ledger_settings import LedgerSettings
from latentmas_mesh.services.market import MarketPolicy, MarketService, Quoter
from latentmas_mesh.services.market_settings import MarketSettings
from latentmas_mesh.services.quotes import LocalQuoter, Pricing, QuoteSigner
from latentmas_mesh.settlement.outbox import Outbox
from latentmas_mesh.settlement.payments import Payments
from latentmas_mesh.transport import Transport
from workers.base import RawWorker, RequestContext, Worker
from workers.ledger import wall_clock_ms
from workers.settings import WorkerSettings
from workers.settling import ledger_client, start_outbox_drain, worker_transport

SERVICE = MARKET_SERVICE


class MeshAligner:
    """The market's Aligner: `latentmas.align` through the broker, as the market's identity."""

    def __init__(self, transport: Transport) -> None:
        self.transport = transport

    def align_kv(
        self, cache: KVCache, target: str, *, min_quality: float | None
    ) -> tuple[KVCache, AlignmentQuality]:
        request = AlignKVCacheRequest(kv_cache=cache, target_model=target, min_quality=min_quality)
        reply = _expect(self.transport.call(ALIGN_SERVICE, request).message, AlignKVCacheResponse)
        return reply.aligned_kv_cache, reply.alignment_quality

    def align_vector(
        self, vector: npt.NDArray[np.float32], source: str, target: str
    ) -> tuple[npt.NDArray[np.float32], AlignmentQuality | None]:
        request = AlignVectorRequest(vector=vector, source_model=source, target_model=target)
        reply = _expect(self.transport.call(ALIGN_SERVICE, request).message, AlignVectorResponse)
        if reply.aligned_vector is None:
            raise InvalidRequest("the align service answered a batch for one vector")
        return np.asarray(reply.aligned_vector, np.float32), reply.alignment_quality


def _expect(reply: BaseModel, reply_type: type[Any]) -> Any:  # noqa: ANN401 (the reply type)
    if not isinstance(reply, reply_type):
        msg = f"the align service answered {type(reply).__name__}, not {reply_type.__name__}"
        raise InvalidRequest(msg)
    return reply


def build_service(settings: WorkerSettings, options: MarketSettings) -> MarketService:
    """The service over the configured catalog, its payments spooled in a durable outbox."""
    catalog = open_catalog(
        options.catalog_url(),
        BlobStore(options.path(options.market_blobs_dir)),
        quotas=options.quotas(),
    )
    outbox = Outbox(options.path(options.market_outbox))
    ledger = ledger_client(settings, options.market_ledger_timeout_ms)
    registry = load_registry(options.registry_path)
    schedule = PriceSchedule(tokens_cap=options.ledger_tokens_cap)
    quoter: Quoter = ledger
    ledger_options = LedgerSettings()
    if options.market_sign_quotes and ledger_options.ledger_quote_key_file.exists():
        signer = QuoteSigner(
            key=ledger_options.quote_key(), pricing=Pricing(schedule, registry),
            currency=ledger_options.ledger_currency,
            ttl_ms_max=min(options.market_quote_ttl_ms, ledger_options.ledger_quote_ttl_ms),
        )  # fmt: skip
        quoter = LocalQuoter(signer, wall_clock_ms)
    start_outbox_drain(
        outbox, settings, service=SERVICE, interval_ms=options.market_outbox_drain_ms,
        timeout_ms=options.market_ledger_timeout_ms,
    )  # fmt: skip
    return MarketService(
        catalog,
        quoter=quoter,
        payments=Payments(outbox, ledger),
        aligner=MeshAligner(worker_transport(settings, options.market_align_timeout_ms)),
        clock=wall_clock_ms,
        policy=MarketPolicy(
            schedule=schedule,
            validators=options.market_validators,
            quote_ttl_ms=options.market_quote_ttl_ms,
        ),
        registry=registry,
    )


def create(settings: WorkerSettings) -> RawWorker:
    """A market worker. Before it takes requests it completes the uses a crash left
    delivered but unposted (posted, or voided when their reservation closed meanwhile)."""
    service = build_service(settings, MarketSettings())
    log = get_logger("worker").bind(service=SERVICE)

    def handle(request: Decoded, context: RequestContext) -> BaseModel:
        return service.handle(request, context.identity)

    worker = Worker(SERVICE, handle, settings)
    try:
        settled = service.recover()
    except Exception:  # the ledger is not up yet: the buyers' retries finish those uses
        log.exception("market_recovery_deferred")
    else:
        log.info("market_recovered", uses_settled=settled)
    return worker


__all__ = ["SERVICE", "MeshAligner", "build_service", "create"]
