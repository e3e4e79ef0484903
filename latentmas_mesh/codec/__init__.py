"""Wire messages as ZeroMQ multipart: one msgpack header frame, then one raw frame per array."""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Final, TypeAlias

import msgpack
import numpy as np
import pydantic_core
import zmq
from pydantic import BaseModel

from latentmas_mesh.codec.finite import all_finite
from latentmas_mesh.errors import InternalError, InvalidRequest, PayloadTooLarge, ProtocolError
from latentmas_mesh.protocol import MESSAGE_TYPES, WireModel, type_name_of, validate_message
from latentmas_mesh.protocol.base import TYPE_NAME_CHARS_MAX
from latentmas_mesh.protocol.dtypes import DTYPES, dtype_name
from latentmas_mesh.settings import MeshSettings
from latentmas_mesh.wire import replies
from latentmas_mesh.wire.header import (
    AGENT_ID_CHARS,
    ARRAY_KEYS,
    ARRAY_REF_BYTES,
    ARRAY_REF_EXT,
    CODEC_VERSION,
    CONTAINER_LEN_MAX,
    HEADER_KEYS,
    ON_BEHALF_OF_KEY,
    REQUEST_ID_CHARS_MAX,
    Z85_ALPHABET,
)
from latentmas_mesh.wire.shared import (
    SEGMENT_KEY,
    SEGMENT_TOKEN_BYTES,
    SHARED_MEMORY_UNAVAILABLE,
    SegmentReader,
    SegmentRef,
    SegmentWriter,
)

# The header layout (frame 0, a msgpack map) is written down in `latentmas_mesh.wire.header`,
# beside its constants; the broker writes and peeks at headers from there without pydantic.
_HEADER_KEYS: Final = frozenset(HEADER_KEYS)
_HEADER_KEYS_ON_BEHALF: Final = _HEADER_KEYS | {ON_BEHALF_OF_KEY}
_ARRAY_KEYS: Final = frozenset(ARRAY_KEYS)
_SHARED_ARRAY_KEYS: Final = frozenset({"dtype", "shape", SEGMENT_KEY})
SEGMENT_NAME_CHARS_MAX: Final = 64

Frame: TypeAlias = bytes | memoryview | zmq.Frame


def _settings_default(name: str) -> int:
    default = MeshSettings.model_fields[name].default
    assert isinstance(default, int)
    return default


@dataclass(frozen=True)
class CodecLimits:
    """Bounds a decoder checks before it allocates anything; every one is named *_max."""

    message_bytes_max: int = _settings_default("message_bytes_max")  # all frames together
    header_bytes_max: int = _settings_default("header_bytes_max")  # frame 0
    array_count_max: int = 64  # arrays (frames after the header) in one message
    ndim_max: int = 8  # rank of one array
    depth_max: int = 32  # nesting of maps and lists in the header
    container_len_max: int = CONTAINER_LEN_MAX  # entries of one msgpack map or list
    request_id_chars_max: int = REQUEST_ID_CHARS_MAX

    @classmethod
    def from_settings(cls, settings: MeshSettings, **overrides: int) -> CodecLimits:
        """Limits from a process's settings (message and header byte bounds), plus overrides."""
        limits = cls(
            message_bytes_max=settings.message_bytes_max,
            header_bytes_max=settings.header_bytes_max,
        )
        return replace(limits, **overrides)


DEFAULT_LIMITS: Final = CodecLimits()


@dataclass(frozen=True)
class Decoded:
    """A decoded message with the request id and type name its header carried, and the agent
    a gateway sent it for (None for a caller acting as itself)."""

    message: WireModel
    request_id: str
    type_name: str
    on_behalf_of: str | None = None


def is_agent_id(value: object) -> bool:
    """Whether `value` is an agent id: a Z85 CURVE public key (40 characters)."""
    return (
        isinstance(value, str) and len(value) == AGENT_ID_CHARS and Z85_ALPHABET.issuperset(value)
    )


@dataclass(frozen=True)
class _ArrayRef:
    """Placeholder left in the body by the msgpack ext hook until the arrays are built."""

    index: int


@dataclass(frozen=True)
class _ArraySpec:
    dtype_name: str
    shape: tuple[int, ...]
    segment: SegmentRef | None = None  # None: the array's bytes are the next frame

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * DTYPES[self.dtype_name].itemsize


# ---------------------------------------------------------------- encode


