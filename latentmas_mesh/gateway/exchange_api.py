"""Appendix C's endpoints and the rest of the exchange API: generate (a job when it must fit),
align and exchange caches (JSON or binary), v1 vectors, a pair's stored maps."""

from __future__ import annotations

from typing import Annotated, Any, Final

from fastapi import APIRouter, Header, Path, Request
from starlette.responses import JSONResponse, Response

from latentmas_mesh.agents import Agent
from latentmas_mesh.client import calls
from latentmas_mesh.errors import NotFound
from latentmas_mesh.gateway.deps import CurrentAgent, gateway_of
from latentmas_mesh.gateway.forms import answer, json_response, read_message, wants_binary
from latentmas_mesh.gateway.jobs import Job
from latentmas_mesh.gateway.mesh import mesh_request_id
from latentmas_mesh.gateway.openapi import Schemas
from latentmas_mesh.protocol.align import (
    AlignKVCacheRequest,
    AlignKVCacheResponse,
    ExchangeMemoryRequest,
    ExchangeMemoryResponse,
)
from latentmas_mesh.protocol.base import WireModel
from latentmas_mesh.protocol.v1 import AlignVectorRequest, AlignVectorResponse
from latentmas_mesh.protocol.wmatrix import (
    GenerateWMatrixRequest,
    GenerateWMatrixResponse,
    WMatrixVersionsReply,
)

PREFIX: Final = "/api/latentmas"
JOBS_PATH: Final = f"{PREFIX}/jobs"
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="Send a retry with the same key: it is the same exchange, paid at most once.",
    ),
]


def exchange_router(schemas: Schemas) -> APIRouter:
    """The routes, their documented bodies and answers in `schemas`."""
    router = APIRouter(prefix=PREFIX, tags=["exchange"])

    @router.post(
        "/w-matrix/generate",
        summary="Generate W-Matrix (Appendix C.1)",
        description=(
            "A map already fitted from the same anchors and method answers 200 at once; a fit "
            "that outlasts the gateway's job wait answers 202 with `Location` of its job."
        ),
        openapi_extra=schemas.body(GenerateWMatrixRequest, binary=False),
        responses={
            **schemas.responses(GenerateWMatrixResponse, 404, 422),
            202: {"description": "Fitting: poll the job at `Location`"},
        },
    )
    async def generate(
        request: Request, agent: CurrentAgent, idempotency_key: IdempotencyKey = None
    ) -> Response:
        gateway = gateway_of(request)
        incoming = await read_message(
            request.headers, request.stream(), GenerateWMatrixRequest, gateway.settings,
            binary_allowed=False,
        )  # fmt: skip
        assert isinstance(incoming.message, GenerateWMatrixRequest)
        call = calls.w_matrix_generation(incoming.message)
        request_id = mesh_request_id(agent.agent_id, idempotency_key)

        def run() -> Any:  # noqa: ANN401  # the job's awaitable
            return gateway.mesh.run(call, agent.agent_id, request_id)

        job = await gateway.jobs.run(
            "w-matrix.generate", agent.agent_id, run,
            wait_s=gateway.settings.job_wait_ms / 1000,
        )  # fmt: skip
        return _job_answer(job, gateway.jobs.now())

    @router.get(
        "/jobs/{job_id}",
        summary="A long call's job: its state, then its answer",
        responses={
            **schemas.responses(GenerateWMatrixResponse, 404, 422),
            202: {"description": "Still running: `status`, `elapsed_s`"},
        },
    )
    async def job(
        request: Request, agent: CurrentAgent, job_id: Annotated[str, Path(max_length=64)]
    ) -> Response:
        gateway = gateway_of(request)
        found = gateway.jobs.get(job_id, agent.agent_id)
        if found is None:
            raise NotFound(f"no job {job_id!r} of this agent (answers are kept one hour)")
        return _job_answer(found, gateway.jobs.now())

    @router.post(
        "/kv-cache/align",
        summary="Align KV-Cache (Appendix C.1)",
        description=(
            "JSON (the spec's nested lists, camelCase accepted inside `kv_cache`) or the binary "
            "form; the answer takes the form Accept names, else the request's own."
        ),
        openapi_extra=schemas.body(AlignKVCacheRequest, binary=True),
        responses=schemas.responses(AlignKVCacheResponse, 402, 404, 409, 413, 422, binary=True),
    )
    async def align_kv_cache(
        request: Request, agent: CurrentAgent, idempotency_key: IdempotencyKey = None
    ) -> Response:
        return await _exchange(request, agent, idempotency_key, AlignKVCacheRequest)

    @router.post(
        "/memory/exchange",
        summary="EXCHANGE_MEMORY (section 3.5.3)",
        openapi_extra=schemas.body(ExchangeMemoryRequest, binary=True),
        responses=schemas.responses(ExchangeMemoryResponse, 402, 404, 409, 413, 422, binary=True),
    )
    async def exchange_memory(
        request: Request, agent: CurrentAgent, idempotency_key: IdempotencyKey = None
    ) -> Response:
        return await _exchange(request, agent, idempotency_key, ExchangeMemoryRequest)

    @router.post(
        "/v1/vectors/align",
        summary="v1 align_vector (LatentMAS/1.0 envelope)",
        openapi_extra=schemas.body(AlignVectorRequest, binary=True),
        responses=schemas.responses(AlignVectorResponse, 402, 404, 409, 413, 422, binary=True),
    )
    async def align_vector(
        request: Request, agent: CurrentAgent, idempotency_key: IdempotencyKey = None
    ) -> Response:
        return await _exchange(request, agent, idempotency_key, AlignVectorRequest)

    @router.get(
        "/w-matrix/{source}/{target}",
        summary="A pair's stored versions and their held-out quality",
        responses=schemas.responses(WMatrixVersionsReply, 404),
    )
    async def w_matrix_versions(
        request: Request,
        agent: CurrentAgent,
        source: Annotated[str, Path(min_length=1, max_length=128)],
        target: Annotated[str, Path(min_length=1, max_length=128)],
    ) -> Response:
        gateway = gateway_of(request)
        listed = await gateway.mesh.run(calls.w_matrix_versions(source, target), agent.agent_id)
        return json_response(listed)

    return router


