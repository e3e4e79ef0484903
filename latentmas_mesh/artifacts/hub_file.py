"""The unified space's file, shared by every W-matrix and align worker on a host.

Registering a model rewrites the file under an exclusive `flock`; reading takes a shared lock,
so align workers composing maps never serialise each other. A read space is kept in memory and
the file is looked at again only after `refresh_s` (see `artifacts.listing`), so the request
path does no disk work while the space is unchanged.
"""

from __future__ import annotations

import contextlib
import fcntl
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from latentmas_mesh.alignment.hub import UnifiedSpace
from latentmas_mesh.artifacts.listing import REFRESH_S_DEFAULT
from latentmas_mesh.artifacts.maps import load_space, save_space


class HubFile:
    """One unified-space file with its lock file beside it (`<path>.lock`)."""

    def __init__(
        self,
        path: Path,
        *,
        refresh_s: float = REFRESH_S_DEFAULT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = path
        self._refresh_s = refresh_s
        self._clock = clock
        self._cached: tuple[float, tuple[int, int] | None, UnifiedSpace | None] | None = None
        self.reads = 0
        """How many times the file itself was read (tests read it)."""

    @contextlib.contextmanager
    def _locked(self, operation: int) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(f"{self.path}.lock", "a") as lock:
            fcntl.flock(lock, operation)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def read(self) -> UnifiedSpace | None:
        """The space as last written (None when no model registered one yet)."""
        now = self._clock()
        if self._cached is not None and now - self._cached[0] < self._refresh_s:
            return self._cached[2]
        with self._locked(fcntl.LOCK_SH):
            try:
                stat = self.path.stat()
            except FileNotFoundError:  # no space yet: remembered too, so a miss is no disk work
                stat = None
            stamp = None if stat is None else (stat.st_mtime_ns, stat.st_size)
            if stamp is None:
                space = None
            elif self._cached is not None and self._cached[1] == stamp:
                space = self._cached[2]
            else:
                space = load_space(self.path)
                self.reads += 1
        self._cached = (now, stamp, space)
        return space

    def update(self, change: Callable[[UnifiedSpace | None], UnifiedSpace]) -> UnifiedSpace:
        """Read, change and rewrite the space under the exclusive lock (atomic, durable)."""
        with self._locked(fcntl.LOCK_EX):
            space = load_space(self.path) if self.path.exists() else None
            space = change(space)
            save_space(self.path, space)
        self._cached = None
        return space
