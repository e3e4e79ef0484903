"""The markets and long-term memory over HTTP: publish, search, read, withdraw, quote, use,
attest; remember, recall, forget. Each route sends the SDK's own call for the agent the
bearer token names; a use is the SDK's three steps (quote, the agent's reservation, use)."""

from __future__ import annotations

from typing import Annotated, Any, Final

from fastapi import APIRouter, Path, Query, Request
from pydantic import Field
from starlette.responses import Response

from latentmas_mesh.agents import Agent
from latentmas_mesh.client import market_calls as mc
from latentmas_mesh.client.calls import Call
from latentmas_mesh.errors import InvalidRequest, NotFound
from latentmas_mesh.gateway.deps import CurrentAgent, gateway_of
from latentmas_mesh.gateway.exchange_api import PREFIX, IdempotencyKey
from latentmas_mesh.gateway.forms import answer, json_response, read_message, wants_binary
from latentmas_mesh.gateway.mesh import mesh_request_id
from latentmas_mesh.gateway.openapi import Schemas
from latentmas_mesh.protocol.base import ModelName, WireModel
from latentmas_mesh.protocol.ledger import EventId, LedgerEventsReply, LedgerEventsRequest
from latentmas_mesh.protocol.market import (
    QUERY_CHARS_MAX,
    RECALL_K_MAX,
    SEARCH_LIMIT_MAX,
    Attestation,
    CapabilityDelivery,
    ForgetReply,
    Listing,
    MarketQuote,
    MemoryDelivery,
    MemoryRecord,
    PublishCapabilityRequest,
    PublishMemoryRequest,
    PublishReasoningChainRequest,
    ReasoningDelivery,
    RecallReply,
    RememberRequest,
    SearchReply,
    SearchRequest,
)
from latentmas_mesh.settlement.ledger_client import raise_for_result
from latentmas_mesh.units import PRICE_UNITS_MAX, AssetType

PUBLISH: Final[dict[AssetType, type[WireModel]]] = {
    AssetType.MEMORY: PublishMemoryRequest,
    AssetType.REASONING: PublishReasoningChainRequest,
    AssetType.CAPABILITY: PublishCapabilityRequest,
}
DELIVERED: Final = {
    AssetType.MEMORY: MemoryDelivery,
    AssetType.REASONING: ReasoningDelivery,
    AssetType.CAPABILITY: CapabilityDelivery,
}
ListingPath = Annotated[str, Path(pattern=r"^[a-z]{1,16}-[0-9a-f]{32}$")]


class UseBody(WireModel):
    """`POST .../listings/{id}/use`: the quote to pay and the model to receive the asset in.
    Without `reservation_id` the gateway reserves the quoted price from the caller's account
    (the SDK's own step); `Idempotency-Key` makes a retry the same use, charged once."""

    quote_id: EventId
    model: ModelName
    reservation_id: EventId | None = None
    min_quality: float | None = Field(default=None, ge=0.0, le=1.0)


class AttestBody(WireModel):
    """`POST .../listings/{id}/attestations`: a registered validator's measurement."""

    model: ModelName
    quality: float = Field(ge=0.0, le=1.0)
    method: str = Field(default="", max_length=200)