async def _exchange(
    request: Request, agent: Agent, idempotency_key: str | None, cls: type[WireModel]
) -> Response:
    """One align or exchange for `agent`: the body in either form, the call the SDK makes, the
    answer in the form asked for (binary: the worker's own frames)."""
    gateway = gateway_of(request)
    incoming = await read_message(request.headers, request.stream(), cls, gateway.settings)
    message = incoming.message
    call: calls.Call[WireModel]
    if isinstance(message, AlignKVCacheRequest):
        call = calls.kv_cache_alignment(message)
    elif isinstance(message, ExchangeMemoryRequest):
        call = calls.memory_exchange(message)
    else:
        assert isinstance(message, AlignVectorRequest)
        call = calls.vector_alignment(message)
    request_id = mesh_request_id(agent.agent_id, idempotency_key or incoming.request_id)
    result, frames = await gateway.mesh.run_frames(call, agent.agent_id, request_id)
    binary = wants_binary(request.headers, default=incoming.binary)
    response = answer(result, frames, binary=binary)
    response.headers["x-request-id"] = request_id
    return response


def _job_answer(job: Job, now_s: float) -> Response:
    """A finished job's answer (Appendix C's body, or its error); a running one's state, 202."""
    if job.status == "succeeded":
        return json_response(job.result)
    if job.status == "failed" and job.error is not None:
        raise job.error
    location = f"{JOBS_PATH}/{job.id}"
    body = {**job.describe(now_s), "location": location}
    return JSONResponse(body, status_code=202, headers={"location": location})


__all__ = ["JOBS_PATH", "PREFIX", "exchange_router"]