def encode(
    message: BaseModel,
    *,
    request_id: str,
    on_behalf_of: str | None = None,
    segments: SegmentWriter | None = None,
) -> list[bytes | memoryview]:
    """Frames [header, array 0, array 1, ...] for `message`, for `send_multipart(copy=False)`.

    Arrays are not copied: a C-contiguous little-endian array is sent as a memoryview of its own
    memory (keep the message alive until the send completes); any other layout is made contiguous
    once. `segments` may take arrays into shared memory instead (each it places travels as a
    reference, not a frame). `on_behalf_of` (a gateway's calls only) names the agent the request
    is for; without it the header is exactly as before the field existed. Raises TypeError for
    an unregistered type or an array dtype the wire cannot carry, and ValueError for a bad
    request id or agent id: those are the sender's bugs, not the peer's.
    """
    if not isinstance(message, WireModel):
        msg = f"{type(message).__name__} is not a WireModel"
        raise TypeError(msg)
    type_name = type_name_of(message)
    if (
        not isinstance(request_id, str)
        or not 0 < len(request_id) <= DEFAULT_LIMITS.request_id_chars_max
    ):
        msg = f"request_id must be a str of 1..{DEFAULT_LIMITS.request_id_chars_max} characters"
        raise ValueError(msg)
    if on_behalf_of is not None and not is_agent_id(on_behalf_of):
        msg = f"on_behalf_of must be an agent id ({AGENT_ID_CHARS} Z85 characters)"
        raise ValueError(msg)
    arrays: list[np.ndarray[Any, np.dtype[Any]]] = []

    def default(value: object) -> object:
        if isinstance(value, np.ndarray):
            arrays.append(_wire_array(value))
            return msgpack.ExtType(ARRAY_REF_EXT, struct.pack(">I", len(arrays) - 1))
        if isinstance(value, np.generic):
            return value.item()
        return pydantic_core.to_jsonable_python(value)  # datetimes, enums, UUIDs, ...

    packer = msgpack.Packer(default=default, use_bin_type=True, datetime=False)
    keys = _HEADER_KEYS if on_behalf_of is None else _HEADER_KEYS_ON_BEHALF
    parts = [
        packer.pack_map_header(len(keys)),
        packer.pack("version"),
        packer.pack(CODEC_VERSION),
        packer.pack("type"),
        packer.pack(type_name),
        packer.pack("request_id"),
        packer.pack(request_id),
    ]
    if on_behalf_of is not None:
        parts += [packer.pack(ON_BEHALF_OF_KEY), packer.pack(on_behalf_of)]
    parts += [
        packer.pack("body"),
        packer.pack(message.model_dump(mode="python")),
    ]
    descriptors: list[dict[str, object]] = []
    inline: list[np.ndarray[Any, np.dtype[Any]]] = []
    for array in arrays:
        ref = None if segments is None else segments.place(array)
        descriptor: dict[str, object] = {
            "dtype": dtype_name(array.dtype),
            "shape": list(array.shape),
        }
        if ref is None:
            inline.append(array)
            descriptor["frame"] = len(inline)
        else:
            descriptor[SEGMENT_KEY] = ref.to_wire()
        descriptors.append(descriptor)
    parts += [packer.pack("arrays"), packer.pack(descriptors)]
    frames: list[bytes | memoryview] = [b"".join(parts)]
    frames.extend(array.reshape(-1).view(np.uint8).data for array in inline)
    return frames


def _wire_array(array: np.ndarray[Any, np.dtype[Any]]) -> np.ndarray[Any, np.dtype[Any]]:
    """The array as the wire carries it: C-contiguous, little-endian (a copy only if it is not)."""
    if dtype_name(array.dtype) is None:
        little = array.dtype.newbyteorder("<")
        if dtype_name(little) is None:
            msg = f"dtype {array.dtype} cannot travel; wire dtypes are {sorted(DTYPES)}"
            raise TypeError(msg)
        array = array.astype(little)
    return np.ascontiguousarray(array)


# ---------------------------------------------------------------- decode


