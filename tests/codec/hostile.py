"""A corpus of hostile frame lists, each with the exact error code the decoder must answer."""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np

from latentmas_mesh import codec
from latentmas_mesh.errors import ErrorCode
from tests.protocol.factories import kv_cache

INVALID = ErrorCode.INVALID_REQUEST
TOO_LARGE = ErrorCode.PAYLOAD_TOO_LARGE


@dataclass(frozen=True)
class Case:
    """One hostile input: a name, a builder of its frames, the code it must produce."""

    name: str
    build: Callable[[], list[Any]]
    code: ErrorCode
    limits: codec.CodecLimits = codec.DEFAULT_LIMITS


def valid_frames(*, dtype: str = "float16") -> list[Any]:
    """A valid encoded KV cache: header, keys, values, attention mask, positions."""
    kv = kv_cache(np.random.default_rng(7), dtype=dtype)
    return [bytes(frame) for frame in codec.encode(kv, request_id="req-hostile")]


def header(frames: list[Any]) -> dict[str, Any]:
    """The header map of `frames`, with array references left as msgpack ExtType values."""
    unpacked = msgpack.unpackb(frames[0], raw=False)
    assert isinstance(unpacked, dict)
    return unpacked


def with_header(
    edit: Callable[[dict[str, Any]], object], frames: list[Any] | None = None
) -> list[Any]:
    """Frames whose header has been changed by `edit` (which mutates it or returns a new one)."""
    frames = frames if frames is not None else valid_frames()
    changed = header(frames)
    result = edit(changed)
    new_header = changed if result is None else result
    return [msgpack.packb(new_header, use_bin_type=True), *frames[1:]]


def with_frame(index: int, value: object) -> list[Any]:
    frames = valid_frames()
    frames[index] = value
    return frames


def set_in(path: list[Any], value: object) -> Callable[[dict[str, Any]], None]:
    """An edit that sets header[path[0]][path[1]]... = value."""

    def edit(mapping: dict[str, Any]) -> None:
        node: Any = mapping
        for key in path[:-1]:
            node = node[key]
        node[path[-1]] = value

    return edit


def nested(depth: int) -> object:
    node: object = 1
    for _ in range(depth):
        node = [node]
    return node


def poisoned(dtype: str, value: float, where: str = "keys") -> list[Any]:
    """A valid message whose `where` array frame holds one non-finite element."""
    frames = valid_frames(dtype=dtype)
    index = {"keys": 1, "values": 2}[where]
    kv = kv_cache(np.random.default_rng(7), dtype=dtype)
    array = (kv.keys if where == "keys" else kv.values).copy()
    array.reshape(-1)[5] = value
    frames[index] = array.tobytes()
    return frames


def bool_mask_frames(middle_byte: int) -> list[Any]:
    """A valid message with a bool attention mask [1, 3] whose frame is [1, middle_byte, 0]."""
    kv = kv_cache(np.random.default_rng(7)).model_copy(
        update={"attention_mask": np.array([[True, True, False]])}
    )
    frames = [bytes(frame) for frame in codec.encode(kv, request_id="req-hostile")]
    frames[3] = bytes([1, middle_byte, 0])
    return frames


def unreferenced_extra_array(mapping: dict[str, Any]) -> None:
    mapping["arrays"].append({"dtype": "uint8", "shape": [1], "frame": 5})


SMALL = codec.CodecLimits(message_bytes_max=600)  # the valid message is about 700 bytes
EXT = msgpack.ExtType

