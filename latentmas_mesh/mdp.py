"""MDP/0.2 (ZeroMQ RFC 18) framing: frames in, one typed event out; events in, frames out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum, IntEnum
from typing import Generic, TypeAlias, TypeVar, cast

from typing_extensions import Buffer

from latentmas_mesh.errors import ERROR_CLASSES, ErrorCode, ProtocolError

# Theory of operation
# -------------------
# RFC 18 frames every command as [header, command, ...] with no empty delimiter ("removal of empty
# frames at start of commands"). The `majortomo` package (0.2.0) keeps MDP/0.1's leading empty
# frame on both sub-protocols, and its client also numbers commands its own way:
#
#   client -> broker   RFC 18:    MDPC02 0x01 service body...
#                      majortomo: "" MDPC02 0x02 service body...
#   broker -> client   RFC 18:    MDPC02 0x02|0x03 service body...        (PARTIAL | FINAL)
#                      majortomo: "" MDPC02 0x03|0x04 body...              (no service frame)
#   worker <-> broker  RFC 18:    MDPW02 cmd ...;  majortomo: "" MDPW02 cmd ... (same numbers)
#
# `parse` accepts both, tells which one a peer used (`dialect` for clients, `delimited` for
# everyone), and the builders answer each peer in the framing it used. Body frames are never
# read: they come out of `parse` as the very objects that went in (zmq.Frame, bytes, memoryview),
# so the caller can forward them without a copy. Only envelope frames, each bounded by a limit
# checked before any copy, are turned into bytes.

F = TypeVar("F")
B_co = TypeVar("B_co", covariant=True)  # body frame type of an event (read only, so covariant)

CLIENT_HEADER = b"MDPC02"
WORKER_HEADER = b"MDPW02"
EMPTY = b""

SERVICE_NAME_BYTES_MAX = 255
"""RFC 18 calls the service name a printable string; we bound it like a ZeroMQ routing id."""
CLIENT_ADDRESS_BYTES_MAX = 1024
"""Room for a 255-byte routing id plus an authenticated identity (a 40-character Z85 key)."""
BODY_FRAMES_MAX = 4096
"""More body frames than this is not a message of ours; it is someone probing the parser.

The bound is on the *body*, checked in every direction after the envelope is read, so whatever
envelope the broker puts around a body it accepted, the worker (and the client, for a reply)
accepts the same body (tests/broker/test_mdp.py checks the counts around the limit). A REQUEST
or FINAL over it, however far, raises `RefusedBody`, so its request can still be answered."""
_PRINTABLE = bytes(range(0x21, 0x7F))
MMI_PREFIX = b"mmi."
MMI_SERVICE = b"mmi.service"


class Dialect(Enum):
    """Which client framing a peer speaks: RFC 18's, or the `majortomo` package's own."""

    RFC18 = "rfc18"
    MAJORTOMO = "majortomo"


class ClientCommand(IntEnum):
    """RFC 18 MDP/Client command bytes."""

    REQUEST = 0x01
    PARTIAL = 0x02
    FINAL = 0x03


class MajortomoClientCommand(IntEnum):
    """`majortomo` 0.2.0's client command bytes (it numbers them like the worker sub-protocol)."""

    REQUEST = 0x02
    PARTIAL = 0x03
    FINAL = 0x04


class WorkerCommand(IntEnum):
    """RFC 18 MDP/Worker command bytes (majortomo uses the same)."""

    READY = 0x01
    REQUEST = 0x02
    PARTIAL = 0x03
    FINAL = 0x04
    HEARTBEAT = 0x05
    DISCONNECT = 0x06


class MalformedFrame(ValueError):
    """A message that is not valid MDP/0.2 in either dialect.

    `reason` is a short stable label (a metric label value); `code` is what a peer would be told if
    it were answered, as h11's errors carry a status hint. `parse*` raise this and nothing else.
    """

    def __init__(
        self, reason: str, message: str, *, code: ErrorCode = ErrorCode.INVALID_REQUEST
    ) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.code = code

    def to_error(self) -> ProtocolError:
        """The typed protocol error with the same code and message."""
        return ERROR_CLASSES[self.code](self.message, details={"reason": self.reason})


