"""A message as one byte string: the codec's own frames (msgpack header, one raw frame per
array), each preceded by its length. The gateway's binary HTTP form and the form stored assets
and memories keep their payloads in, so a stored payload is read back by the same checked
decoder that reads the wire, and one format documents all three."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Final

from pydantic import BaseModel

from latentmas_mesh.codec import DEFAULT_LIMITS, CodecLimits, Decoded, decode, encode
from latentmas_mesh.errors import InvalidRequest, PayloadTooLarge

PACKED_REQUEST_ID: Final = "packed"
LENGTH_BYTES: Final = 8
"""Each frame is preceded by its length, an unsigned 64-bit little-endian integer."""
FRAMES_MAX: Final = 4096
"""As many frames as an MDP body may carry (`mdp.BODY_FRAMES_MAX`)."""


def split_frames(
    body: bytes | bytearray | memoryview, *, frames_max: int = FRAMES_MAX
) -> list[memoryview]:
    """The frames of a binary body, as views into it (nothing is copied)."""
    view = memoryview(body).cast("B")
    frames: list[memoryview] = []
    offset = 0
    while offset < len(view):
        if len(frames) == frames_max:
            raise PayloadTooLarge(
                f"a body of more than {frames_max} frames", details={"frames_max": frames_max}
            )
        if offset + LENGTH_BYTES > len(view):
            raise InvalidRequest("a frame length is cut short", details={"offset": offset})
        size = int.from_bytes(view[offset : offset + LENGTH_BYTES], "little")
        offset += LENGTH_BYTES
        if size > len(view) - offset:
            raise InvalidRequest(
                f"a frame of {size} bytes runs past the body's end",
                details={"offset": offset, "bytes": size},
            )
        frames.append(view[offset : offset + size])
        offset += size
    if not frames:
        raise InvalidRequest("an empty binary body", details={})
    return frames


def join_frames(frames: Sequence[bytes | memoryview]) -> Iterator[bytes | memoryview]:
    """The pieces of a binary body for `frames` (lengths and the frames themselves, uncopied)."""
    for frame in frames:
        yield memoryview(frame).nbytes.to_bytes(LENGTH_BYTES, "little")
        yield frame


def body_bytes(frames: Sequence[bytes | memoryview]) -> int:
    """The length of the binary body `join_frames` yields (for Content-Length)."""
    return sum(LENGTH_BYTES + memoryview(frame).nbytes for frame in frames)


def pack(message: BaseModel) -> bytes:
    """`message` as one byte string (its frames, each after its length)."""
    return b"".join(join_frames(encode(message, request_id=PACKED_REQUEST_ID)))


def unpack(data: bytes | memoryview, *, limits: CodecLimits = DEFAULT_LIMITS) -> Decoded:
    """The message `pack` wrote; InvalidRequest (or PayloadTooLarge) for bytes that are not one.
    Arrays are read-only views on `data`, never copies."""
    return decode(split_frames(data, frames_max=limits.array_count_max + 1), limits=limits)


__all__ = [
    "FRAMES_MAX",
    "LENGTH_BYTES",
    "body_bytes",
    "join_frames",
    "pack",
    "split_frames",
    "unpack",
]
