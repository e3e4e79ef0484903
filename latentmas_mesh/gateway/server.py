"""The gateway process: the agent registry, a CURVE connection to the broker under the
gateway's own key, and uvicorn serving the application until SIGTERM or Ctrl-C."""

from __future__ import annotations

import json
import math
import socket
import sys
from typing import Final

from latentmas_mesh.agents import AgentRegistry
from latentmas_mesh.errors import Unauthorized
from latentmas_mesh.gateway.app import create_app
from latentmas_mesh.gateway.mesh import GatewayMesh
from latentmas_mesh.gateway.settings import GatewaySettings
from latentmas_mesh.gateway.state import GatewayState
from latentmas_mesh.transport import TransportSettings

BACKLOG: Final = 1024


def transport_settings(settings: GatewaySettings, registry: AgentRegistry) -> TransportSettings:
    """The gateway's client settings: its own key pair, the broker key and ledger keys of the
    environment. CURVE is required: without it a worker cannot tell the gateway from any
    client naming an agent, so none would let it act on behalf of one."""
    keys = registry.gateway_keys()
    attempt_ms = min(settings.attempt_timeout_ms, settings.call_timeout_ms)
    transport = TransportSettings(
        broker_url=settings.connect,
        curve_secret_key_file=keys.secret_file,
        request_timeout_ms=settings.call_timeout_ms,
        attempt_timeout_ms=attempt_ms,
        retries_max=math.ceil(settings.call_timeout_ms / attempt_ms),
    )
    if transport.curve_server_key_file is None:
        msg = (
            "the gateway needs CURVE: set LATENTMAS_CURVE_SERVER_KEY_FILE to the broker's "
            "public key (workers accept on-behalf-of calls only from the gateway's key, "
            f"{keys.identity}, listed in their LATENTMAS_GATEWAY_KEYS)"
        )
        raise Unauthorized(msg)
    return transport


def listening_socket(host: str, port: int) -> socket.socket:
    """A bound, listening TCP socket (port 0: a free one), so the address can be announced
    before uvicorn accepts: connections wait in the backlog meanwhile."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(BACKLOG)
    return sock


def serve(settings: GatewaySettings) -> None:
    """Run the gateway in the foreground; prints one JSON line once listening:
    {"url": "http://HOST:PORT", "agent": <the gateway's key>}."""
    import uvicorn

    registry = AgentRegistry(settings.state_dir)
    try:
        transport = transport_settings(settings, registry)
        state = GatewayState(settings=settings, registry=registry, mesh=GatewayMesh(transport))
        sock = listening_socket(settings.http_host, settings.http_port)
        host, port = sock.getsockname()[:2]
        config = uvicorn.Config(
            create_app(state),
            log_level="warning",
            access_log=False,
            lifespan="off",
            server_header=False,
            timeout_graceful_shutdown=10,
        )
        announced = {"url": f"http://{host}:{port}", "agent": registry.gateway_keys().identity}
        sys.stdout.write(json.dumps(announced) + "\n")
        sys.stdout.flush()
        try:
            uvicorn.Server(config).run(sockets=[sock])
        finally:
            state.mesh.close()
            sock.close()
    finally:
        registry.close()


__all__ = ["listening_socket", "serve", "transport_settings"]