class RefusedBody(MalformedFrame):
    """A REQUEST or FINAL whose envelope is valid but whose body is refused (too many frames).

    Unlike other malformed messages it can be answered: `event` is the message with its body cut
    to the first frame (where the request id is), so the broker or the worker can send the one
    typed error the request is owed instead of dropping it.
    """

    def __init__(
        self,
        reason: str,
        message: str,
        event: ClientRequest[object] | WorkerFinal[object] | BrokerRequest[object],
        *,
        code: ErrorCode = ErrorCode.PAYLOAD_TOO_LARGE,
    ) -> None:
        super().__init__(reason, message, code=code)
        self.event = event


# ---------------------------------------------------------------------------------------- events
# Events are read-only by convention. They are not `frozen` dataclasses: a frozen dataclass's
# __init__ sets each field through object.__setattr__, about 4x the cost of a plain slots class,
# and the broker builds two events per request on its hot path.


@dataclass(slots=True)
class ClientRequest(Generic[B_co]):
    """A client asks `service` to process `body` (RFC 18: 4 or more frames, body non-empty)."""

    service: bytes
    body: tuple[B_co, ...]
    dialect: Dialect = Dialect.RFC18
    delimited: bool = False

    @property
    def is_mmi(self) -> bool:
        """Whether this asks the broker itself (the MMI extension) rather than a worker."""
        return self.service.startswith(MMI_PREFIX)


@dataclass(slots=True)
class WorkerReady:
    """A worker registers for one service; it must not send READY again."""

    service: bytes
    delimited: bool = False


@dataclass(slots=True)
class WorkerPartial(Generic[B_co]):
    """One of zero or more partial replies, addressed to the client frame the broker gave."""

    client_address: bytes
    body: tuple[B_co, ...]
    delimited: bool = False


@dataclass(slots=True)
class WorkerFinal(Generic[B_co]):
    """The one final reply to a request; the worker is idle again afterwards."""

    client_address: bytes
    body: tuple[B_co, ...]
    delimited: bool = False


@dataclass(slots=True)
class WorkerHeartbeat:
    """A worker is alive (any command from it counts; this one carries nothing else)."""

    delimited: bool = False


@dataclass(slots=True)
class WorkerDisconnect:
    """A worker leaves; the broker must send it nothing more."""

    delimited: bool = False


@dataclass(slots=True)
class BrokerRequest(Generic[B_co]):
    """What a worker receives: a request body and the client address to return with the reply."""

    client_address: bytes
    body: tuple[B_co, ...]


@dataclass(slots=True)
class BrokerHeartbeat:
    """What a worker receives when the broker has nothing else to say."""


@dataclass(slots=True)
class BrokerDisconnect:
    """The broker drops this worker: close the socket and register again on a new one."""


@dataclass(slots=True)
class Reply(Generic[B_co]):
    """What a client receives: a PARTIAL (`final` False) or the FINAL reply to its request.

    `service` is None in majortomo's dialect, which does not repeat the service name.
    """

    final: bool
    body: tuple[B_co, ...]
    service: bytes | None = None


BrokerEvent: TypeAlias = (
    ClientRequest[F]
    | WorkerReady
    | WorkerPartial[F]
    | WorkerFinal[F]
    | WorkerHeartbeat
    | WorkerDisconnect
)
WorkerEvent: TypeAlias = BrokerRequest[F] | BrokerHeartbeat | BrokerDisconnect


# --------------------------------------------------------------------------------------- parsing


def frame_size(frame: object) -> int:
    """Byte length of a frame (bytes, memoryview, zmq.Frame) without copying it."""
    if isinstance(frame, bytes):
        return len(frame)
    if isinstance(frame, memoryview):
        return frame.nbytes
    return memoryview(cast(Buffer, frame)).nbytes


def frame_bytes(frame: object, bytes_max: int, what: str) -> bytes:
    """A small envelope frame as bytes; larger than `bytes_max` is refused before any copy."""
    if isinstance(frame, bytes) and len(frame) <= bytes_max:
        return frame  # the common case: envelope frames arrive as bytes
    size = frame_size(frame)
    if size > bytes_max:
        raise MalformedFrame(
            f"{what}_too_large",
            f"{what} frame of {size} bytes exceeds {bytes_max}",
            code=ErrorCode.PAYLOAD_TOO_LARGE,
        )
    return memoryview(cast(Buffer, frame)).tobytes()


