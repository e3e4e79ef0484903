"""A client's same-host shared memory: segments for its requests, the workers' for replies.

On when `shared_memory_dir` is set. A call places its large arrays in segments it owns (one
copy, into pages already faulted in) and the worker that can map them writes the reply into
segments it lends back, so a cache crosses no socket. A worker that cannot (another host, or
shared memory off there) refuses with details["shared_memory"] = "unavailable"; the call is then
sent again inline, and this service is sent inline for a while before shared memory is tried
again (a pool may mix local and remote workers).
"""

from __future__ import annotations

import time
from typing import Final

from latentmas_mesh.errors import ProtocolError
from latentmas_mesh.settings import MeshSettings
from latentmas_mesh.shm import PeerSegments, Reader, Scope, SegmentPool
from latentmas_mesh.wire.shared import SHARED_MEMORY_UNAVAILABLE

INLINE_S: Final = 30.0
"""After a refusal, how long a service's calls go inline before segments are tried again."""


class SharedArrays:
    """The pool of request segments and the cache of mapped reply segments of one client."""

    def __init__(self, settings: MeshSettings) -> None:
        directory = settings.shared_memory_dir
        assert directory is not None
        bytes_max = settings.shared_memory_bytes_max
        self.pool = SegmentPool(
            directory, bytes_max=bytes_max, array_bytes_min=settings.shared_memory_array_bytes_min
        )
        self.peers = PeerSegments(directory, mapped_bytes_max=bytes_max)
        self._inline_until: dict[str, float] = {}
        self.fallbacks = 0

    @classmethod
    def from_settings(cls, settings: MeshSettings) -> SharedArrays | None:
        return None if settings.shared_memory_dir is None else cls(settings)

    def scope(self, service: str) -> Scope | None:
        """Segments for one call's arrays, or None while `service` goes inline."""
        until = self._inline_until.get(service)
        if until is not None and time.monotonic() < until:
            return None
        return self.pool.scope(copy_in=True)

    def reader(self) -> Reader:
        """The SegmentReader for a reply: its arrays release the worker's memory when they die."""
        return self.peers.reader(release=True)

    def refused(self, service: str, scope: Scope, error: ProtocolError) -> bool:
        """Whether `error` is a worker's "cannot map your segments" (then: resend inline)."""
        if not scope.referenced or error.details.get("shared_memory") != SHARED_MEMORY_UNAVAILABLE:
            return False
        self._inline_until[service] = time.monotonic() + INLINE_S
        self.fallbacks += 1
        return True

    def close(self) -> None:
        self.pool.close()
        self.peers.close()


__all__ = ["INLINE_S", "SharedArrays"]
