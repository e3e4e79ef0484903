"""The binary HTTP form, `application/vnd.latentmas.frames`: the codec's own frames, each
prefixed by its length, in one body (`codec.packed`). The same bytes as on ZeroMQ, so one format
documents both transports and the gateway neither converts nor copies arrays."""

from __future__ import annotations

from typing import Final

from latentmas_mesh.codec.packed import (
    FRAMES_MAX,
    LENGTH_BYTES,
    body_bytes,
    join_frames,
    split_frames,
)

MEDIA_TYPE: Final = "application/vnd.latentmas.frames"

__all__ = ["FRAMES_MAX", "LENGTH_BYTES", "MEDIA_TYPE", "body_bytes", "join_frames", "split_frames"]