def _strip_delimiter(frames: Sequence[F]) -> tuple[Sequence[F], bool]:
    """Drop one leading empty frame (majortomo's, MDP/0.1's framing); say whether it was there."""
    if not frames:
        raise MalformedFrame("empty", "a message with no frames")
    first = frames[0]
    if (first == EMPTY) if type(first) is bytes else frame_size(first) == 0:
        return frames[1:], True
    return frames, False


def _command(frame: object) -> int:
    """The one-byte command frame."""
    if type(frame) is bytes and len(frame) == 1:
        return frame[0]  # the common case, without the generic size checks
    if frame_size(frame) != 1:
        raise MalformedFrame("bad_command", "the command frame must be exactly one byte")
    return frame_bytes(frame, 1, "command")[0]


def _service(frame: object) -> bytes:
    """A service name: 1 to 255 printable ASCII bytes (RFC 18: 'printable string')."""
    name = frame_bytes(frame, SERVICE_NAME_BYTES_MAX, "service")
    if not name or name.translate(None, _PRINTABLE):  # anything left is not printable
        raise MalformedFrame("bad_service", "a service name is 1 to 255 printable ASCII bytes")
    return name


def _addressed_body(frames: Sequence[F], what: str) -> tuple[bytes, tuple[F, ...]]:
    """[client address, "", body...] with at least one body frame (RFC 18: 5 or more frames)."""
    if len(frames) < 3:
        raise MalformedFrame("short", f"{what} needs a client address, a delimiter and a body")
    address = frame_bytes(frames[0], CLIENT_ADDRESS_BYTES_MAX, "address")
    delimiter = frames[1]
    if (delimiter != EMPTY) if type(delimiter) is bytes else frame_size(delimiter) != 0:
        raise MalformedFrame("bad_delimiter", f"{what}: the client address must be followed by ''")
    return address, tuple(frames[2:])


def _too_many(body: Sequence[object]) -> str | None:
    """Why a body is refused for its frame count, or None when it is within BODY_FRAMES_MAX."""
    if len(body) <= BODY_FRAMES_MAX:
        return None
    return f"a body of {len(body)} frames exceeds {BODY_FRAMES_MAX}"


def _checked_request(request: ClientRequest[F]) -> ClientRequest[F]:
    problem = _too_many(request.body)
    if problem is not None:
        cut = ClientRequest(request.service, request.body[:1], request.dialect, request.delimited)
        raise RefusedBody("too_many_frames", problem, cut)
    return request


def _checked_final(final: WorkerFinal[F]) -> WorkerFinal[F]:
    problem = _too_many(final.body)
    if problem is not None:
        cut = WorkerFinal(final.client_address, final.body[:1], final.delimited)
        raise RefusedBody("too_many_frames", f"a worker's reply: {problem}", cut)
    return final


_CLIENT_REQUEST = bytes([ClientCommand.REQUEST])
_WORKER_FINAL = bytes([WorkerCommand.FINAL])
_HOT_3_MAX = 3 + BODY_FRAMES_MAX
"""The hot paths take only bodies within the limit: after a 3-frame envelope (REQUEST, reply)..."""
_HOT_4_MAX = 4 + BODY_FRAMES_MAX
"""...or a 4-frame one (FINAL, a worker's REQUEST); anything longer takes the general path."""


def parse(frames: Sequence[F]) -> BrokerEvent[F]:
    """What a client or worker sent to the broker (routing id already removed), as one event.

    Raises MalformedFrame (with its ErrorCode) and nothing else; any other exception is a bug.
    """
    # The two messages of every request in RFC 18 framing (REQUEST, then the worker's FINAL) are
    # recognised first, with the same checks as the general path below but without its
    # dispatch; anything else, including any doubt, takes the general path.
    count = len(frames)
    if 4 <= count <= _HOT_4_MAX and type(frames[1]) is bytes:
        header, command = frames[0], frames[1]
        if command == _CLIENT_REQUEST and header == CLIENT_HEADER and count <= _HOT_3_MAX:
            return ClientRequest(_service(frames[2]), tuple(frames[3:]))
        if command == _WORKER_FINAL and header == WORKER_HEADER:
            address, body = _addressed_body(frames[2:], "FINAL")
            return WorkerFinal(address, body)
    return _parse_general(frames)