def market_router(schemas: Schemas) -> APIRouter:
    """The routes, their documented bodies and answers in `schemas`."""
    router = APIRouter(prefix=PREFIX, tags=["markets"])
    base = "/markets/{market}/listings"

    @router.post(
        base,
        summary="Publish a listing: a KV cache, a reasoning chain or an embedding",
        openapi_extra=schemas.body(PublishMemoryRequest, binary=True),
        responses=schemas.responses(Listing, 404, 413, 422, ok_status=201),
        status_code=201,
    )
    async def publish(request: Request, agent: CurrentAgent, market: AssetType) -> Response:
        gateway = gateway_of(request)
        incoming = await read_message(
            request.headers, request.stream(), PUBLISH[market], gateway.settings
        )
        call: Call[Listing] = Call(mc.MARKET_SERVICE, incoming.message, mc.reader(Listing))
        listed = await gateway.mesh.run(call, agent.agent_id)
        return json_response(listed, status_code=201)

    @router.get(
        base,
        summary="Search a market: text, model, creator, quality floor, price range; paged",
        responses=schemas.responses(SearchReply, 404),
    )
    async def search(
        request: Request,
        agent: CurrentAgent,
        market: AssetType,
        *,
        q: Annotated[str | None, Query(min_length=1, max_length=QUERY_CHARS_MAX)] = None,
        model: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
        creator: Annotated[str | None, Query(min_length=1, max_length=128)] = None,
        min_quality: Annotated[float | None, Query(ge=0.0, le=1.0)] = None,
        min_price: Annotated[int | None, Query(ge=0, le=PRICE_UNITS_MAX)] = None,
        max_price: Annotated[int | None, Query(ge=0, le=PRICE_UNITS_MAX)] = None,
        limit: Annotated[int, Query(ge=1, le=SEARCH_LIMIT_MAX)] = 20,
        cursor: Annotated[str | None, Query(max_length=64)] = None,
    ) -> Response:
        call = mc.search(market, q=q, model=model, creator=creator, min_quality=min_quality,
                         min_price=min_price, max_price=max_price, limit=limit,
                         cursor=cursor)  # fmt: skip
        return json_response(await gateway_of(request).mesh.run(call, agent.agent_id))

    @router.post(
        f"{base}/search",
        summary="Search a market by similarity to an embedding (body: the search request)",
        openapi_extra=schemas.body(SearchRequest, binary=True),
        responses=schemas.responses(SearchReply, 404),
    )
    async def similar(request: Request, agent: CurrentAgent, market: AssetType) -> Response:
        gateway = gateway_of(request)
        incoming = await read_message(
            request.headers, request.stream(), SearchRequest, gateway.settings
        )
        assert isinstance(incoming.message, SearchRequest)
        if incoming.message.market != market:
            raise InvalidRequest("the body's market is not the path's", details={"field": "market"})
        call: Call[SearchReply] = Call(mc.MARKET_SERVICE, incoming.message, mc.reader(SearchReply))
        return json_response(await gateway.mesh.run(call, agent.agent_id))

    @router.get(
        f"{base}/{{listing_id}}", summary="One listing", responses=schemas.responses(Listing, 404)
    )
    async def listing(
        request: Request, agent: CurrentAgent, market: AssetType, listing_id: ListingPath
    ) -> Response:
        found = await gateway_of(request).mesh.run(mc.listing(listing_id), agent.agent_id)
        return json_response(_of_market(found, market))

    @router.delete(
        f"{base}/{{listing_id}}",
        summary="Withdraw a listing (its creator only)",
        responses=schemas.responses(Listing, 404),
    )
    async def withdraw(
        request: Request, agent: CurrentAgent, market: AssetType, listing_id: ListingPath
    ) -> Response:
        mesh = gateway_of(request).mesh
        _of_market(await mesh.run(mc.listing(listing_id), agent.agent_id), market)
        return json_response(await mesh.run(mc.withdraw(listing_id), agent.agent_id))

    @router.post(
        f"{base}/{{listing_id}}/quote",
        summary="A signed, time-bound price for one use (the formula's factors shown)",
        responses=schemas.responses(MarketQuote, 404),
    )
    async def quote(
        request: Request, agent: CurrentAgent, market: AssetType, listing_id: ListingPath
    ) -> Response:
        mesh = gateway_of(request).mesh
        quoted = await mesh.run(mc.quote(listing_id), agent.agent_id)
        _require_market(listing_id, market)
        return json_response(quoted)

    @router.post(
        f"{base}/{{listing_id}}/use",
        summary="Pay for a listing and receive it in the caller's model's space",
        openapi_extra=schemas.body(UseBody, binary=False),
        responses=schemas.responses(MemoryDelivery, 402, 404, 409, 413, 422, binary=True),
    )
    async def use(
        request: Request,
        agent: CurrentAgent,
        market: AssetType,
        listing_id: ListingPath,
        idempotency_key: IdempotencyKey = None,
    ) -> Response:
        gateway = gateway_of(request)
        incoming = await read_message(
            request.headers, request.stream(), UseBody, gateway.settings, binary_allowed=False
        )
        body = incoming.message
        assert isinstance(body, UseBody)
        _require_market(listing_id, market)
        request_id = mesh_request_id(agent.agent_id, idempotency_key)
        reservation_id = body.reservation_id
        if reservation_id is None:
            reservation_id = await _reserve(request, agent, body.quote_id, request_id)
        delivered: Any = DELIVERED[market]
        call = mc.use(listing_id, body.model, delivered, quote_id=body.quote_id,
                      reservation_id=reservation_id, min_quality=body.min_quality)  # fmt: skip
        result, frames = await gateway.mesh.run_frames(call, agent.agent_id, request_id)
        response = answer(result, frames, binary=wants_binary(request.headers, default=False))
        response.headers["x-request-id"] = request_id
        return response

    @router.post(
        f"{base}/{{listing_id}}/attestations",
        summary="A registered validator's measured quality of a listing",
        openapi_extra=schemas.body(AttestBody, binary=False),
        responses=schemas.responses(Attestation, 404, ok_status=201),
        status_code=201,
    )
    async def attest(
        request: Request, agent: CurrentAgent, market: AssetType, listing_id: ListingPath
    ) -> Response:
        gateway = gateway_of(request)
        incoming = await read_message(
            request.headers, request.stream(), AttestBody, gateway.settings, binary_allowed=False
        )
        body = incoming.message
        assert isinstance(body, AttestBody)
        _require_market(listing_id, market)
        call = mc.attest(listing_id, body.model, body.quality, body.method)
        return json_response(await gateway.mesh.run(call, agent.agent_id), status_code=201)

    return router


