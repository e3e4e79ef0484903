"""The `wmatrix` worker kind: `latentmas.wmatrix` (Generate W-Matrix, anchor registration)."""

from __future__ import annotations

from pydantic import BaseModel

from latentmas_mesh.codec import Decoded
from latentmas_mesh.protocol.base import WireModel
from latentmas_mesh.services.alignment import WMATRIX_SERVICE
from workers.align import build_service
from workers.base import RawWorker, RequestContext, Worker
from workers.settings import WorkerSettings

SERVICE = WMATRIX_SERVICE


def create(settings: WorkerSettings) -> RawWorker:
    """A W-matrix worker; its stores and policy come from `LATENTMAS_ALIGNMENT_*`."""
    service = build_service()

    def handle(request: Decoded, context: RequestContext) -> BaseModel:
        message: WireModel = request.message
        return service.handle_wmatrix(message, context.identity)

    return Worker(SERVICE, handle, settings)


__all__ = ["SERVICE", "create"]