def _parse_general(frames: Sequence[F]) -> BrokerEvent[F]:
    rest, delimited = _strip_delimiter(frames)
    if len(rest) < 2:
        raise MalformedFrame("short", "an MDP command needs a header and a command frame")
    header = frame_bytes(rest[0], 16, "header")
    if header == CLIENT_HEADER:
        return _parse_client(rest, delimited=delimited)
    if header == WORKER_HEADER:
        return _parse_worker(rest, delimited=delimited)
    raise MalformedFrame("bad_header", "the protocol header is neither MDPC02 nor MDPW02")


def _parse_client(frames: Sequence[F], *, delimited: bool) -> ClientRequest[F]:
    command = _command(frames[1])
    if command == ClientCommand.REQUEST:
        dialect = Dialect.RFC18
    elif command == MajortomoClientCommand.REQUEST and delimited:
        dialect = Dialect.MAJORTOMO
    else:
        raise MalformedFrame("bad_command", f"a client may only send REQUEST, not 0x{command:02x}")
    # RFC 18: "A REQUEST command consists of a multipart message of 4 or more frames".
    if len(frames) < 4:
        raise MalformedFrame("short", "a REQUEST needs a service name and at least one body frame")
    request = ClientRequest(_service(frames[2]), tuple(frames[3:]), dialect, delimited)
    return _checked_request(request)


def _parse_worker(frames: Sequence[F], *, delimited: bool) -> BrokerEvent[F]:
    command = _command(frames[1])
    rest = frames[2:]
    if command == WorkerCommand.READY:
        if len(rest) != 1:
            raise MalformedFrame("bad_ready", "READY carries exactly one service name")
        return WorkerReady(_service(rest[0]), delimited)
    if command == WorkerCommand.HEARTBEAT:
        return WorkerHeartbeat(delimited)
    if command == WorkerCommand.DISCONNECT:
        return WorkerDisconnect(delimited)
    if command == WorkerCommand.PARTIAL:
        address, body = _addressed_body(rest, "PARTIAL")
        problem = _too_many(body)
        if problem is not None:  # a PARTIAL is owed nothing: the FINAL still is
            raise MalformedFrame("too_many_frames", problem, code=ErrorCode.PAYLOAD_TOO_LARGE)
        return WorkerPartial(address, body, delimited)
    if command == WorkerCommand.FINAL:
        address, body = _addressed_body(rest, "FINAL")
        return _checked_final(WorkerFinal(address, body, delimited))
    raise MalformedFrame("bad_command", f"0x{command:02x} is not a worker-to-broker command")


_WORKER_REQUEST = bytes([WorkerCommand.REQUEST])
_CLIENT_FINAL = bytes([ClientCommand.FINAL])


def parse_for_worker(frames: Sequence[F]) -> WorkerEvent[F]:
    """What the broker sent a worker (either framing), as one event. Raises MalformedFrame only."""
    # RFC 18 REQUEST first: checked as below, without the dispatch.
    hot = 5 <= len(frames) <= _HOT_4_MAX and type(frames[1]) is bytes
    hot = hot and frames[1] == _WORKER_REQUEST
    if hot and frames[0] == WORKER_HEADER:
        address, body = _addressed_body(frames[2:], "REQUEST")
        return BrokerRequest(address, body)
    return _parse_for_worker_general(frames)


def _parse_for_worker_general(frames: Sequence[F]) -> WorkerEvent[F]:
    rest, _ = _strip_delimiter(frames)
    if len(rest) < 2 or frame_bytes(rest[0], 16, "header") != WORKER_HEADER:
        raise MalformedFrame("bad_header", "a broker-to-worker command starts with MDPW02")
    command = _command(rest[1])
    if command == WorkerCommand.REQUEST:
        address, body = _addressed_body(rest[2:], "REQUEST")
        problem = _too_many(body)
        if problem is not None:
            raise RefusedBody("too_many_frames", problem, BrokerRequest(address, body[:1]))
        return BrokerRequest(address, body)
    if command == WorkerCommand.HEARTBEAT:
        return BrokerHeartbeat()
    if command == WorkerCommand.DISCONNECT:
        return BrokerDisconnect()
    raise MalformedFrame("bad_command", f"0x{command:02x} is not a broker-to-worker command")


