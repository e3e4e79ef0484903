"""Fixtures for codec tests: real ZeroMQ socket pairs, closed after each test."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import zmq


@pytest.fixture
def zmq_pair() -> Iterator[Callable[[str], tuple[zmq.Socket[bytes], zmq.Socket[bytes]]]]:
    """Factory for a connected PAIR socket pair on an endpoint (tcp wildcard port allowed)."""
    context = zmq.Context()
    sockets: list[zmq.Socket[bytes]] = []

    def make(endpoint: str) -> tuple[zmq.Socket[bytes], zmq.Socket[bytes]]:
        server, client = context.socket(zmq.PAIR), context.socket(zmq.PAIR)
        for socket in (server, client):
            socket.linger = 0
            socket.rcvtimeo = 5_000
            socket.sndtimeo = 5_000
            sockets.append(socket)
        server.bind(endpoint)
        client.connect(server.getsockopt_string(zmq.LAST_ENDPOINT))
        return client, server

    yield make
    for socket in sockets:
        socket.close()
    context.term()
