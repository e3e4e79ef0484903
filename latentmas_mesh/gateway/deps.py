"""What routes ask FastAPI for: the gateway's shared state, and the agent a request is for."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from latentmas_mesh.agents import Agent
from latentmas_mesh.gateway.auth import authenticate, require_operator
from latentmas_mesh.gateway.state import GatewayState

BEARER = HTTPBearer(
    auto_error=False,
    description="The agent's token from `latentmas agents add NAME` (shown once).",
)


def gateway_of(request: Request) -> GatewayState:
    state: GatewayState = request.app.state.gateway
    return state


async def current_agent(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
) -> Agent:
    """The live agent of the request's bearer token (401 otherwise), checked on every call."""
    agent = authenticate(gateway_of(request).registry, request.headers.get("authorization"))
    request.state.agent = agent
    return agent


async def current_operator(agent: Annotated[Agent, Depends(current_agent)]) -> Agent:
    """The request's agent when it is an operator (403 otherwise)."""
    return require_operator(agent)


CurrentAgent = Annotated[Agent, Depends(current_agent)]
CurrentOperator = Annotated[Agent, Depends(current_operator)]

__all__ = ["BEARER", "CurrentAgent", "CurrentOperator", "current_agent", "gateway_of"]