def parse_reply(frames: Sequence[F], dialect: Dialect = Dialect.RFC18) -> Reply[F]:
    """What the broker sent a client, in the client's dialect. Raises MalformedFrame only."""
    # RFC 18 FINAL first: checked as below, without the dispatch.
    hot = 4 <= len(frames) <= _HOT_3_MAX and type(frames[1]) is bytes
    hot = hot and frames[1] == _CLIENT_FINAL
    if hot and dialect is Dialect.RFC18 and frames[0] == CLIENT_HEADER:
        return Reply(True, tuple(frames[3:]), _service(frames[2]))
    return _parse_reply_general(frames, dialect)


def _parse_reply_general(frames: Sequence[F], dialect: Dialect) -> Reply[F]:
    rest, _ = _strip_delimiter(frames)
    if len(rest) < 3 or frame_bytes(rest[0], 16, "header") != CLIENT_HEADER:
        raise MalformedFrame("bad_header", "a reply starts with MDPC02 and carries a body")
    command = _command(rest[1])
    if dialect is Dialect.MAJORTOMO:
        if command not in (MajortomoClientCommand.PARTIAL, MajortomoClientCommand.FINAL):
            raise MalformedFrame("bad_command", f"0x{command:02x} is not a majortomo reply")
        reply: Reply[F] = Reply(command == MajortomoClientCommand.FINAL, tuple(rest[2:]))
    else:
        if command not in (ClientCommand.PARTIAL, ClientCommand.FINAL):
            raise MalformedFrame("bad_command", f"0x{command:02x} is not an RFC 18 reply")
        if len(rest) < 4:
            raise MalformedFrame("short", "an RFC 18 reply carries a service name and a body")
        reply = Reply(command == ClientCommand.FINAL, tuple(rest[3:]), _service(rest[2]))
    problem = _too_many(reply.body)
    if problem is not None:
        raise MalformedFrame("too_many_frames", problem, code=ErrorCode.PAYLOAD_TOO_LARGE)
    return reply


# -------------------------------------------------------------------------------------- building


_BYTE = tuple(bytes([value]) for value in range(256))
"""One-byte command frames, built once (a command is sent with every message)."""
_NO_LEAD: tuple[bytes, ...] = ()
_LEAD: tuple[bytes, ...] = (EMPTY,)


def _lead(delimited: bool) -> tuple[bytes, ...]:
    return _LEAD if delimited else _NO_LEAD


def client_request(
    service: bytes, body: Sequence[F], *, dialect: Dialect = Dialect.RFC18
) -> list[bytes | F]:
    """The REQUEST a client sends, in RFC 18's framing or majortomo's."""
    if dialect is Dialect.MAJORTOMO:
        return [EMPTY, CLIENT_HEADER, _BYTE[MajortomoClientCommand.REQUEST], service, *body]
    return [CLIENT_HEADER, _BYTE[ClientCommand.REQUEST], service, *body]


def client_reply(
    service: bytes,
    body: Sequence[F],
    *,
    final: bool = True,
    dialect: Dialect = Dialect.RFC18,
    delimited: bool = False,
) -> list[bytes | F]:
    """A PARTIAL or FINAL reply to a client, in the framing its request used."""
    if dialect is Dialect.MAJORTOMO:
        command = MajortomoClientCommand.FINAL if final else MajortomoClientCommand.PARTIAL
        return [EMPTY, CLIENT_HEADER, _BYTE[command], *body]
    command_rfc = ClientCommand.FINAL if final else ClientCommand.PARTIAL
    return [*_lead(delimited), CLIENT_HEADER, _BYTE[command_rfc], service, *body]


def worker_ready(service: bytes, *, delimited: bool = False) -> list[bytes]:
    """READY for one service."""
    return [*_lead(delimited), WORKER_HEADER, _BYTE[WorkerCommand.READY], service]


