"""An owner's segments, reused: arrays are written into memory whose pages are already there.

Creating and faulting in a fresh tmpfs file costs about as much as the copy it saves (110 ms
for 512 MiB here), so a pool keeps its segments and leases them again. Each segment is, for its
owner, free, held (this process writes or reads it for one message) or lent (a peer holds views
of the current generation until it writes `released`, or dies). A lent segment is never leased
again before that, so what a peer reads never changes under it. The pool is bounded by bytes;
when nothing fits, arrays travel inline as frames, which is slower but never wrong.
"""

from __future__ import annotations

import contextlib
import math
import threading
import weakref
from collections.abc import Iterator
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from latentmas_mesh.shm import segment as seg
from latentmas_mesh.wire.shared import SegmentRef

GRANULE: Final = 1 << 20  # capacities are whole MiB, so segments of nearby sizes are shared
FIT_SLACK: Final = 2  # a free segment serves a lease of at least 1/FIT_SLACK of its capacity


class State(Enum):
    FREE = "free"
    HELD = "held"
    LENT = "lent"


@dataclass(eq=False)
class _Slot:
    segment: seg.Segment
    state: State = State.FREE
    generation: int = 0
    address: int = 0  # where its data starts in this process

    def contains(self, start: int, nbytes: int) -> bool:
        return self.address <= start and start + nbytes <= self.address + self.segment.capacity


class SegmentPool:
    """Segments this process owns. Thread-safe: the asyncio transport and a worker's handler
    thread lease from one pool while others release."""

    def __init__(self, directory: Path, *, bytes_max: int, array_bytes_min: int) -> None:
        self.directory = seg.prepare_directory(directory)
        self.bytes_max = bytes_max
        self.array_bytes_min = array_bytes_min
        self._slots: list[_Slot] = []
        self._user_held: list[_Slot] = []  # from empty(), until their arrays die
        self._lock = threading.Lock()
        self.created = 0
        seg.sweep(self.directory)

    @property
    def bytes_mapped(self) -> int:
        return sum(slot.segment.capacity for slot in self._slots)

    def empty(self, shape: tuple[int, ...], dtype: npt.DTypeLike) -> np.ndarray[Any, Any]:
        """An uninitialised array in a segment of its own, held until the array (and every view
        of it) is gone: a message carrying it references it instead of copying it. Private
        memory when the array is small or no segment fits."""
        dtype = np.dtype(dtype)
        count = math.prod(shape)
        nbytes = count * dtype.itemsize
        slot = None if nbytes < self.array_bytes_min else self._lease(nbytes, 0)
        if slot is None:
            return np.empty(shape, dtype)
        with self._lock:
            self._user_held.append(slot)
        root = np.frombuffer(slot.segment.data(0, nbytes), dtype, count)
        weakref.finalize(root, self._drop_user_held, slot)  # every view keeps `root` alive
        return root.reshape(shape)

    def _drop_user_held(self, slot: _Slot) -> None:
        with self._lock:
            if slot in self._user_held:
                self._user_held.remove(slot)
                slot.state = State.FREE

    def scope(self, *, lessee: int = 0, copy_in: bool = False) -> Scope:
        """The segments one message uses (see Scope)."""
        return Scope(self, lessee=lessee, copy_in=copy_in)

    def close(self) -> None:
        """Remove every segment file; views peers or this process still hold stay valid."""
        with self._lock:
            slots, self._slots, self._user_held = self._slots, [], []
        for slot in slots:
            with contextlib.suppress(OSError):
                (self.directory / slot.segment.name).unlink()
            slot.segment.close()

    # ------------------------------------------------------------------------------ leasing

    def _lease(self, nbytes: int, lessee: int) -> _Slot | None:
        """A held slot of at least `nbytes`, new generation written; None when the budget is
        spent on segments in use (the caller then sends inline)."""
        capacity = max(GRANULE, math.ceil(nbytes / GRANULE) * GRANULE)
        with self._lock:
            slot = self._fitting(nbytes) or self._fitting(nbytes, reclaim=True)
            if slot is None:
                slot = self._grow(capacity)
            if slot is None:
                return None
            slot.state = State.HELD
            slot.generation = slot.segment.lease(lessee)
            return slot

    def _fitting(self, nbytes: int, *, reclaim: bool = False) -> _Slot | None:
        best = None
        for slot in self._slots:
            if reclaim and slot.state is State.LENT:
                self._reclaim(slot)
            if slot.state is not State.FREE:
                continue
            capacity = slot.segment.capacity
            if nbytes <= capacity <= FIT_SLACK * max(nbytes, GRANULE) and (
                best is None or capacity < best.segment.capacity
            ):
                best = slot
        return best

    def _reclaim(self, slot: _Slot) -> None:
        """A lent slot is free again once its lessee released this generation or is dead."""
        segment = slot.segment
        if segment.released == slot.generation or not seg.alive(segment.lessee):
            slot.state = State.FREE

    def _grow(self, capacity: int) -> _Slot | None:
        """A new segment, after dropping free ones that stand in its way of the budget."""
        for slot in sorted(self._slots, key=lambda s: -s.segment.capacity):
            if self.bytes_mapped + capacity <= self.bytes_max:
                break
            if slot.state is State.FREE:
                self._slots.remove(slot)
                with contextlib.suppress(OSError):
                    (self.directory / slot.segment.name).unlink()
                slot.segment.close()
        if self.bytes_mapped + capacity > self.bytes_max:
            return None
        try:
            segment = seg.create(self.directory, capacity)
        except OSError:  # tmpfs full: inline frames still work
            return None
        address = np.frombuffer(segment.mm, np.uint8).ctypes.data + seg.CONTROL_BYTES
        slot = _Slot(segment, address=address)
        self._slots.append(slot)
        self.created += 1
        return slot

    def _end(self, slots: list[_Slot], lent: set[int]) -> None:
        with self._lock:
            for slot in slots:
                slot.state = State.LENT if id(slot) in lent else State.FREE

    def _slot_of(self, array: np.ndarray[Any, Any], slots: list[_Slot]) -> _Slot | None:
        if not array.flags.c_contiguous or array.nbytes == 0:
            return None
        start = array.ctypes.data
        return next((slot for slot in list(slots) if slot.contains(start, array.nbytes)), None)


