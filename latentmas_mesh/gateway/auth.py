"""Who is calling: the bearer token of the `Authorization` header, looked up in the agent
registry on every request (no cache, so a revocation holds from the next request on)."""

from __future__ import annotations

from typing import Final

from latentmas_mesh.agents import Agent, AgentRegistry
from latentmas_mesh.errors import Unauthorized

SCHEME: Final = "bearer"


class Unauthenticated(Unauthorized):
    """No credentials, or ones that name no live agent: HTTP 401 (with `WWW-Authenticate`),
    where a known agent asking for what it may not do gets 403."""


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header; None without one."""
    if authorization is None:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != SCHEME or not token.strip():
        raise Unauthenticated("use `Authorization: Bearer <token>` (latentmas agents add NAME)")
    return token.strip()


def authenticate(registry: AgentRegistry, authorization: str | None) -> Agent:
    """The live agent the header's token belongs to; Unauthenticated otherwise (the message
    does not say whether the token was unknown, wrong or revoked)."""
    token = bearer_token(authorization)
    if token is None:
        raise Unauthenticated("this endpoint needs `Authorization: Bearer <token>`")
    agent = registry.authenticate(token)
    if agent is None:
        raise Unauthenticated("the bearer token names no active agent")
    return agent


def require_operator(agent: Agent) -> Agent:
    """`agent` when it is an operator; Unauthorized (403) otherwise."""
    if not agent.operator:
        raise Unauthorized(
            f"agent {agent.name!r} is not an operator", details={"agent": agent.agent_id}
        )
    return agent


__all__ = ["Unauthenticated", "authenticate", "bearer_token", "require_operator"]
