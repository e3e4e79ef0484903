"""The two forms a message takes over HTTP: the spec's JSON (nested lists), or the binary form
(the codec's own frames, `frames.MEDIA_TYPE`) for real-sized caches; chosen by Content-Type on
the way in and by Accept (else the request's own form) on the way out."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, TypeVar

import zmq
from starlette.responses import Response, StreamingResponse

from latentmas_mesh import codec
from latentmas_mesh.errors import InvalidRequest
from latentmas_mesh.gateway.body import read_limited
from latentmas_mesh.gateway.frames import MEDIA_TYPE, body_bytes, join_frames, split_frames
from latentmas_mesh.gateway.settings import GatewaySettings
from latentmas_mesh.protocol.base import WireModel, type_name_of
from latentmas_mesh.protocol.json_edge import dump_json, parse_json

JSON_TYPE: Final = "application/json"
M = TypeVar("M", bound=WireModel)


@dataclass(frozen=True, slots=True)
class Incoming:
    """A request body read as message type `cls`: the message, whether it came binary, and
    the request id its binary header carried (the JSON form has none)."""

    message: WireModel
    binary: bool
    request_id: str | None


def media_type(headers: Mapping[str, str]) -> str:
    return headers.get("content-type", JSON_TYPE).split(";", 1)[0].strip().lower()


async def read_message(
    headers: Mapping[str, str],
    chunks: AsyncIterator[bytes],
    cls: type[M],
    settings: GatewaySettings,
    *,
    binary_allowed: bool = True,
) -> Incoming:
    """The body as a `cls` message; its size limit (by form) holds while it is read, before
    anything is parsed. A binary body's arrays stay views into it: nothing is copied, and the
    NaN scan is left to the worker, which makes it anyway."""
    kind = media_type(headers)
    if kind == MEDIA_TYPE and binary_allowed:
        raw = await read_limited(headers, chunks, settings.binary_body_bytes_max)
        limits = codec.CodecLimits(message_bytes_max=settings.binary_body_bytes_max)
        decoded = codec.decode(split_frames(raw), limits=limits, check_finite=False)
        if not isinstance(decoded.message, cls):
            msg = f"this endpoint takes {type_name_of(cls)}, not {decoded.type_name}"
            raise InvalidRequest(msg, details={"expected": type_name_of(cls)})
        return Incoming(decoded.message, True, decoded.request_id)
    if kind != JSON_TYPE:
        accepted = [JSON_TYPE, MEDIA_TYPE] if binary_allowed else [JSON_TYPE]
        msg = f"Content-Type {kind!r} is not accepted here"
        raise InvalidRequest(msg, details={"accepted": accepted})
    raw = await read_limited(headers, chunks, settings.json_body_bytes_max)
    return Incoming(parse_json(cls, raw, json_bytes_max=settings.json_body_bytes_max), False, None)


def wants_binary(headers: Mapping[str, str], *, default: bool) -> bool:
    """Whether the answer goes in the binary form: Accept names it (or names JSON, or
    neither, in which case the request's own form is kept)."""
    accept = headers.get("accept", "").lower()
    if MEDIA_TYPE in accept:
        return True
    if JSON_TYPE in accept:
        return False
    return default


def json_response(message: WireModel, status_code: int = 200) -> Response:
    return Response(dump_json(message), status_code=status_code, media_type=JSON_TYPE)


def frames_response(frames: Sequence[zmq.Frame | bytes | memoryview]) -> StreamingResponse:
    """The reply's own frames as a binary body, streamed without a copy."""
    views = [_view(frame) for frame in frames]

    async def pieces() -> AsyncIterator[bytes | memoryview]:  # async: no thread per chunk
        for piece in join_frames(views):
            yield piece

    return StreamingResponse(
        pieces(), media_type=MEDIA_TYPE, headers={"content-length": str(body_bytes(views))}
    )


def answer(
    message: WireModel, frames: Sequence[zmq.Frame], *, binary: bool
) -> Response | StreamingResponse:
    return frames_response(frames) if binary else json_response(message)


def _view(frame: zmq.Frame | bytes | memoryview) -> bytes | memoryview:
    if isinstance(frame, zmq.Frame):
        return frame.buffer
    return frame


__all__ = [
    "JSON_TYPE",
    "Incoming",
    "answer",
    "frames_response",
    "json_response",
    "media_type",
    "read_message",
    "wants_binary",
]
