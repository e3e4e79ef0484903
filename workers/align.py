"""The `align` worker kind: `latentmas.align` (Align KV-Cache, EXCHANGE_MEMORY, align_vector)."""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel

from latentmas_mesh.alignment.kernels import warm_up
from latentmas_mesh.alignment.quality import QualityThresholds
from latentmas_mesh.alignment.service import (
    ALIGN_SERVICE,
    AlignmentService,
    AnchorStore,
    KVMapStore,
    ServicePolicy,
    SettlementSpool,
)
from latentmas_mesh.alignment.settings import AlignmentSettings
from latentmas_mesh.alignment.store import WMatrixStore
from latentmas_mesh.codec import Decoded
from latentmas_mesh.log import get_logger
from latentmas_mesh.registry import load_registry
from workers.base import RawWorker, RequestContext, Worker
from workers.settings import WorkerSettings

SERVICE = ALIGN_SERVICE


def utc_now() -> dt.datetime:
    """Wall-clock time for the aligned caches' generated_at."""
    return dt.datetime.now(dt.UTC)


def build_service(settings: AlignmentSettings | None = None) -> AlignmentService:
    """The service over the configured directories (shared by the align and wmatrix kinds)."""
    options = settings or AlignmentSettings()
    return AlignmentService(
        registry=load_registry(options.registry_path),
        wmatrices=WMatrixStore(options.path(options.alignment_wmatrix_dir)),
        anchors=AnchorStore(options.path(options.alignment_anchors_dir)),
        kv_maps=KVMapStore(options.path(options.alignment_kv_maps_dir)),
        spool=SettlementSpool(options.path(options.alignment_settlement_spool)),
        clock=utc_now,
        policy=ServicePolicy(
            unified_dim=options.alignment_unified_dim,
            price_units=options.alignment_price_units,
            creator=options.alignment_creator,
            thresholds=QualityThresholds() if options.alignment_enforce_quality else None,
        ),
        hub_path=options.path(options.alignment_hub_file),
    )


def create(settings: WorkerSettings) -> RawWorker:
    """An align worker. The numba kernel is compiled (or loaded from cache) here, at start,
    so no request pays for it."""
    service = build_service()
    compile_s = warm_up()
    get_logger("worker").info("kernel_ready", service=SERVICE, seconds=round(compile_s, 3))

    def handle(request: Decoded, context: RequestContext) -> BaseModel:
        return service.handle_align(request.message, context.identity, request.request_id)

    return Worker(SERVICE, handle, settings)


__all__ = ["SERVICE", "build_service", "create", "utc_now"]
