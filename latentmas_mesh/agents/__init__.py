"""Agents: who may use the mesh, each one agent id (its CURVE public key) with a bearer token."""

from latentmas_mesh.agents._keys import KeyFolders
from latentmas_mesh.agents._registry import DATABASE_NAME, AgentRegistry
from latentmas_mesh.agents._token import TOKEN_PREFIX
from latentmas_mesh.agents._types import (
    GATEWAY_NAME,
    Agent,
    AgentExists,
    Enrolment,
    InvalidAgentName,
    KeyPair,
    UnknownAgent,
    check_name,
)
from latentmas_mesh.agents.settings import AgentSettings

__all__ = [
    "DATABASE_NAME",
    "GATEWAY_NAME",
    "TOKEN_PREFIX",
    "Agent",
    "AgentExists",
    "AgentRegistry",
    "AgentSettings",
    "Enrolment",
    "InvalidAgentName",
    "KeyFolders",
    "KeyPair",
    "UnknownAgent",
    "check_name",
]
