"""The broker's own error replies, addressed by the id read from the request's header.

The frames are built by `latentmas_mesh.wire.replies` with msgpack alone: the broker never
imports the codec or the message schemas (pydantic), and never decodes a body.
"""

from __future__ import annotations

from broker.state import Body
from latentmas_mesh.errors import ErrorCode
from latentmas_mesh.wire import replies

UNKNOWN_REQUEST_ID = replies.UNKNOWN_REQUEST_ID


class Replies:
    """Error replies and request-id peeks within the header bound the mesh's decoders use."""

    __slots__ = ("_header_bytes_max",)

    def __init__(self, header_bytes_max: int) -> None:
        self._header_bytes_max = header_bytes_max

    def request_id_of(self, body: Body) -> str | None:
        """The request id in a body's header; None for anything else (never raises)."""
        return replies.request_id_of(body, header_bytes_max=self._header_bytes_max)

    def error_reply(self, code: ErrorCode, message: str, request_body: Body) -> list[object]:
        """An ErrorBody's frames, carrying the id of the request it answers.

        A request whose header has no readable id (raw frames) is answered as `UNKNOWN_REQUEST_ID`.
        """
        request_id = self.request_id_of(request_body) or UNKNOWN_REQUEST_ID
        return list(replies.error_reply(code, message, request_id))


__all__ = ["UNKNOWN_REQUEST_ID", "Replies"]
