"""The gateway's FastAPI application: the routes, one error body for every failure (never a
traceback, no 5xx but 503 and 504), health, metrics and the OpenAPI document."""

from __future__ import annotations

import time
from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from latentmas_mesh.errors import (
    InternalError,
    InvalidRequest,
    NotFound,
    ProtocolError,
    ServiceUnavailable,
)
from latentmas_mesh.gateway.auth import Unauthenticated
from latentmas_mesh.gateway.deps import gateway_of
from latentmas_mesh.gateway.exchange_api import exchange_router
from latentmas_mesh.gateway.ledger_api import ledger_router
from latentmas_mesh.gateway.market_api import market_router, memory_router
from latentmas_mesh.gateway.openapi import Schemas
from latentmas_mesh.gateway.registry_api import registry_router
from latentmas_mesh.gateway.state import GatewayState
from latentmas_mesh.gateway.status import error_body, status_of
from latentmas_mesh.log import get_logger

HEALTH_TIMEOUT_MS: Final = 1_000
VALIDATION_ERRORS_SHOWN: Final = 8
TITLE: Final = "latentmas-mesh gateway"


def error_response(error: ProtocolError) -> JSONResponse:
    """The one error answer: the protocol's error body, under the code's status."""
    authenticated = not isinstance(error, Unauthenticated)
    headers = {"www-authenticate": "Bearer"} if not authenticated else None
    return JSONResponse(
        error_body(error), status_code=status_of(error, authenticated=authenticated),
        headers=headers,
    )  # fmt: skip


class Guard:
    """Outermost of the gateway's own layers: times every request into the metrics, and turns
    anything a route let escape (a bug) into INTERNAL (503) with the error body, logged here
    once, instead of a 500 with a traceback."""

    def __init__(self, app: ASGIApp, state: GatewayState) -> None:
        self.app = app
        self.state = state
        self.log = get_logger("gateway")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 0

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                self._observe(scope, status, started)
            await send(message)

        try:
            await self.app(scope, receive, sending)
        except Exception as exc:
            self.log.exception("request_failed", path=scope.get("path"))
            if status:  # the answer had begun: nothing to do but drop the connection
                raise
            error = InternalError(
                f"the gateway failed on this request ({type(exc).__name__})",
                details={"exception": type(exc).__name__},
            )
            await error_response(error)(scope, receive, sending)

    def _observe(self, scope: Scope, status: int, started: float) -> None:
        route = scope.get("route")
        template = getattr(route, "path", None) or "unmatched"
        metrics = self.state.metrics
        metrics.requests.labels(template, scope.get("method", ""), str(status)).inc()
        metrics.seconds.labels(template).observe(time.perf_counter() - started)


def create_app(state: GatewayState) -> FastAPI:
    """The application over `state`; the caller runs it (uvicorn) and closes `state.mesh`."""
    schemas = Schemas()
    app = FastAPI(
        title=TITLE,
        version="2.0",
        description=(
            "Appendix C's endpoints of LatentMAS/2.0 and the rest of the agent API, as one more "
            "client of the mesh's broker. Authenticate with `Authorization: Bearer <token>`. "
            "Every error has one body: `code` (the protocol's), `message`, `resolution`, "
            "`details`."
        ),
    )
    app.state.gateway = state
    app.include_router(exchange_router(schemas))
    app.include_router(registry_router(schemas))
    app.include_router(ledger_router(schemas))
    app.include_router(market_router(schemas))
    app.include_router(memory_router(schemas))
    _add_operations(app, schemas)
    _add_error_handlers(app)
    app.add_middleware(Guard, state=state)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title, version=app.version, description=app.description,
                routes=app.routes,
            )  # fmt: skip
            components = document.setdefault("components", {}).setdefault("schemas", {})
            components.update(schemas.components)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app


def _add_operations(app: FastAPI, schemas: Schemas) -> None:
    @app.get(
        "/healthz",
        tags=["operations"],
        summary="200 when the broker answers and every service has a worker",
        responses=schemas.responses(None, authenticated=False),
    )
    async def healthz(request: Request) -> JSONResponse:
        services = await gateway_of(request).mesh.services(HEALTH_TIMEOUT_MS)
        missing = sorted(name for name, up in services.items() if not up)
        if missing:
            raise ServiceUnavailable(
                f"no worker for {', '.join(missing)}", details={"services": services}
            )
        return JSONResponse({"status": "ok", "services": services})

    @app.get(
        "/metrics",
        tags=["operations"],
        summary="Prometheus metrics of this gateway",
        response_class=Response,
        responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "metrics"}},
    )
    async def metrics(request: Request) -> Response:
        registry = gateway_of(request).metrics.registry
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


def _add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ProtocolError)
    async def protocol_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, ProtocolError)
        return error_response(error)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, RequestValidationError)
        problems = [
            {"loc": [str(part) for part in item.get("loc", ())], "msg": str(item.get("msg"))}
            for item in error.errors()[:VALIDATION_ERRORS_SHOWN]
        ]
        first = problems[0] if problems else {"loc": [], "msg": "invalid"}
        message = f"{'.'.join(first['loc'])}: {first['msg']}"[:256]
        details = {"errors": problems, "error_count": len(error.errors())}
        return error_response(InvalidRequest(message, details=details))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: Exception) -> JSONResponse:
        assert isinstance(error, HTTPException)
        if error.status_code == 404:
            return error_response(NotFound(f"no such path: {request.url.path}"[:256]))
        refused = InvalidRequest(str(error.detail)[:256], details={"status": error.status_code})
        response = error_response(refused)
        response.status_code = error.status_code if error.status_code < 500 else 400
        if error.headers:
            response.headers.update(error.headers)
        return response


__all__ = ["Guard", "create_app", "error_response"]
