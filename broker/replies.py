"""The broker's own replies as codec frames: typed error bodies, addressed by the request's id."""

from __future__ import annotations

from broker.state import Body
from latentmas_mesh import codec
from latentmas_mesh.errors import ERROR_CLASSES, ErrorCode
from latentmas_mesh.protocol import ErrorBody

UNKNOWN_REQUEST_ID = "unknown"
"""Used when a request's body carries no readable id (raw frames, e.g. the echo service)."""


def request_id_of(body: Body) -> str | None:
    """The request id in a body's codec header; None for anything else (never raises)."""
    # Body is the state machine's opaque tuple of zmq frames; request_id_of never raises on
    # anything else, so the looser element type is safe here.
    return codec.request_id_of(body)  # type: ignore[arg-type]


def error_reply(code: ErrorCode, message: str, request_body: Body) -> list[object]:
    """An ErrorBody encoded with the codec, carrying the id of the request it answers.

    This is the one place the broker encodes a body; it never decodes one (the id is read from
    the header with `request_id_of`, which never raises).
    """
    error = ERROR_CLASSES[code](message)
    request_id = request_id_of(request_body) or UNKNOWN_REQUEST_ID
    return list(codec.encode(ErrorBody.from_error(error), request_id=request_id))


__all__ = ["UNKNOWN_REQUEST_ID", "error_reply", "request_id_of"]
