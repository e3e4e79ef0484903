"""The gateway's side of the broker: one asyncio transport under the gateway's own key, every
call made for the agent the HTTP request authenticated (on-behalf-of), ledger answers checked
under their seal."""

from __future__ import annotations

import hashlib
from typing import Final, TypeVar

import zmq
from pydantic import BaseModel

from latentmas_mesh.client.calls import Call, expect
from latentmas_mesh.errors import InvalidRequest
from latentmas_mesh.protocol.align import ALIGN_SERVICE
from latentmas_mesh.protocol.ledger import LEDGER_SERVICE
from latentmas_mesh.protocol.market import MARKET_SERVICE
from latentmas_mesh.protocol.registry import WMATRIX_SERVICE
from latentmas_mesh.settlement.ledger_client import reply_verifier
from latentmas_mesh.transport import (
    AsyncTransport,
    TransportSettings,
    decode_reply,
    encode_call,
    new_request_id,
)

T = TypeVar("T")
R = TypeVar("R", bound=BaseModel)

SERVICES: Final = (ALIGN_SERVICE, WMATRIX_SERVICE, LEDGER_SERVICE, MARKET_SERVICE)
"""What /healthz asks the broker about: the services the gateway's endpoints need."""
IDEMPOTENCY_KEY_CHARS_MAX: Final = 128


def mesh_request_id(agent: str | None, key: str | None) -> str:
    """The mesh request id of an HTTP call: new when the caller sent no `Idempotency-Key`, else
    derived from (agent, key), so one agent's retry is the same exchange (paid at most once)
    and two agents choosing the same key never meet."""
    if key is None:
        return new_request_id()
    if not 0 < len(key) <= IDEMPOTENCY_KEY_CHARS_MAX or not key.isprintable():
        msg = f"Idempotency-Key must be 1..{IDEMPOTENCY_KEY_CHARS_MAX} printable characters"
        raise InvalidRequest(msg, details={"chars": len(key)})
    return hashlib.sha256(f"{agent or '-'}\n{key}".encode()).hexdigest()[:32]


class GatewayMesh:
    """The broker as the gateway reaches it. Concurrent calls share one AsyncTransport (a
    socket each, reused); replies are not scanned for NaN here (the HTTP client reads them)."""

    def __init__(
        self, settings: TransportSettings, *, context: zmq.Context[zmq.Socket[bytes]] | None = None
    ) -> None:
        self.settings = settings.model_copy(update={"check_finite": False})
        self.transport = AsyncTransport(self.settings, context=context)
        self._verifier = reply_verifier(self.settings)

    def close(self) -> None:
        self.transport.close()

    async def run(self, call: Call[T], agent: str | None, request_id: str | None = None) -> T:
        """`call` for `agent` (None: as the gateway itself, for public reads), its reply read
        and checked as the SDK reads it; an error reply raises its typed error."""
        result, _ = await self.run_frames(call, agent, request_id)
        return result

    async def run_frames(
        self, call: Call[T], agent: str | None, request_id: str | None = None
    ) -> tuple[T, list[zmq.Frame]]:
        """`run`, also returning the reply's own frames: a binary HTTP answer carries the
        worker's bytes as they arrived (no re-encoding, no copy)."""
        request_id, frames = encode_call(call.message, request_id, agent)
        body = await self.transport.request(call.service, frames, request_id=request_id)
        return call.read(decode_reply(body, self.settings).message), body

    async def ledger(self, message: BaseModel, reply_type: type[R], agent: str) -> R:
        """A ledger request for `agent`; under CURVE its answer counts only under a trusted
        ledger seal (the broker routes it but is not trusted for it)."""
        request_id, frames = encode_call(message, None, agent)
        body = await self.transport.request(LEDGER_SERVICE, frames, request_id=request_id)
        if self._verifier is None:
            reply = decode_reply(body, self.settings).message
        else:
            reply = self._verifier.read(request_id, body, self.settings).message
        return expect(reply, reply_type)

    async def services(self, timeout_ms: int) -> dict[str, bool]:
        """Whether the broker has a worker for each service the endpoints need, now."""
        return {
            name: await self.transport.service_available(name, timeout_ms=timeout_ms)
            for name in SERVICES
        }


__all__ = ["IDEMPOTENCY_KEY_CHARS_MAX", "SERVICES", "GatewayMesh", "mesh_request_id"]
