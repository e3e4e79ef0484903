"""The agent's account over HTTP: balance and statement for the caller (the ledger decides
whose account it may read), deposits for operators; every answer under a ledger seal."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from latentmas_mesh.gateway.deps import CurrentAgent, CurrentOperator, gateway_of
from latentmas_mesh.gateway.exchange_api import PREFIX
from latentmas_mesh.gateway.forms import json_response, read_message
from latentmas_mesh.gateway.openapi import Schemas
from latentmas_mesh.protocol.ledger import (
    STATEMENT_ENTRIES_MAX,
    BalanceReply,
    BalanceRequest,
    DepositEvent,
    EventResult,
    LedgerEventsReply,
    LedgerEventsRequest,
    StatementReply,
    StatementRequest,
)
from latentmas_mesh.settlement.ledger_client import raise_for_result

Account = Annotated[
    str | None,
    Query(max_length=160, description="Another account (`agent:<id>`): its owner or operators."),
]


def ledger_router(schemas: Schemas) -> APIRouter:
    router = APIRouter(prefix=f"{PREFIX}/ledger", tags=["ledger"])

    @router.get(
        "/balance", summary="The caller's balance", responses=schemas.responses(BalanceReply)
    )
    async def balance(request: Request, agent: CurrentAgent, account: Account = None) -> Response:
        mesh = gateway_of(request).mesh
        reply = await mesh.ledger(BalanceRequest(account=account), BalanceReply, agent.agent_id)
        return json_response(reply)

    @router.get(
        "/statement",
        summary="A page of the caller's journal, oldest first",
        responses=schemas.responses(StatementReply),
    )
    async def statement(
        request: Request,
        agent: CurrentAgent,
        account: Account = None,
        after_entry_id: Annotated[int, Query(ge=0, le=2**62)] = 0,
        limit: Annotated[int, Query(ge=1, le=STATEMENT_ENTRIES_MAX)] = 100,
    ) -> Response:
        message = StatementRequest(account=account, after_entry_id=after_entry_id, limit=limit)
        reply = await gateway_of(request).mesh.ledger(message, StatementReply, agent.agent_id)
        return json_response(reply)

    @router.post(
        "/events",
        summary="Ledger events for the caller: reserve (to pay a priced exchange), void, settle",
        description=(
            "The caller is the payer of every event; the ledger decides what it may do. Each "
            "event gets its result (applied, or its status or error), idempotent by event_id. "
            "Send a reservation's event_id as an exchange's `reservation_id` to pay for it."
        ),
        openapi_extra=schemas.body(LedgerEventsRequest, binary=False),
        responses=schemas.responses(LedgerEventsReply, 409),
    )
    async def events(request: Request, agent: CurrentAgent) -> Response:
        gateway = gateway_of(request)
        incoming = await read_message(
            request.headers, request.stream(), LedgerEventsRequest, gateway.settings,
            binary_allowed=False,
        )  # fmt: skip
        reply = await gateway.mesh.ledger(incoming.message, LedgerEventsReply, agent.agent_id)
        return json_response(reply)

    @router.post(
        "/deposit",
        summary="Fund an agent's account (operators only; idempotent by event_id)",
        openapi_extra=schemas.body(DepositEvent, binary=False),
        responses=schemas.responses(EventResult, 409),
    )
    async def deposit(request: Request, operator: CurrentOperator) -> Response:
        gateway = gateway_of(request)
        incoming = await read_message(
            request.headers, request.stream(), DepositEvent, gateway.settings, binary_allowed=False
        )
        assert isinstance(incoming.message, DepositEvent)
        events = LedgerEventsRequest(events=(incoming.message,))
        reply = await gateway.mesh.ledger(events, LedgerEventsReply, operator.agent_id)
        (result,) = reply.results
        return json_response(raise_for_result(result))

    return router


__all__ = ["ledger_router"]
