"""The binary HTTP form: the codec's own frames (msgpack header, then one raw frame per array),
each prefixed by its length, in one body. The same bytes as on ZeroMQ, so one format documents
both transports and the gateway neither converts nor copies arrays."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Final

from latentmas_mesh.errors import InvalidRequest, PayloadTooLarge

MEDIA_TYPE: Final = "application/vnd.latentmas.frames"
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


__all__ = ["FRAMES_MAX", "LENGTH_BYTES", "MEDIA_TYPE", "body_bytes", "join_frames", "split_frames"]
