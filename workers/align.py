"""The `align` worker kind: `latentmas.align` (Align KV-Cache, EXCHANGE_MEMORY, align_vector)."""

from __future__ import annotations

import datetime as dt
import time

from pydantic import BaseModel

from latentmas_mesh.alignment.kernels import warm_up
from latentmas_mesh.alignment.quality import QualityThresholds
from latentmas_mesh.artifacts.anchor_store import AnchorStore
from latentmas_mesh.artifacts.hub_file import HubFile
from latentmas_mesh.artifacts.kv_map_store import KVMapStore
from latentmas_mesh.artifacts.wmatrix_store import WMatrixStore
from latentmas_mesh.codec import Decoded
from latentmas_mesh.log import get_logger
from latentmas_mesh.registry import load_registry
from latentmas_mesh.services.alignment import ALIGN_SERVICE, AlignmentService, ServicePolicy
from latentmas_mesh.services.alignment_settings import AlignmentSettings
from latentmas_mesh.settlement.outbox import Outbox
from latentmas_mesh.settlement.payments import Payments
from workers.base import RawWorker, RequestContext, Worker
from workers.settings import WorkerSettings
from workers.settling import ledger_client, start_outbox_drain

SERVICE = ALIGN_SERVICE


def utc_now() -> dt.datetime:
    """Wall-clock time for the aligned caches' generated_at."""
    return dt.datetime.now(dt.UTC)


def build_service(
    settings: AlignmentSettings | None = None, *, payments: Payments | None = None
) -> AlignmentService:
    """The service over the configured directories (shared by the align and wmatrix kinds)."""
    options = settings or AlignmentSettings()
    return AlignmentService(
        registry=load_registry(options.registry_path),
        wmatrices=WMatrixStore(options.path(options.alignment_wmatrix_dir)),
        anchors=AnchorStore(options.path(options.alignment_anchors_dir)),
        kv_maps=KVMapStore(options.path(options.alignment_kv_maps_dir)),
        clock=utc_now,
        policy=ServicePolicy(
            unified_dim=options.alignment_unified_dim,
            price_units=options.alignment_price_units,
            creator=options.alignment_creator,
            validators=options.alignment_validators,
            thresholds=QualityThresholds() if options.alignment_enforce_quality else None,
            request_bytes_max=options.alignment_request_bytes_max,
        ),
        hub=HubFile(options.path(options.alignment_hub_file)),
        payments=payments,
    )


def create(settings: WorkerSettings) -> RawWorker:
    """An align worker. The numba kernel is compiled (or loaded from cache) here, at start,
    so no request pays for it. With a price, paid exchanges settle on `latentmas.ledger`
    through the same broker, from a durable outbox under the alignment settings' directory."""
    options = AlignmentSettings()
    payments = None
    if options.alignment_price_units > 0:
        outbox = Outbox(options.path(options.alignment_ledger_outbox))
        payments = Payments(outbox, ledger_client(settings, options.alignment_ledger_timeout_ms))
        start_outbox_drain(
            outbox, settings, service=SERVICE, interval_ms=options.alignment_outbox_drain_ms,
            timeout_ms=options.alignment_ledger_timeout_ms,
        )  # fmt: skip
    service = build_service(options, payments=payments)
    started = time.perf_counter()
    warm_up()
    compile_s = time.perf_counter() - started
    get_logger("worker").info("kernel_ready", service=SERVICE, seconds=round(compile_s, 3))

    def handle(request: Decoded, context: RequestContext) -> BaseModel:
        return service.handle_align(
            request.message, context.identity, request.request_id, allocate=context.allocate
        )

    return Worker(SERVICE, handle, settings)


__all__ = ["SERVICE", "build_service", "create", "utc_now"]