def decode(
    frames: Sequence[Frame],
    *,
    limits: CodecLimits = DEFAULT_LIMITS,
    check_finite: bool = True,
    segments: SegmentReader | None = None,
) -> Decoded:
    """Validate and decode frames from `recv_multipart(copy=False)` (or bytes / memoryviews).

    Raises only ProtocolError subclasses: InvalidRequest or PayloadTooLarge for bad input, and
    InternalError if a bug lets anything else out. Every limit is checked before any array is
    built; arrays are read-only numpy views on the frames' own buffers, never copies. An array
    sent as a shared-memory reference is mapped by `segments` (its bytes count toward
    `message_bytes_max` before anything is mapped); without a reader it is refused INVALID_REQUEST
    with details["shared_memory"] = "unavailable", which tells the sender to send it inline.
    With `check_finite` a float array holding NaN or ±Inf is refused.
    """
    try:
        return _decode(frames, limits, check_finite, segments)
    except ProtocolError:
        raise
    except Exception as exc:  # the contract: nothing but a ProtocolError leaves the decoder
        msg = f"decoder failed unexpectedly: {type(exc).__name__}"
        raise InternalError(msg, details={"exception": type(exc).__name__}) from exc


def request_id_of(frames: Sequence[Frame], *, limits: CodecLimits = DEFAULT_LIMITS) -> str | None:
    """The request id in the header, best effort; never raises (to address an error reply).

    Pass the `limits` the decoder uses, so a header the decoder would read is read here too.
    The peek itself is `wire.replies.request_id_of`, which the broker uses without pydantic.
    """
    return replies.request_id_of(
        frames,
        header_bytes_max=limits.header_bytes_max,
        container_len_max=limits.container_len_max,
        request_id_chars_max=limits.request_id_chars_max,
    )


def _decode(
    frames: Sequence[Frame],
    limits: CodecLimits,
    check_finite: bool,
    segments: SegmentReader | None,
) -> Decoded:
    buffers = _frame_buffers(frames, limits)
    header = _unpack_header(buffers[0], limits)
    type_name, request_id, on_behalf_of, body, specs = _read_header(header, limits)
    cls = MESSAGE_TYPES.get(type_name)
    if cls is None:
        shown = type_name[:TYPE_NAME_CHARS_MAX]
        msg = f"unknown message type {shown!r}"
        raise InvalidRequest(msg, details={"type": shown})
    inline = sum(spec.segment is None for spec in specs)
    if len(buffers) != 1 + inline:
        msg = f"header declares {inline} array frames but {len(buffers) - 1} arrived"
        raise InvalidRequest(msg, details={"declared": inline, "frames": len(buffers) - 1})
    arrays = _arrays(buffers, specs, limits, segments)
    _check_bools(arrays)
    if arrays:
        used = [False] * len(arrays)
        resolved = _resolve(body, arrays, used, 0, limits)
        if not all(used):
            unused = [1 + i for i, was_used in enumerate(used) if not was_used]
            msg = f"array frames {unused} are not referenced by the body"
            raise InvalidRequest(msg, details={"frames": unused})
    else:  # no arrays to put in: check the body where it lies instead of rebuilding it
        _check_plain(body, limits)
        resolved = body
    message = validate_message(cls, resolved)
    if check_finite:
        _check_finite(arrays)
    return Decoded(
        message=message, request_id=request_id, type_name=type_name, on_behalf_of=on_behalf_of
    )


def _arrays(
    buffers: list[memoryview],
    specs: list[_ArraySpec],
    limits: CodecLimits,
    segments: SegmentReader | None,
) -> list[np.ndarray[Any, Any]]:
    """Each declared array as a read-only view: of its frame, or of a peer's segment, mapped
    only once the whole message (frames and shared bytes) is known to be within its bound."""
    shared = [spec for spec in specs if spec.segment is not None]
    if shared:
        total = sum(buffer.nbytes for buffer in buffers) + sum(spec.nbytes for spec in shared)
        if total > limits.message_bytes_max:
            msg = f"message is {total} bytes; at most {limits.message_bytes_max} are accepted"
            raise PayloadTooLarge(msg, details={"bytes": total, "max": limits.message_bytes_max})
        if segments is None:
            msg = "arrays in shared memory cannot be mapped here: send them inline"
            raise InvalidRequest(msg, details={"shared_memory": SHARED_MEMORY_UNAVAILABLE})
    arrays = []
    frame = 0
    for index, spec in enumerate(specs):
        if spec.segment is None:
            frame += 1
            arrays.append(_array_view(buffers[frame], spec, f"frame {frame}"))
        else:
            assert segments is not None
            view = segments.view(spec.segment, spec.nbytes)
            arrays.append(_array_view(view, spec, f"shared array {index}"))
    return arrays


