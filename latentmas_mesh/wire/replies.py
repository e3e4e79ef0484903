"""Error replies in the codec's header format, and the request-id peek, with msgpack alone.

The broker answers some requests itself (queue full, no worker, shutting down) and must address
each answer by the request's id, without the message schemas (pydantic) the codec validates
against. The frames built here decode with `codec.decode` to the `ErrorBody` a worker would send
(tests/broker/test_replies.py checks every code), and `codec.request_id_of` is this peek.
"""

from __future__ import annotations

from typing import Final

import msgpack
import zmq

from latentmas_mesh.errors import ERROR_CLASSES, ErrorCode
from latentmas_mesh.wire.header import (
    ARRAY_REF_BYTES,
    CODEC_VERSION,
    CONTAINER_LEN_MAX,
    REQUEST_ID_CHARS_MAX,
)

ERROR_TYPE_NAME: Final = "error"
"""The registered type name of `protocol.ErrorBody` (the test checks they agree)."""
ERROR_MESSAGE_CHARS_MAX: Final = 4096
"""`protocol.errors.ERROR_MESSAGE_CHARS_MAX`: a longer message is cut, as `from_error` cuts it."""
UNKNOWN_REQUEST_ID: Final = "unknown"
"""Used when a request's body carries no readable id (raw frames, e.g. the echo service)."""


def error_reply(code: ErrorCode, message: str, request_id: str) -> list[bytes]:
    """The one header frame of an `ErrorBody` for `code`, byte for byte what the codec writes.

    Raises ValueError for a request id the codec would not write (the caller's bug).
    """
    if not isinstance(request_id, str) or not 0 < len(request_id) <= REQUEST_ID_CHARS_MAX:
        msg = f"request_id must be a str of 1..{REQUEST_ID_CHARS_MAX} characters"
        raise ValueError(msg)
    header = {
        "version": CODEC_VERSION,
        "type": ERROR_TYPE_NAME,
        "request_id": request_id,
        "body": ERROR_CLASSES[code](message[:ERROR_MESSAGE_CHARS_MAX]).to_wire(),
        "arrays": [],
    }
    return [msgpack.packb(header, use_bin_type=True, datetime=False)]


def request_id_of(
    frames: object,
    *,
    header_bytes_max: int,
    container_len_max: int = CONTAINER_LEN_MAX,
    request_id_chars_max: int = REQUEST_ID_CHARS_MAX,
) -> str | None:
    """The request id in a body's header, best effort: a str or None, and it never raises.

    Pass the bounds the peer's decoder uses, so a header that decoder would read is read here.
    Nothing else in the header is checked: an error reply can be addressed even when the body
    fails validation.
    """
    try:
        if not isinstance(frames, list | tuple) or not frames:
            return None
        header = _view(frames[0])
        if header is None or header.nbytes > header_bytes_max:
            return None
        unpacked = msgpack.unpackb(
            header,
            raw=False,
            strict_map_key=True,
            max_str_len=header_bytes_max,
            max_bin_len=header_bytes_max,
            max_array_len=container_len_max,
            max_map_len=container_len_max,
            max_ext_len=ARRAY_REF_BYTES,
        )
        request_id = unpacked.get("request_id") if isinstance(unpacked, dict) else None
        if isinstance(request_id, str) and 0 < len(request_id) <= request_id_chars_max:
            return request_id
    except Exception:  # best effort by contract: msgpack raises many kinds of error
        return None
    return None


def _view(frame: object) -> memoryview | None:
    """A flat byte view of one frame without copying it; None for anything but bytes."""
    if isinstance(frame, zmq.Frame):
        view = frame.buffer
    elif isinstance(frame, bytes | bytearray | memoryview):
        view = memoryview(frame)
    else:
        return None
    if not view.c_contiguous:
        return None
    return view if view.ndim == 1 and view.format in ("B", "b", "c") else view.cast("B")


__all__ = [
    "ERROR_MESSAGE_CHARS_MAX",
    "ERROR_TYPE_NAME",
    "UNKNOWN_REQUEST_ID",
    "error_reply",
    "request_id_of",
]
