"""The broker's HTTP endpoint: Prometheus text on /metrics, a liveness answer on /healthz."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from wsgiref.types import StartResponse, WSGIApplication, WSGIEnvironment

from prometheus_client import CollectorRegistry, make_wsgi_app

HEALTH_PATH = "/healthz"
"""Answered from `healthy()` alone, never by rendering metrics: a probe with a 1 s timeout must
not depend on how large a scrape is."""


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    """One thread per request, so a slow scrape never holds up a health probe."""

    daemon_threads = True  # fire and forget: close() does not wait for a scrape in progress


class _QuietHandler(WSGIRequestHandler):
    """Writes no access log: a probe and a scrape every few seconds are not news."""

    def log_message(self, format: str, *args: object) -> None:
        """Log nothing."""


def make_app(registry: CollectorRegistry, healthy: Callable[[], bool]) -> WSGIApplication:
    """`/healthz`: 200 `ok` when `healthy()`, else 503; any other path: the registry's metrics.

    Every other path serves metrics, as `prometheus_client.start_http_server` did before.
    """
    metrics = make_wsgi_app(registry)

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != HEALTH_PATH:
            body: Iterable[bytes] = metrics(environ, start_response)
            return body
        if healthy():
            start_response("200 OK", [("Content-Type", "text/plain; charset=utf-8")])
            return [b"ok\n"]
        start_response("503 Service Unavailable", [("Content-Type", "text/plain; charset=utf-8")])
        return [b"stalled\n"]

    return app


def start_http(
    host: str, port: int, registry: CollectorRegistry, healthy: Callable[[], bool]
) -> tuple[WSGIServer, int]:
    """Serve `make_app` on `host:port` (0 picks a port) from a daemon thread.

    Returns the server (`shutdown()` then `server_close()` stop it) and the bound port.
    """
    family, address = _family_of(host, port)

    class Server(_ThreadingServer):
        address_family = family

    server: WSGIServer = make_server(
        address, port, make_app(registry, healthy), Server, handler_class=_QuietHandler
    )
    thread = threading.Thread(target=server.serve_forever, name="broker-http", daemon=True)
    thread.start()
    return server, int(server.server_port)


def _family_of(host: str, port: int) -> tuple[socket.AddressFamily, str]:
    """IPv4 or IPv6 for `host` (WSGIServer assumes IPv4, which cannot bind `::`)."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    family, _, _, _, address = infos[0]
    return family, str(address[0])


__all__ = ["HEALTH_PATH", "make_app", "start_http"]
