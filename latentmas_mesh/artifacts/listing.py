"""Directory listings held in memory, so the request path reads no directory.

A store lists a pair's directory once, then answers from memory; a listing older than
`refresh_s` is read again on its next use (maps put by another process on the host appear
within that time), and a miss re-reads a listing older than `MISS_REFRESH_S` (a client asking
for a version just stored elsewhere finds it, and a pair that keeps missing costs at most one
scan a second). The clock is injected so the rule is tested with plain numbers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Final, Generic, TypeVar

T = TypeVar("T")
REFRESH_S_DEFAULT: Final = 5.0
MISS_REFRESH_S: Final = 1.0


class ListingCache(Generic[T]):
    """`scan(directory)` results by directory, re-scanned after `refresh_s` or on `invalidate`."""

    def __init__(
        self,
        scan: Callable[[Path], T],
        *,
        refresh_s: float = REFRESH_S_DEFAULT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._scan = scan
        self._refresh_s = refresh_s
        self._clock = clock
        self._listings: dict[Path, tuple[float, T]] = {}
        self.scans = 0
        """How many directory scans this cache made (tests and metrics read it)."""

    def get(self, directory: Path, *, max_age_s: float | None = None) -> T:
        """The listing of `directory`, from memory while it is younger than `max_age_s`
        (default: the cache's `refresh_s`)."""
        now = self._clock()
        cached = self._listings.get(directory)
        limit = self._refresh_s if max_age_s is None else min(max_age_s, self._refresh_s)
        if cached is not None and now - cached[0] < limit:
            return cached[1]
        listing = self._scan(directory)
        self.scans += 1
        self._listings[directory] = (now, listing)
        return listing

    def invalidate(self, directory: Path) -> None:
        """Forget `directory`'s listing (after a write, or before re-checking a miss)."""
        self._listings.pop(directory, None)
