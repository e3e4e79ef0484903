"""Multipart send and receive on pyzmq's backend socket methods, for the hot paths."""

# pyzmq's `send_multipart` and `recv_multipart` loop in Python over `send`/`recv`, combining
# IntFlag enums per frame; calling the backend (Cython) methods with plain integers does the same
# work for a fraction of the CPU (about 1 us instead of 7 us for a 5-frame message on this
# project's reference machine). The broker, the worker base and the transports use these; the
# semantics are pyzmq's own: `copy=False` sends Frames and large buffers without copying.

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import zmq
from zmq.backend import Socket as _BackendSocket
from zmq.backend import zmq_poll

# pyzmq's stubs type these methods awkwardly; the calls below match the Cython signatures
# send(data, flags, copy) and recv(flags, copy).
_send: Callable[..., object] = _BackendSocket.send
_recv: Callable[..., Any] = _BackendSocket.recv
SNDMORE = int(zmq.SNDMORE)
NOBLOCK = int(zmq.NOBLOCK)
POLLIN = int(zmq.POLLIN)
ROUTER_ENVELOPE_FRAMES = 4
"""At the broker, an MDP body starts at index 4 or later (routing id, header, command, service
or client address): frames before it arrive as bytes, the body as zero-copy `zmq.Frame`s."""
DEALER_ENVELOPE_FRAMES = 3
"""At a client, a body starts at index 3 or later (header, command, service)."""
WORKER_ENVELOPE_FRAMES = 4
"""At a worker, a body starts at index 4 or later (header, command, client address, delimiter)."""


def send_frames(socket: zmq.Socket[Any], frames: Sequence[object], flags: int = 0) -> None:
    """Send a multipart message: each frame zero-copy when it is a Frame or a large buffer."""
    last = len(frames) - 1
    more = flags | SNDMORE
    for index, frame in enumerate(frames):
        _send(socket, frame, more if index < last else flags, False)


def send_routed(socket: zmq.Socket[Any], peer: bytes, frames: Sequence[object]) -> None:
    """Send `frames` to `peer` through a ROUTER socket, without blocking (zmq.Again if full)."""
    more = NOBLOCK | SNDMORE
    _send(socket, peer, more, False)
    last = frames[-1]
    for frame in frames[:-1]:
        _send(socket, frame, more, False)
    _send(socket, last, NOBLOCK, False)


def recv_frames(
    socket: zmq.Socket[Any],
    flags: int = 0,
    *,
    copied: int = ROUTER_ENVELOPE_FRAMES,
    first_as_frame: bool = False,
) -> list[Any]:
    """Receive a multipart message: the first `copied` frames as bytes, the rest zero-copy.

    `first_as_frame` keeps frame 0 a zmq.Frame, whose metadata (ZAP User-Id) can be read.
    """
    # Every part arrives as a Frame (its `more` flag avoids a getsockopt per part, which pyzmq
    # routes through an enum lookup); envelope parts are then turned into bytes, which is cheap.
    frame = _recv(socket, flags, False)
    parts: list[Any] = [frame if first_as_frame else frame.bytes]
    while frame.more:
        frame = _recv(socket, 0, False)
        parts.append(frame.bytes if len(parts) < copied else frame)
    return parts


def readable(sockets: Sequence[zmq.Socket[Any]], timeout_ms: int) -> list[zmq.Socket[Any]]:
    """The sockets with a message waiting, after at most `timeout_ms` (no Poller object)."""
    ready = zmq_poll([(socket, POLLIN) for socket in sockets], timeout_ms)
    return [socket for socket, events in ready if events & POLLIN]


__all__ = [
    "DEALER_ENVELOPE_FRAMES",
    "NOBLOCK",
    "ROUTER_ENVELOPE_FRAMES",
    "WORKER_ENVELOPE_FRAMES",
    "readable",
    "recv_frames",
    "send_frames",
    "send_routed",
]
