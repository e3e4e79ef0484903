"""Peers' segments as this process maps them: opened once, checked on every use, bounded.

A worker maps its clients' request segments; a client maps the workers' reply segments and,
when the arrays it was given die, writes `released` so the worker may lease the memory again.
Mappings are kept (a pool reuses its segments, so the same files come back) up to a byte
bound; one whose file its owner removed is dropped at the next use of the cache.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from pathlib import Path

import numpy as np

from latentmas_mesh.errors import InvalidRequest
from latentmas_mesh.shm import segment as seg
from latentmas_mesh.wire.shared import SegmentRef


class PeerSegments:
    """A cache of mapped peer segments; `reader()` gives the codec one per message."""

    def __init__(self, directory: Path, *, mapped_bytes_max: int) -> None:
        self.directory = directory
        self.mapped_bytes_max = mapped_bytes_max
        self._cache: OrderedDict[str, seg.Segment] = OrderedDict()
        self._lock = threading.Lock()
        self.opened = 0

    def reader(self, *, release: bool) -> Reader:
        """A SegmentReader for one message; with `release`, the lessee's side: the owner is
        told when the arrays made from the views are gone."""
        return Reader(self, release=release)

    def close(self) -> None:
        with self._lock:
            cache, self._cache = self._cache, OrderedDict()
        for segment in cache.values():
            segment.close()

    def _segment(self, ref: SegmentRef) -> seg.Segment:
        with self._lock:
            self._drop_unlinked()
            segment = self._cache.get(ref.name)
            if segment is not None and segment.token == ref.token:
                self._cache.move_to_end(ref.name)
                return segment
        segment = seg.open_peer(self.directory, ref.name, ref.token)
        with self._lock:
            old = self._cache.pop(ref.name, None)
            if old is not None:
                old.close()
            self._cache[ref.name] = segment
            self.opened += 1
            while (
                sum(s.capacity for s in self._cache.values()) > self.mapped_bytes_max
                and len(self._cache) > 1
            ):
                _, evicted = self._cache.popitem(last=False)
                evicted.close()
        return segment

    def _drop_unlinked(self) -> None:
        for name in [name for name, s in self._cache.items() if s.unlinked()]:
            self._cache.pop(name).close()


class Reader:
    """The codec's SegmentReader for one message. `owner` is the pid that owns the segments it
    mapped (a worker lends its reply segments to that process)."""

    def __init__(self, peers: PeerSegments, *, release: bool) -> None:
        self._peers = peers
        self._release = release
        self.owner = 0

    def view(self, ref: SegmentRef, nbytes: int) -> memoryview:
        segment = self._peers._segment(ref)
        if segment.generation != ref.generation:
            msg = f"segment {ref.name} holds generation {segment.generation}, not {ref.generation}"
            raise InvalidRequest(msg, details={"segment": ref.name})
        base = np.frombuffer(segment.data(ref.offset, nbytes), np.uint8)
        base.flags.writeable = False
        self.owner = segment.owner
        if self._release:  # every array the codec makes keeps `base` alive: its end is theirs
            weakref.finalize(base, segment.release, ref.generation)
        return memoryview(base.data)


__all__ = ["PeerSegments", "Reader"]