def _frame_buffers(frames: Sequence[Frame], limits: CodecLimits) -> list[memoryview]:
    """Byte views of all frames, with the frame-count and byte limits checked first."""
    if not isinstance(frames, list | tuple):
        msg = f"frames must be a list of frames, not {type(frames).__name__}"
        raise InvalidRequest(msg)
    if not frames:
        msg = "no frames: a message needs at least its header frame"
        raise InvalidRequest(msg)
    if len(frames) > 1 + limits.array_count_max:
        msg = f"{len(frames)} frames; at most {1 + limits.array_count_max} are accepted"
        raise PayloadTooLarge(msg, details={"array_count_max": limits.array_count_max})
    buffers = [_buffer_of(frame, index) for index, frame in enumerate(frames)]
    total = sum(buffer.nbytes for buffer in buffers)
    if total > limits.message_bytes_max:
        msg = f"message is {total} bytes; at most {limits.message_bytes_max} are accepted"
        raise PayloadTooLarge(msg, details={"bytes": total, "max": limits.message_bytes_max})
    if buffers[0].nbytes > limits.header_bytes_max:
        msg = f"header is {buffers[0].nbytes} bytes; at most {limits.header_bytes_max}"
        raise PayloadTooLarge(msg, details={"bytes": buffers[0].nbytes})
    return buffers


def _buffer_of(frame: object, index: int) -> memoryview:
    """A flat byte view of one frame without copying it."""
    if isinstance(frame, zmq.Frame):
        view = frame.buffer
    elif isinstance(frame, bytes | bytearray | memoryview):
        view = memoryview(frame)
    else:
        msg = f"frame {index} is a {type(frame).__name__}, not bytes"
        raise InvalidRequest(msg)
    if not view.c_contiguous:
        msg = f"frame {index} is not contiguous memory"
        raise InvalidRequest(msg)
    if view.ndim != 1 or view.format not in ("B", "b", "c"):
        view = view.cast("B")
    return view


def _ext_hook(code: int, data: bytes) -> _ArrayRef:
    if code != ARRAY_REF_EXT or len(data) != ARRAY_REF_BYTES:
        msg = f"unexpected msgpack ext type {code}"
        raise ValueError(msg)
    return _ArrayRef(struct.unpack(">I", data)[0])


def _unpack_header(buffer: memoryview, limits: CodecLimits) -> object:
    """msgpack with every length bounded; any msgpack failure is an InvalidRequest."""
    try:
        return msgpack.unpackb(
            buffer,
            raw=False,
            use_list=True,
            strict_map_key=True,
            ext_hook=_ext_hook,
            max_str_len=limits.header_bytes_max,
            max_bin_len=limits.header_bytes_max,
            max_array_len=limits.container_len_max,
            max_map_len=limits.container_len_max,
            max_ext_len=ARRAY_REF_BYTES,
        )
    except Exception as exc:  # msgpack raises ValueError, StackError, FormatError, ...
        msg = f"header is not valid msgpack within limits: {type(exc).__name__}: {str(exc)[:200]}"
        raise InvalidRequest(msg) from exc


