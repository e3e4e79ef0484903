"""Multipart send and receive on pyzmq's backend socket methods, for the hot paths."""

# pyzmq's `send_multipart` and `recv_multipart` loop in Python over `send`/`recv`, combining
# IntFlag enums per frame; calling the backend (Cython) methods with plain integers does the same
# work for a fraction of the CPU (about 1 us instead of 7 us for a 5-frame message on this
# project's reference machine). The broker, the worker base and the transports use these; the
# semantics are pyzmq's own: `copy=False` sends Frames and large buffers without copying.
#
# MDP puts 4-6 small envelope frames before every body, and even the backend methods cost about
# 0.6 us of interpreter work per frame. Where the C module `_envelope` was built (a C compiler at
# install time; it is optional), the leading small frames move in one C call per message against
# the very libzmq pyzmq loaded, and the body frames still go through pyzmq, zero-copy. Both paths
# give the same frames and the same exceptions (tests/broker/test_wire.py runs both);
# `ENVELOPE_IN_C` says which one this process uses.

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

import zmq
from zmq.backend import Socket as _BackendSocket
from zmq.backend import zmq_poll

_envelope: ModuleType | None
try:
    from latentmas_mesh.wire import _envelope
except ImportError:  # installed without a C compiler: the pure-Python path serves
    _envelope = None

# pyzmq's stubs type these methods awkwardly; the calls below match the Cython signatures
# send(data, flags, copy) and recv(flags, copy).
_send: Callable[..., object] = _BackendSocket.send
_recv: Callable[..., Any] = _BackendSocket.recv
SNDMORE = int(zmq.SNDMORE)
NOBLOCK = int(zmq.NOBLOCK)
POLLIN = int(zmq.POLLIN)
_send_envelope: Callable[[int, Sequence[object], int], int] = (
    _envelope.send_envelope if _envelope is not None else lambda handle, frames, flags: 0
)
_recv_envelope: Callable[[int, int, int], tuple[list[Any], bool]] = (
    _envelope.recv_envelope if _envelope is not None else lambda handle, count, flags: ([], False)
)
ROUTER_ENVELOPE_FRAMES = 4
"""At the broker, an MDP body starts at index 4 or later (routing id, header, command, service
or client address): frames before it arrive as bytes, the body as zero-copy `zmq.Frame`s."""
DEALER_ENVELOPE_FRAMES = 3
"""At a client, a body starts at index 3 or later (header, command, service)."""
WORKER_ENVELOPE_FRAMES = 4
"""At a worker, a body starts at index 4 or later (header, command, client address, delimiter)."""


def _bind_envelope() -> bool:
    """Whether the C envelope path is usable: built, and bound to pyzmq's own libzmq.

    The C module reaches libzmq through pyzmq's backend extension (already loaded), so it uses the
    very library pyzmq's sockets belong to, and it refuses one whose version differs.
    """
    if _envelope is None or os.environ.get("LATENTMAS_PURE_PYTHON_WIRE"):
        return False
    backend = sys.modules.get("zmq.backend.cython._zmq")
    path = getattr(backend, "__file__", None)
    if path is None:
        return False
    try:
        _envelope.load(
            path, zmq.zmq_version_info(), zmq.Again, zmq.ContextTerminated, zmq.ZMQError, zmq.ETERM
        )
    except OSError:
        return False
    return True


ENVELOPE_IN_C = _bind_envelope()
"""True when the leading small frames of each message move in one C call (see the top)."""


def send_frames(socket: zmq.Socket[Any], frames: Sequence[object], flags: int = 0) -> None:
    """Send a multipart message: each frame zero-copy when it is a Frame or a large buffer."""
    frames = tuple(frames)  # one snapshot: a blocking send runs without the GIL
    start = _send_envelope(socket.underlying, frames, flags) if ENVELOPE_IN_C else 0
    last = len(frames) - 1
    more = flags | SNDMORE
    for index in range(start, last):
        _send(socket, frames[index], more, False)
    _send(socket, frames[last], flags, False)


def send_routed(socket: zmq.Socket[Any], peer: bytes, frames: Sequence[object]) -> None:
    """Send `frames` to `peer` through a ROUTER socket, without blocking (zmq.Again if full)."""
    _send(socket, peer, NOBLOCK | SNDMORE, False)
    send_frames(socket, frames, NOBLOCK)


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
    if ENVELOPE_IN_C and not first_as_frame:
        envelope, more = _recv_envelope(socket.underlying, copied, flags)
        while more:
            body_frame = _recv(socket, 0, False)
            envelope.append(body_frame)
            more = body_frame.more
        return envelope
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
    "ENVELOPE_IN_C",
    "NOBLOCK",
    "ROUTER_ENVELOPE_FRAMES",
    "WORKER_ENVELOPE_FRAMES",
    "readable",
    "recv_frames",
    "send_frames",
    "send_routed",
]
