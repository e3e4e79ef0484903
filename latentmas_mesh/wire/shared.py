"""What the codec knows of shared memory: a reference to bytes in a segment, and the two roles.

An array may travel as a reference into a shared-memory segment on the same host instead of a
frame (`latentmas_mesh.shm` owns the files). The codec only writes and reads the reference; who
places arrays and who maps peers' segments is injected, so the codec does no I/O itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Protocol

SEGMENT_KEY: Final = "segment"
"""The descriptor key of an array in shared memory: [name, token, generation, offset]."""
SEGMENT_TOKEN_BYTES: Final = 16
SHARED_MEMORY_UNAVAILABLE: Final = "unavailable"
"""details["shared_memory"] of the refusal a peer that cannot map a segment answers: the sender
then sends the same message again with its arrays inline."""


@dataclass(frozen=True, slots=True)
class SegmentRef:
    """Where an array's bytes lie: segment file `name` in the host's segment directory, whose
    control page holds `token` (random per file: a same-named file on another host is refused)
    and which its owner leased as `generation`; the array starts `offset` bytes into its data."""

    name: str
    token: bytes
    generation: int
    offset: int

    def to_wire(self) -> list[object]:
        return [self.name, self.token, self.generation, self.offset]


class SegmentWriter(Protocol):
    """Puts an outgoing array in shared memory, or declines (None: it travels as a frame)."""

    def place(self, array: object) -> SegmentRef | None: ...


class SegmentReader(Protocol):
    """Maps a peer's segment: a read-only byte view of exactly `nbytes` at the reference, or a
    ProtocolError (details["shared_memory"] = "unavailable" when it is not on this host)."""

    def view(self, ref: SegmentRef, nbytes: int) -> memoryview: ...


__all__ = [
    "SEGMENT_KEY",
    "SEGMENT_TOKEN_BYTES",
    "SHARED_MEMORY_UNAVAILABLE",
    "SegmentReader",
    "SegmentRef",
    "SegmentWriter",
]
