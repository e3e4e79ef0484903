"""What the registry holds and answers: agents, their key files, and its typed errors."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from latentmas_mesh.errors import Conflict, InvalidRequest

NAME_CHARS_MAX: Final = 64
GATEWAY_NAME: Final = "gateway"
"""The gateway's own key pair sits beside the agents' under this name, so no agent may take it."""
_NAME: Final = re.compile(rf"[a-z0-9][a-z0-9_-]{{0,{NAME_CHARS_MAX - 1}}}")


class AgentExists(Conflict):
    """`add` of a name the registry holds already; a revoked agent's name stays taken (its
    key and its ledger account are history that a new agent must not inherit)."""


class UnknownAgent(InvalidRequest):
    """A name the registry does not hold."""


class InvalidAgentName(InvalidRequest):
    """A name that cannot be an agent's: it names files, so it is one plain lowercase word."""


def check_name(name: str) -> str:
    """`name` if it can name an agent: 1..64 of a-z 0-9 _ -, starting with a letter or digit
    (one file name on every filesystem, case-insensitive ones included), and not `gateway`."""
    if not isinstance(name, str) or _NAME.fullmatch(name) is None:
        msg = (
            f"{str(name)[:NAME_CHARS_MAX]!r} is not an agent name: use 1-{NAME_CHARS_MAX} "
            "characters of a-z, 0-9, '_' and '-', starting with a letter or digit"
        )
        raise InvalidAgentName(msg, details={"name": str(name)[:NAME_CHARS_MAX]})
    if name == GATEWAY_NAME:
        msg = f"{GATEWAY_NAME!r} is the gateway's own key pair; choose another name"
        raise InvalidAgentName(msg, details={"name": name})
    return name


@dataclass(frozen=True, slots=True)
class Agent:
    """One registered agent. `agent_id` is its CURVE public key in Z85: what the broker's ZAP
    reports for its own connections, what a gateway names on its behalf, and the ledger's
    `agent:<agent_id>` account, so one id ties its CURVE key and its HTTP token together."""

    name: str
    agent_id: str
    operator: bool
    created_at_ms: int
    revoked_at_ms: int | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at_ms is not None

    def to_json(self) -> dict[str, Any]:
        """The agent as plain JSON values (the CLI's `--json`, the gateway's answers)."""
        return {
            "name": self.name,
            "agent": self.agent_id,
            "operator": self.operator,
            "created_at_ms": self.created_at_ms,
            "revoked": self.revoked,
            "revoked_at_ms": self.revoked_at_ms,
        }


@dataclass(frozen=True, slots=True)
class KeyPair:
    """A CURVE key pair in the state directory: the public key where the broker reads allowed
    clients, the secret one (0600) where only its owner should."""

    identity: str
    public_file: Path
    secret_file: Path


@dataclass(frozen=True, slots=True)
class Enrolment:
    """What `add` hands back once: the agent, its bearer token (never stored, never in a repr)
    and its key files."""

    agent: Agent
    token: str = field(repr=False)
    keys: KeyPair

    def to_json(self) -> dict[str, Any]:
        """The agent, its token and its key files: `latentmas agents add --json`."""
        return {
            **self.agent.to_json(),
            "token": self.token,
            "public_key_file": str(self.keys.public_file),
            "secret_key_file": str(self.keys.secret_file),
        }


__all__ = [
    "GATEWAY_NAME",
    "NAME_CHARS_MAX",
    "Agent",
    "AgentExists",
    "Enrolment",
    "InvalidAgentName",
    "KeyPair",
    "UnknownAgent",
    "check_name",
]
