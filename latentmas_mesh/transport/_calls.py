"""What the sync and asyncio transports share: framing a call, reading its reply, MMI answers."""

from __future__ import annotations

import uuid
from collections.abc import Generator, Sequence
from typing import TypeAlias

import zmq
from pydantic import BaseModel

from latentmas_mesh import codec, mdp
from latentmas_mesh.errors import ProtocolError, Timeout
from latentmas_mesh.protocol import ErrorBody
from latentmas_mesh.transport._settings import TransportSettings
from latentmas_mesh.transport._shared import SharedArrays
from latentmas_mesh.wire.shared import SegmentReader, SegmentWriter

Frame: TypeAlias = bytes | memoryview | zmq.Frame
MMI_FOUND = b"200"


def new_request_id() -> str:
    """A fresh request id; a retry reuses the id of the call it repeats."""
    return uuid.uuid4().hex


def dialect_of(settings: TransportSettings) -> mdp.Dialect:
    """The client framing the settings ask for."""
    return mdp.Dialect(settings.dialect)


def request_frames(
    service: str, body: Sequence[Frame], settings: TransportSettings
) -> list[bytes | Frame]:
    """The REQUEST frames of one attempt (the same for every attempt of a call)."""
    return mdp.client_request(service.encode("ascii"), body, dialect=dialect_of(settings))


def read_reply(
    frames: list[zmq.Frame], service: bytes, dialect: mdp.Dialect
) -> mdp.Reply[zmq.Frame] | None:
    """A reply for `service`, or None for anything else (malformed, or another service's)."""
    try:
        reply = mdp.parse_reply(frames, dialect)
    except mdp.MalformedFrame:
        return None
    if reply.service is not None and reply.service != service:
        return None
    return reply


def decode_reply(
    frames: Sequence[Frame],
    settings: TransportSettings,
    segments: SegmentReader | None = None,
) -> codec.Decoded:
    """Decode a FINAL body (mapping the worker's segments with `segments`); an ErrorBody is
    raised as its typed ProtocolError."""
    limits = codec.CodecLimits.from_settings(settings)
    decoded = codec.decode(
        frames, limits=limits, check_finite=settings.check_finite, segments=segments
    )
    if isinstance(decoded.message, ErrorBody):
        raise decoded.message.to_exception()
    return decoded


def encode_call(
    message: BaseModel,
    request_id: str | None,
    on_behalf_of: str | None = None,
    segments: SegmentWriter | None = None,
) -> tuple[str, list[bytes | memoryview]]:
    """The request id (given, or new) and the message's codec frames, for `on_behalf_of`'s
    agent when a gateway calls for one, large arrays placed by `segments` (see `codec.encode`)."""
    request_id = request_id or new_request_id()
    frames = codec.encode(
        message, request_id=request_id, on_behalf_of=on_behalf_of, segments=segments
    )
    return request_id, frames


CallPlan: TypeAlias = Generator[
    tuple[str, list[bytes | memoryview]], list[zmq.Frame], codec.Decoded
]
"""One call: yields (request id, body frames) to send, is sent the FINAL's body, returns the
decoded reply. The sync and asyncio transports drive the same plan."""


def call_plan(
    shared: SharedArrays | None,
    settings: TransportSettings,
    *,
    service: str,
    message: BaseModel,
    request_id: str | None,
    on_behalf_of: str | None,
) -> CallPlan:
    """A call in shared memory when it is on for `service`, sent again inline (same request id:
    the worker did nothing) when the worker cannot map the segments; the request's segments
    are free again once the plan ends, however it ends (drivers close it)."""
    scope = None if shared is None else shared.scope(service)
    if shared is not None and scope is not None:
        with scope.ending():
            request_id, frames = encode_call(message, request_id, on_behalf_of, scope)
            body = yield request_id, frames
            try:
                return decode_reply(body, settings, shared.reader())
            except ProtocolError as error:
                if not shared.refused(service, scope, error):
                    raise
    request_id, frames = encode_call(message, request_id, on_behalf_of)
    body = yield request_id, frames
    return decode_reply(body, settings, None if shared is None else shared.reader())


def mmi_found(body: Sequence[Frame]) -> bool:
    """Whether an `mmi.service` answer says the service has workers (RFC: "200")."""
    if len(body) != 1:
        return False
    frame = body[0]
    value = frame.bytes if isinstance(frame, zmq.Frame) else bytes(frame)
    return value == MMI_FOUND


def timeout_error(service: str, request_id: str | None, attempts: int, waited_ms: int) -> Timeout:
    """The typed error of a call that got no FINAL within its deadline."""
    return Timeout(
        f"no reply from {service} within {waited_ms} ms after {attempts} attempt(s)",
        details={"service": service, "request_id": request_id, "attempts": attempts},
    )