def worker_reply(
    client_address: bytes, body: Sequence[F], *, final: bool = True, delimited: bool = False
) -> list[bytes | F]:
    """A worker's PARTIAL or FINAL, returning the client address frame unchanged."""
    command = WorkerCommand.FINAL if final else WorkerCommand.PARTIAL
    return [*_lead(delimited), WORKER_HEADER, _BYTE[command], client_address, EMPTY, *body]


def broker_request(
    client_address: bytes, body: Sequence[F], *, delimited: bool = False
) -> list[bytes | F]:
    """The REQUEST a broker hands a worker (RFC 18: address, empty delimiter, body)."""
    return [
        *_lead(delimited),
        WORKER_HEADER,
        _BYTE[WorkerCommand.REQUEST],
        client_address,
        EMPTY,
        *body,
    ]


def heartbeat(*, delimited: bool = False) -> list[bytes]:
    """HEARTBEAT (the same frames from broker and from worker)."""
    return [*_lead(delimited), WORKER_HEADER, _BYTE[WorkerCommand.HEARTBEAT]]


def disconnect(*, delimited: bool = False) -> list[bytes]:
    """DISCONNECT (the same frames from broker and from worker)."""
    return [*_lead(delimited), WORKER_HEADER, _BYTE[WorkerCommand.DISCONNECT]]


# ------------------------------------------------------------------------- client address frame

ADDRESS_MAGIC = b"LMA\x01"
"""Marks an address frame built by our broker: magic, routing-id length, routing id, identity."""


@dataclass(frozen=True, slots=True)
class ClientAddress:
    """The opaque client address our broker hands a worker, unpacked.

    `identity` is the client's authenticated ZAP User-Id (the Z85 CURVE public key) when the broker
    runs with CURVE, else None. Every MDP worker returns the frame unchanged, so carrying the
    identity inside it keeps the protocol standard while the worker learns who is asking.
    """

    routing_id: bytes
    identity: str | None = None


def pack_client_address(routing_id: bytes, identity: str | None = None) -> bytes:
    """Build the address frame; routing ids are at most 255 bytes (a ZeroMQ limit)."""
    if not 0 < len(routing_id) <= 255:
        raise MalformedFrame("bad_routing_id", "a routing id is 1 to 255 bytes")
    tail = identity.encode() if identity is not None else b""
    return ADDRESS_MAGIC + bytes([len(routing_id)]) + routing_id + tail


def unpack_client_address(frame: bytes) -> ClientAddress:
    """Read an address frame; one not built by our broker is a bare routing id (no identity)."""
    if not frame.startswith(ADDRESS_MAGIC) or len(frame) < len(ADDRESS_MAGIC) + 2:
        return ClientAddress(frame)
    start = len(ADDRESS_MAGIC) + 1
    length = frame[len(ADDRESS_MAGIC)]
    if length == 0 or start + length > len(frame):
        return ClientAddress(frame)
    tail = frame[start + length :]
    try:
        identity = tail.decode() if tail else None
    except UnicodeDecodeError:
        identity = None
    return ClientAddress(frame[start : start + length], identity)


__all__ = [
    "BODY_FRAMES_MAX",
    "CLIENT_ADDRESS_BYTES_MAX",
    "CLIENT_HEADER",
    "MMI_PREFIX",
    "MMI_SERVICE",
    "SERVICE_NAME_BYTES_MAX",
    "WORKER_HEADER",
    "BrokerDisconnect",
    "BrokerEvent",
    "BrokerHeartbeat",
    "BrokerRequest",
    "ClientAddress",
    "ClientCommand",
    "ClientRequest",
    "Dialect",
    "MajortomoClientCommand",
    "MalformedFrame",
    "RefusedBody",
    "Reply",
    "WorkerCommand",
    "WorkerDisconnect",
    "WorkerEvent",
    "WorkerFinal",
    "WorkerHeartbeat",
    "WorkerPartial",
    "WorkerReady",
    "broker_request",
    "client_reply",
    "client_request",
    "disconnect",
    "frame_bytes",
    "frame_size",
    "heartbeat",
    "pack_client_address",
    "parse",
    "parse_for_worker",
    "parse_reply",
    "unpack_client_address",
    "worker_ready",
    "worker_reply",
]