def memory_router(schemas: Schemas) -> APIRouter:
    """Long-term memory (spec 3.5.4): the caller's own, nobody else's."""
    router = APIRouter(prefix=PREFIX, tags=["long-term memory"])

    @router.post(
        "/memory/long-term",
        summary="Remember: append to the caller's long-term memory",
        openapi_extra=schemas.body(RememberRequest, binary=True),
        responses=schemas.responses(MemoryRecord, 413, 422, 429, ok_status=201),
        status_code=201,
    )
    async def remember(request: Request, agent: CurrentAgent) -> Response:
        gateway = gateway_of(request)
        incoming = await read_message(
            request.headers, request.stream(), RememberRequest, gateway.settings
        )
        call: Call[MemoryRecord] = Call(mc.MARKET_SERVICE, incoming.message,
                                        mc.reader(MemoryRecord))  # fmt: skip
        return json_response(await gateway.mesh.run(call, agent.agent_id), status_code=201)

    @router.get(
        "/memory/long-term",
        summary="Recall the caller's memories: newest first, or nearest the text `q`",
        responses=schemas.responses(RecallReply),
    )
    async def recall(
        request: Request,
        agent: CurrentAgent,
        q: Annotated[str | None, Query(min_length=1, max_length=QUERY_CHARS_MAX)] = None,
        k: Annotated[int, Query(ge=1, le=RECALL_K_MAX)] = 10,
        with_kv: bool = False,
    ) -> Response:
        call = mc.recall(q, k=k, with_kv=with_kv)
        return json_response(await gateway_of(request).mesh.run(call, agent.agent_id))

    @router.delete(
        "/memory/long-term/{memory_id}",
        summary="Forget one of the caller's memories, for real",
        responses=schemas.responses(ForgetReply, 404),
    )
    async def forget(
        request: Request,
        agent: CurrentAgent,
        memory_id: Annotated[str, Path(pattern=r"^mem-[0-9a-f]{32}$")],
    ) -> Response:
        reply = await gateway_of(request).mesh.run(mc.forget(memory_id), agent.agent_id)
        if not reply.forgotten:
            raise NotFound(f"no memory {memory_id!r} of this agent")
        return json_response(reply)

    return router


async def _reserve(request: Request, agent: Agent, quote_id: str, request_id: str) -> str:
    """The SDK's reservation step for an HTTP use: the agent's stored quote, reserved from its
    own account (the ledger takes the payer from the agent the gateway acts for)."""
    mesh = gateway_of(request).mesh
    quoted = await mesh.run(mc.quote_lookup(quote_id), agent.agent_id)
    event = mc.reservation(quoted, request_id)
    reply = await mesh.ledger(LedgerEventsRequest(events=(event,)), LedgerEventsReply,
                              agent.agent_id)  # fmt: skip
    raise_for_result(reply.results[0])
    return event.event_id


def _require_market(listing_id: str, market: AssetType) -> None:
    if mc.market_of(listing_id) != market:
        raise NotFound(f"no listing {listing_id!r} on the {market.value} market")


def _of_market(found: Listing, market: AssetType) -> Listing:
    if found.market != market:
        raise NotFound(f"no listing {found.listing_id!r} on the {market.value} market")
    return found


__all__ = ["AttestBody", "UseBody", "market_router", "memory_router"]