CORPUS: list[Case] = [
    # frame list shape
    Case("no frames", list, INVALID),
    Case("frames not a list", lambda: b"\x80", INVALID),
    Case("frame of wrong type", lambda: with_frame(1, 12345), INVALID),
    Case("frame is a str", lambda: ["header"], INVALID),
    Case(
        "non-contiguous memoryview frame",
        lambda: with_frame(1, memoryview(np.zeros((4, 4), np.uint8)[:, ::2])),
        INVALID,
    ),
    Case("missing array frame", lambda: valid_frames()[:-1], INVALID),
    Case("extra frame", lambda: [*valid_frames(), b"\x00" * 8], INVALID),
    Case("header frame only", lambda: valid_frames()[:1], INVALID),
    # header bytes
    Case("truncated header", lambda: [valid_frames()[0][:40], *valid_frames()[1:]], INVALID),
    Case("garbage header", lambda: [b"\xc1\xc1\xc1", *valid_frames()[1:]], INVALID),
    Case("trailing bytes after header", lambda: [valid_frames()[0] + b"\x00"], INVALID),
    Case("empty header", lambda: [b""], INVALID),
    Case("header not a map", lambda: [msgpack.packb([1, 2, 3])], INVALID),
    Case("header is a bare int", lambda: [msgpack.packb(7)], INVALID),
    Case("header map with int keys", lambda: [msgpack.packb({1: 2})], INVALID),
    Case("invalid utf-8 in a header string", lambda: [b"\x81\xa2\xff\xfe\x01"], INVALID),
    Case(
        "str length far past the header",
        lambda: [b"\x81\xdb\x7f\xff\xff\xff" + b"a" * 10],
        INVALID,
    ),
    Case(
        "header too large",
        valid_frames,
        TOO_LARGE,
        codec.CodecLimits(header_bytes_max=64),
    ),
    Case("message too large", valid_frames, TOO_LARGE, SMALL),
    Case(
        "too many frames",
        lambda: [valid_frames()[0]] + [b""] * 70,
        TOO_LARGE,
    ),
    # header layout
    Case("missing header key", lambda: with_header(lambda h: h.pop("request_id")), INVALID),
    Case("extra header key", lambda: with_header(set_in(["extra"], 1)), INVALID),
    Case("wrong codec version", lambda: with_header(set_in(["version"], 2)), INVALID),
    Case("codec version as bool", lambda: with_header(set_in(["version"], True)), INVALID),
    Case("codec version as str", lambda: with_header(set_in(["version"], "1")), INVALID),
    Case("unknown message type", lambda: with_header(set_in(["type"], "kv_cache_v9")), INVALID),
    Case("type not a str", lambda: with_header(set_in(["type"], 3)), INVALID),
    Case("request id not a str", lambda: with_header(set_in(["request_id"], 5)), INVALID),
    Case("empty request id", lambda: with_header(set_in(["request_id"], "")), INVALID),
    Case("request id too long", lambda: with_header(set_in(["request_id"], "r" * 500)), INVALID),
    Case("body not a map", lambda: with_header(set_in(["body"], [1])), INVALID),
    Case("arrays not a list", lambda: with_header(set_in(["arrays"], {})), INVALID),
    Case(
        "too many arrays declared",
        lambda: with_header(
            set_in(["arrays"], [{"dtype": "uint8", "shape": [0], "frame": 1}] * 65)
        ),
        TOO_LARGE,
    ),
    # array descriptors
    Case("unknown dtype", lambda: with_header(set_in(["arrays", 0, "dtype"], "float8")), INVALID),
    Case("numpy dtype string", lambda: with_header(set_in(["arrays", 0, "dtype"], "<f2")), INVALID),
    Case("object dtype", lambda: with_header(set_in(["arrays", 0, "dtype"], "object")), INVALID),
    Case("dtype not a str", lambda: with_header(set_in(["arrays", 0, "dtype"], 16)), INVALID),
    Case("descriptor not a map", lambda: with_header(set_in(["arrays", 0], [1])), INVALID),
    Case("descriptor extra key", lambda: with_header(set_in(["arrays", 0, "x"], 1)), INVALID),
    Case(
        "negative dimension",
        lambda: with_header(set_in(["arrays", 0, "shape"], [-2, 2, 3, 4])),
        INVALID,
    ),
    Case(
        "float dimension",
        lambda: with_header(set_in(["arrays", 0, "shape"], [2.0, 2, 3, 4])),
        INVALID,
    ),
    Case(
        "bool dimension",
        lambda: with_header(set_in(["arrays", 0, "shape"], [True, 2, 3, 4])),
        INVALID,
    ),
    Case("shape not a list", lambda: with_header(set_in(["arrays", 0, "shape"], 48)), INVALID),
    Case(
        "too many dimensions", lambda: with_header(set_in(["arrays", 0, "shape"], [1] * 9)), INVALID
    ),
    Case(
        "huge dimensions whose product overflows int64",
        lambda: with_header(set_in(["arrays", 0, "shape"], [2**31, 2**31, 2**31, 2**31])),
        INVALID,
    ),
    Case(
        "dimension beyond uint64",
        lambda: with_header(set_in(["arrays", 0, "shape"], [2**64 - 1, 0])),
        INVALID,
    ),
    Case(
        "zero dimension with huge partner",
        lambda: with_header(set_in(["arrays", 0, "shape"], [0, 2**40])),
        INVALID,
    ),
    Case(
        "lying shape (too many elements)",
        lambda: with_header(set_in(["arrays", 0, "shape"], [2, 2, 3, 5])),
        INVALID,
    ),
    Case(
        "lying shape (too few elements)",
        lambda: with_header(set_in(["arrays", 0, "shape"], [2, 2, 3, 3])),
        INVALID,
    ),
    Case(
        "lying dtype (wider)",
        lambda: with_header(set_in(["arrays", 0, "dtype"], "float32")),
        INVALID,
    ),
    Case("truncated array frame", lambda: with_frame(1, valid_frames()[1][:-1]), INVALID),
    Case("empty array frame", lambda: with_frame(1, b""), INVALID),
    Case("wrong frame index", lambda: with_header(set_in(["arrays", 0, "frame"], 2)), INVALID),
    Case("frame index zero", lambda: with_header(set_in(["arrays", 0, "frame"], 0)), INVALID),
    # array references in the body
    Case(
        "array never referenced",
        lambda: with_header(unreferenced_extra_array, [*valid_frames(), b"\x01"]),
        INVALID,
    ),
    Case(
        "array referenced twice",
        lambda: with_header(set_in(["body", "values"], EXT(1, struct.pack(">I", 0)))),
        INVALID,
    ),
    Case(
        "array reference out of range",
        lambda: with_header(set_in(["body", "keys"], EXT(1, struct.pack(">I", 99)))),
        INVALID,
    ),
    Case(
        "unknown ext type",
        lambda: with_header(set_in(["body", "keys"], EXT(9, b"\x00" * 4))),
        INVALID,
    ),
    Case(
        "ext reference of wrong length",
        lambda: with_header(set_in(["body", "keys"], EXT(1, b"\x00"))),
        INVALID,
    ),
    Case(
        "msgpack timestamp in body",
        lambda: with_header(set_in(["body", "source_model"], msgpack.Timestamp(0))),
        INVALID,
    ),
    # nesting and sizes inside msgpack
    Case(
        "body nested 40 deep",
        lambda: with_header(set_in(["body", "source_model"], nested(40))),
        INVALID,
    ),
    Case(
        "msgpack nested 5000 deep",
        lambda: [b"\x91" * 5000 + b"\x01"],
        INVALID,
    ),
    Case(
        "list longer than container limit",
        lambda: with_header(set_in(["body", "x"], [None] * 70_000)),
        INVALID,
    ),
    # schema (pydantic) violations
    Case("wrong field type", lambda: with_header(set_in(["body", "source_model"], 42)), INVALID),
    Case("missing field", lambda: with_header(lambda h: h["body"].pop("metadata")), INVALID),
    Case("unknown field", lambda: with_header(set_in(["body", "colour"], "red")), INVALID),
    Case(
        "sequence length disagrees with seq axis",
        lambda: with_header(set_in(["body", "metadata", "sequence_length"], 4)),
        INVALID,
    ),
    Case(
        "naive generated_at",
        lambda: with_header(set_in(["body", "metadata", "generated_at"], "2026-01-01T00:00:00")),
        INVALID,
    ),
    # wrong scalar types are refused, never coerced
    Case(
        "sequence length as a numeric string",
        lambda: with_header(set_in(["body", "metadata", "sequence_length"], "3")),
        INVALID,
    ),
    Case(
        "sequence length as a whole float",
        lambda: with_header(set_in(["body", "metadata", "sequence_length"], 3.0)),
        INVALID,
    ),
    Case(
        "token count as a bool",
        lambda: with_header(set_in(["body", "metadata", "token_count"], True)),
        INVALID,
    ),
    Case(
        "source model as msgpack bin",
        lambda: with_header(set_in(["body", "source_model"], b"llama-3-8b")),
        INVALID,
    ),
    Case(
        "generated_at as a unix timestamp",
        lambda: with_header(set_in(["body", "metadata", "generated_at"], 1_769_344_205)),
        INVALID,
    ),
    Case(
        "generated_at as a string of digits",
        lambda: with_header(set_in(["body", "metadata", "generated_at"], "1769344205")),
        INVALID,
    ),
    Case(
        "keys of a dtype KV caches do not use",
        lambda: with_header(set_in(["arrays", 0, "dtype"], "int16")),
        INVALID,
    ),
    Case(
        "keys and values disagree on layers",
        lambda: with_header(set_in(["arrays", 1, "shape"], [1, 4, 3, 4])),
        INVALID,
    ),
    Case("keys of rank 3", lambda: with_header(set_in(["arrays", 0, "shape"], [4, 3, 4])), INVALID),
    Case("bool frame holding the byte 2", lambda: bool_mask_frames(2), INVALID),
    Case("bool frame holding the byte 255", lambda: bool_mask_frames(255), INVALID),
    # NaN / Inf
    Case("NaN in float16 keys", lambda: poisoned("float16", np.nan), INVALID),
    Case("+Inf in float16 values", lambda: poisoned("float16", np.inf, "values"), INVALID),
    Case("-Inf in bfloat16 keys", lambda: poisoned("bfloat16", -np.inf), INVALID),
    Case("NaN in float32 values", lambda: poisoned("float32", np.nan, "values"), INVALID),
]
