"""The reservation sweeper: expired reservations are released on a timer, requests or not."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Final

from latentmas_mesh.ledger._types import BATCH_EVENTS_MAX, Outcome
from latentmas_mesh.ledger.store import LedgerStore
from latentmas_mesh.log import get_logger

SWEEP_ROUNDS_MAX: Final = 16
"""Batches of BATCH_EVENTS_MAX expiries per tick; a larger backlog waits for the next tick."""
STOP_WAIT_MS_MAX: Final = 10_000


class ReservationSweeper:
    """Expires the pending reservations past their deadline every `interval_ms`, on its own thread.

    Each round is one `store.expire_due` transaction: every expiry is a journal event of its own
    (`expire:<reservation id>`) written together with the return of the funds and the closing of
    the reservation, so a crash mid-round commits nothing and the round after a restart finds the
    same reservations again. A reservation posted, voided or expired meanwhile (by a request, or by
    another node's sweeper) is no longer pending and is skipped: never expired twice.

    `clock` gives the ledger's now in ms (wall-clock, as deadlines are); tests pass their own.
    """

    def __init__(
        self, store: LedgerStore, *, clock: Callable[[], int], interval_ms: int = 1_000
    ) -> None:
        if interval_ms <= 0:
            msg = f"interval_ms must be positive, got {interval_ms}"
            raise ValueError(msg)
        self.store = store
        self.clock = clock
        self.interval_ms = interval_ms
        self.expired = 0
        self.failures = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._log = get_logger("ledger.sweeper")

    def sweep_once(self) -> list[Outcome]:
        """Expire what is due now, in at most SWEEP_ROUNDS_MAX transactions; their outcomes."""
        now_ms = self.clock()
        done: list[Outcome] = []
        for _ in range(SWEEP_ROUNDS_MAX):
            expired = self.store.expire_due(now_ms)
            done.extend(expired)
            if len(expired) < BATCH_EVENTS_MAX:
                break
        self.expired += len(done)
        return done

    def start(self) -> None:
        """Sweep every `interval_ms` on a daemon thread until `stop()`."""
        if self._thread is not None:
            raise RuntimeError("the sweeper is already running")
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="reservation-sweeper", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop after the round in progress (if any) and wait for the thread."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout=STOP_WAIT_MS_MAX / 1000)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_ms / 1000):
            try:
                expired = self.sweep_once()
            except Exception:  # database busy or gone: nothing was committed; retry next tick
                self.failures += 1
                self._log.exception("reservation_sweep_failed", failures=self.failures)
                continue
            if expired:
                self._log.info("reservations_expired", count=len(expired))


__all__ = ["STOP_WAIT_MS_MAX", "SWEEP_ROUNDS_MAX", "ReservationSweeper"]
