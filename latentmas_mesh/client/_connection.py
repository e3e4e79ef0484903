"""How a client reaches the mesh: its CURVE key files, its deadline, and the agent it acts as."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from latentmas_mesh.errors import Unauthorized
from latentmas_mesh.transport import TransportSettings, public_key_of

TIMEOUT_MS_DEFAULT: Final = 30_000
ATTEMPT_TIMEOUT_MS_DEFAULT: Final = 10_000


@dataclass(frozen=True, slots=True)
class MeshKeys:
    """The CURVE files an agent connects with (`latentmas keys NAME` writes a pair).

    secret_key_file: the agent's own `.key_secret`; its public key is the agent id the ledger
    charges. broker_key_file: the broker's public `.key`. ledger_keys_dir: the ledger workers'
    public keys (the broker's `workers/latentmas.ledger/`); `balance()` and `statement()` take a
    ledger answer only under a seal of one of them, so they need it.
    """

    secret_key_file: Path
    broker_key_file: Path
    ledger_keys_dir: Path | None = None

    @property
    def agent_id(self) -> str:
        """The agent id these keys authenticate: the Z85 public key of the secret file."""
        return public_key_of(self.secret_key_file)


def transport_settings(
    url: str, keys: MeshKeys | None, *, timeout_ms: int, attempt_timeout_ms: int | None
) -> TransportSettings:
    """The transport's settings for a client whose every call has `timeout_ms` in all.

    A silent attempt (a broker restarting, a worker dying with the request) is sent again with
    the same request id after `attempt_timeout_ms`, as often as the deadline allows: the
    deadline, not a count, ends the retries. Without `keys`, the LATENTMAS_CURVE_* and
    LATENTMAS_LEDGER_KEYS_DIR variables still apply, as for every transport.
    """
    attempt_ms = min(attempt_timeout_ms or ATTEMPT_TIMEOUT_MS_DEFAULT, timeout_ms)
    settings = TransportSettings(
        broker_url=url,
        request_timeout_ms=timeout_ms,
        attempt_timeout_ms=attempt_ms,
        retries_max=math.ceil(timeout_ms / attempt_ms),
    )
    if keys is None:
        return settings
    files = {
        "curve_secret_key_file": keys.secret_key_file,
        "curve_server_key_file": keys.broker_key_file,
        "ledger_keys_dir": keys.ledger_keys_dir,
    }
    return settings.model_copy(update=files)


def acting_agent(agent: str | None, settings: TransportSettings) -> str | None:
    """The agent id the mesh will charge for this client's calls: that of its CURVE key.

    Naming another agent is what a gateway does for the agents it serves (issue 13's
    on-behalf-of, which the transport does not carry yet): refused here rather than sent under
    the key's own agent, which would charge the wrong account.
    """
    secret = settings.curve_secret_key_file
    own = None if secret is None else public_key_of(secret)
    if agent is None or agent == own:
        return own
    if own is None:
        msg = f"agent {agent!r} needs keys: an agent is identified by its CURVE key pair"
    else:
        msg = f"these keys are agent {own}; acting for agent {agent!r} needs on-behalf-of calls"
    raise Unauthorized(msg, details={"agent": agent, "keys_agent": own})


__all__ = [
    "ATTEMPT_TIMEOUT_MS_DEFAULT",
    "TIMEOUT_MS_DEFAULT",
    "MeshKeys",
    "acting_agent",
    "transport_settings",
]