def _read_header(
    header: object, limits: CodecLimits
) -> tuple[str, str, str | None, dict[str, Any], list[_ArraySpec]]:
    """Check the header map's fixed layout; returns (type, request id, on behalf of, body,
    array specs)."""
    if not isinstance(header, dict) or set(header) not in (_HEADER_KEYS, _HEADER_KEYS_ON_BEHALF):
        keys = sorted(map(str, header)) if isinstance(header, dict) else type(header).__name__
        optional = ON_BEHALF_OF_KEY
        msg = f"header must be a map with keys {sorted(_HEADER_KEYS)} (and optionally {optional})"
        raise InvalidRequest(msg, details={"got": str(keys)[:200]})
    version = header["version"]
    if type(version) is not int or version != CODEC_VERSION:
        msg = f"codec version {version!r} is not supported; this decoder reads {CODEC_VERSION}"
        raise InvalidRequest(msg, details={"supported": [CODEC_VERSION]})
    type_name, request_id, body = header["type"], header["request_id"], header["body"]
    if not isinstance(type_name, str):
        raise InvalidRequest("header type must be a string")
    if not isinstance(request_id, str) or not 0 < len(request_id) <= limits.request_id_chars_max:
        msg = f"request_id must be a string of 1..{limits.request_id_chars_max} characters"
        raise InvalidRequest(msg)
    on_behalf_of = header.get(ON_BEHALF_OF_KEY)
    if ON_BEHALF_OF_KEY in header and not is_agent_id(on_behalf_of):
        msg = f"{ON_BEHALF_OF_KEY} must be an agent id ({AGENT_ID_CHARS} Z85 characters)"
        raise InvalidRequest(msg)
    if not isinstance(body, dict):
        raise InvalidRequest("header body must be a map")
    descriptors = header["arrays"]
    if not isinstance(descriptors, list):
        raise InvalidRequest("header arrays must be a list")
    if len(descriptors) > limits.array_count_max:
        msg = f"{len(descriptors)} arrays declared; at most {limits.array_count_max}"
        raise PayloadTooLarge(msg, details={"array_count_max": limits.array_count_max})
    specs: list[_ArraySpec] = []
    for index, descriptor in enumerate(descriptors):
        next_frame = 1 + sum(spec.segment is None for spec in specs)
        specs.append(_read_array_spec(descriptor, index, next_frame, limits))
    return type_name, request_id, on_behalf_of, body, specs


def _read_array_spec(
    descriptor: object, index: int, next_frame: int, limits: CodecLimits
) -> _ArraySpec:
    """One array descriptor: a known dtype, a shape of non-negative ints, and either the next
    frame's index or a segment reference."""
    if not isinstance(descriptor, dict) or set(descriptor) not in (_ARRAY_KEYS, _SHARED_ARRAY_KEYS):
        msg = f"array descriptor {index} must be a map with keys {sorted(_ARRAY_KEYS)}"
        raise InvalidRequest(msg)
    name, shape = descriptor["dtype"], descriptor["shape"]
    if not isinstance(name, str) or name not in DTYPES:
        msg = f"array {index} has dtype {str(name)[:40]!r}; wire dtypes are {sorted(DTYPES)}"
        raise InvalidRequest(msg, details={"dtypes": sorted(DTYPES)})
    segment = None
    if SEGMENT_KEY in descriptor:
        segment = _read_segment_ref(descriptor[SEGMENT_KEY], index)
    elif type(descriptor["frame"]) is not int or descriptor["frame"] != next_frame:
        msg = f"array {index} must name frame {next_frame}, not {str(descriptor['frame'])[:40]}"
        raise InvalidRequest(msg)
    if not isinstance(shape, list) or len(shape) > limits.ndim_max:
        msg = f"array {index} shape must be a list of at most {limits.ndim_max} dimensions"
        raise InvalidRequest(msg)
    for dim in shape:
        if type(dim) is not int or not 0 <= dim <= limits.message_bytes_max:
            msg = f"array {index} shape has dimension {str(dim)[:40]}; need 0 <= d"
            raise InvalidRequest(msg, details={"shape": str(shape)[:200]})
    return _ArraySpec(dtype_name=name, shape=tuple(shape), segment=segment)


def _read_segment_ref(value: object, index: int) -> SegmentRef:
    """[name, token, generation, offset]: a short name, a 16-byte token, non-negative ints."""
    if isinstance(value, list) and len(value) == 4:
        name, token, generation, offset = value
        if (
            isinstance(name, str)
            and 0 < len(name) <= SEGMENT_NAME_CHARS_MAX
            and isinstance(token, bytes)
            and len(token) == SEGMENT_TOKEN_BYTES
            and type(generation) is int
            and type(offset) is int
            and generation >= 0
            and offset >= 0
        ):
            return SegmentRef(name=name, token=token, generation=generation, offset=offset)
    token = f"{SEGMENT_TOKEN_BYTES}-byte token"
    msg = f"array {index} segment must be [name, {token}, generation, offset]"
    raise InvalidRequest(msg)


def _array_view(buffer: memoryview, spec: _ArraySpec, where: str) -> np.ndarray[Any, Any]:
    """A read-only view of `buffer` as the declared array, after its byte count is proven."""
    dtype = DTYPES[spec.dtype_name]
    count = math.prod(spec.shape)  # Python ints: a lying shape cannot overflow
    if count * dtype.itemsize != buffer.nbytes:
        msg = (
            f"{where} holds {buffer.nbytes} bytes but its header declares "
            f"{spec.dtype_name}{list(spec.shape)} = {count * dtype.itemsize} bytes"
        )
        raise InvalidRequest(msg, details={"where": where, "bytes": buffer.nbytes})
    array = np.frombuffer(buffer, dtype=dtype, count=count).reshape(spec.shape)
    array.flags.writeable = False
    return array