class Scope:
    """The segments of one message: arrays allocated in them (a worker's reply) or copied into
    them (a client's request), and the references the codec writes for them.

    `end(lent=True)` lends the segments a sent message referenced to its lessee (they stay
    untouched until released); every other segment, and all of them with `lent=False` (a
    request whose call is over, a reply that failed), is free again.
    """

    def __init__(self, pool: SegmentPool, *, lessee: int, copy_in: bool) -> None:
        self._pool = pool
        self._lessee = lessee
        self._copy_in = copy_in
        self._slots: list[_Slot] = []
        self._referenced: set[int] = set()

    def allocate(self, shape: tuple[int, ...], dtype: np.dtype[Any]) -> np.ndarray[Any, Any]:
        """An uninitialised array in a leased segment (or in private memory when none fits)."""
        dtype = np.dtype(dtype)
        nbytes = math.prod(shape) * dtype.itemsize
        slot = (
            None if nbytes < self._pool.array_bytes_min else self._pool._lease(nbytes, self._lessee)
        )
        if slot is None:
            return np.empty(shape, dtype)
        self._slots.append(slot)
        view = slot.segment.data(0, nbytes)
        return np.frombuffer(view, dtype, math.prod(shape)).reshape(shape)

    def place(self, array: object) -> SegmentRef | None:
        """The codec's SegmentWriter: a reference for an array in this scope's segments, or one
        copied into a new lease (clients), or None (the array travels as a frame)."""
        if not isinstance(array, np.ndarray) or array.nbytes < self._pool.array_bytes_min:
            return None
        slot = self._pool._slot_of(array, self._slots) or self._pool._slot_of(
            array, self._pool._user_held
        )
        if slot is None:
            if not self._copy_in:
                return None
            slot = self._pool._lease(array.nbytes, self._lessee)
            if slot is None:
                return None
            self._slots.append(slot)
            target = np.frombuffer(slot.segment.data(0, array.nbytes), array.dtype, array.size)
            np.copyto(target.reshape(array.shape), array)
            offset = 0
        else:
            offset = array.ctypes.data - slot.address
        self._referenced.add(id(slot))
        segment = slot.segment
        return SegmentRef(segment.name, segment.token, slot.generation, offset)

    @property
    def referenced(self) -> bool:
        return bool(self._referenced)

    def end(self, *, lent: bool) -> None:
        """Free the scope's segments, or lend the referenced ones (see the class)."""
        self._pool._end(self._slots, self._referenced if lent else set())
        self._slots, self._referenced = [], set()

    @contextlib.contextmanager
    def ending(self, *, lent: bool = False) -> Iterator[Scope]:
        try:
            yield self
        finally:
            self.end(lent=lent)


__all__ = ["GRANULE", "Scope", "SegmentPool", "State"]
