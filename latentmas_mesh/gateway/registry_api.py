"""The mesh's model registry over HTTP: public reads, answered by the workers' own registry
(the operator's additions included), never by the gateway's copy of the file."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request
from fastapi.responses import JSONResponse

from latentmas_mesh.client import calls
from latentmas_mesh.gateway.deps import gateway_of
from latentmas_mesh.gateway.exchange_api import PREFIX
from latentmas_mesh.gateway.openapi import Schemas
from latentmas_mesh.protocol.registry import ModelReply, ModelsReply


def registry_router(schemas: Schemas) -> APIRouter:
    router = APIRouter(prefix=PREFIX, tags=["registry"])

    @router.get(
        "/models",
        summary="Every model of the mesh's registry, in file order",
        responses=schemas.responses(ModelsReply, authenticated=False),
    )
    async def models(
        request: Request,
        family: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
    ) -> JSONResponse:
        gateway = gateway_of(request)
        found: list[dict[str, Any]] = []
        call: calls.Call[calls.ModelsPage] | None = calls.models_page(family)
        pages = 0
        while call is not None:
            page = await gateway.mesh.run(call, None)
            pages += 1
            found.extend(spec.model_dump(mode="json") for spec in page.models)
            call = calls.following(page, pages)
        return JSONResponse({"models": found, "next_offset": None})

    @router.get(
        "/models/{name}",
        summary="One model by name or alias",
        responses=schemas.responses(ModelReply, 404, authenticated=False),
    )
    async def model(
        request: Request, name: Annotated[str, Path(min_length=1, max_length=128)]
    ) -> JSONResponse:
        spec = await gateway_of(request).mesh.run(calls.model(name), None)
        return JSONResponse({"model": spec.model_dump(mode="json")})

    return router


__all__ = ["registry_router"]