def _resolve(
    node: object,
    arrays: list[np.ndarray[Any, Any]],
    used: list[bool],
    depth: int,
    limits: CodecLimits,
) -> object:
    """The body with each array reference replaced by its array; checks nesting and leaf types."""
    if depth > limits.depth_max:
        msg = f"header nests deeper than {limits.depth_max} levels"
        raise InvalidRequest(msg)
    if isinstance(node, _ArrayRef):
        if node.index >= len(arrays) or used[node.index]:
            msg = f"array reference {node.index} is out of range or used twice"
            raise InvalidRequest(msg)
        used[node.index] = True
        return arrays[node.index]
    if isinstance(node, dict):
        return {
            _key(key): _resolve(value, arrays, used, depth + 1, limits)
            for key, value in node.items()
        }
    if isinstance(node, list):
        return [_resolve(item, arrays, used, depth + 1, limits) for item in node]
    if node is None or isinstance(node, bool | int | float | str | bytes):
        return node
    msg = f"header holds an unsupported value of type {type(node).__name__}"
    raise InvalidRequest(msg)


_PLAIN_LEAVES: Final = frozenset({type(None), bool, int, float, str, bytes})


def _check_plain(body: dict[str, Any], limits: CodecLimits) -> None:
    """The checks `_resolve` makes, for a body whose header declares no arrays, without a copy.

    Same rules, same errors: no node deeper than `depth_max` (the body is depth 0), string map
    keys, leaves of the msgpack scalar types only, and no array reference (there is nothing for
    one to refer to). An explicit stack instead of recursion, and exact type tests (msgpack
    builds exact dicts, lists and scalars), make a ledger batch of 1,024 events cost about a
    tenth of the rebuilding walk. Each container costs one pass over its keys and one over its
    values; the work is bounded by the unpacker's own limits (header bytes, container lengths).
    """
    depth_max = limits.depth_max
    stack: list[tuple[dict[str, Any] | list[Any], int]] = [(body, 0)]
    while stack:
        node, depth = stack.pop()
        if type(node) is dict:
            for key in node:
                if type(key) is not str:
                    _key(key)  # raises the walker's error
            children: Any = node.values()
        else:
            children = node
        if depth >= depth_max and children:
            msg = f"header nests deeper than {depth_max} levels"
            raise InvalidRequest(msg)
        for child in children:
            kind = type(child)
            if kind in _PLAIN_LEAVES:
                continue
            if kind is dict or kind is list:
                stack.append((child, depth + 1))
            elif kind is _ArrayRef:
                msg = f"array reference {child.index} is out of range or used twice"
                raise InvalidRequest(msg)
            else:
                msg = f"header holds an unsupported value of type {kind.__name__}"
                raise InvalidRequest(msg)


def _key(key: object) -> str:
    if not isinstance(key, str):
        msg = "header map keys must be strings"
        raise InvalidRequest(msg)
    return key


def _check_bools(arrays: list[np.ndarray[Any, Any]]) -> None:
    """A bool frame holds only the bytes 0 and 1.

    numpy reads any other byte as True but compares and copies the raw byte, and torch (which
    receives these arrays in the integrations) leaves such a tensor's behaviour undefined.
    """
    for index, array in enumerate(arrays):
        if array.dtype == np.bool_ and array.size and int(array.view(np.uint8).max()) > 1:
            msg = f"bool array in frame {1 + index} holds bytes other than 0 and 1"
            raise InvalidRequest(msg, details={"frame": 1 + index})


def _check_finite(arrays: list[np.ndarray[Any, Any]]) -> None:
    for index, array in enumerate(arrays):
        if not all_finite(array):
            msg = f"array in frame {1 + index} holds NaN or infinity, which the protocol forbids"
            raise InvalidRequest(msg, details={"frame": 1 + index})


__all__ = [
    "ARRAY_REF_EXT",
    "CODEC_VERSION",
    "DEFAULT_LIMITS",
    "CodecLimits",
    "Decoded",
    "Frame",
    "decode",
    "encode",
    "is_agent_id",
    "request_id_of",
]
