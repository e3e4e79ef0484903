"""Run N worker processes of one kind: start, restart on crash with backoff, stop on SIGTERM."""

from __future__ import annotations

import multiprocessing
import signal
import threading
import time
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Any

from latentmas_mesh.log import configure_logging, get_logger
from workers import load_factory
from workers.settings import WorkerSettings

RESTART_DELAY_S_MIN = 0.2
RESTART_DELAY_S_MAX = 10.0
HEALTHY_AFTER_S = 30.0
"""A child that lived this long resets its restart delay (it was not crash-looping)."""


def run_worker(kind: str, settings: WorkerSettings) -> None:
    """Run one worker of `kind` in this process until SIGTERM or SIGINT."""
    worker = load_factory(kind)(settings)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        worker.stop()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    worker.run()


def _child(kind: str, fields: dict[str, Any]) -> None:
    settings = WorkerSettings(**fields)
    configure_logging(settings.log_format, settings.log_level)
    run_worker(kind, settings)


class Supervisor:
    """Keeps `concurrency` processes of one worker kind alive until `stop()`."""

    def __init__(self, kind: str, settings: WorkerSettings, concurrency: int) -> None:
        load_factory(kind)  # an unknown kind fails here, before any process starts
        self.kind = kind
        self.settings = settings
        self.concurrency = concurrency
        self._context = multiprocessing.get_context("spawn")
        self._stop = threading.Event()
        self._log = get_logger("supervisor").bind(kind=kind)
        self.restarts = 0

    def stop(self) -> None:
        """Ask the children to finish (SIGTERM) and return from `run` (signal-safe)."""
        self._stop.set()

    def run(self) -> None:
        """Start the children, restart any that exits, and on stop terminate them all."""
        fields = self.settings.model_dump()
        slots: list[tuple[BaseProcess, float]] = []
        delays = [RESTART_DELAY_S_MIN] * self.concurrency
        for _ in range(self.concurrency):
            slots.append(self._spawn(fields))
        try:
            while not self._stop.wait(0.2):
                for index, (process, started) in enumerate(slots):
                    if process.is_alive():
                        continue
                    lived = time.monotonic() - started
                    delays[index] = (
                        RESTART_DELAY_S_MIN
                        if lived > HEALTHY_AFTER_S
                        else min(delays[index] * 2, RESTART_DELAY_S_MAX)
                    )
                    self._log.warning(
                        "worker_exited", code=process.exitcode, restart_in=delays[index]
                    )
                    if self._stop.wait(delays[index]):
                        break
                    slots[index] = self._spawn(fields)
                    self.restarts += 1
        finally:
            self._terminate([process for process, _ in slots])

    def _spawn(self, fields: dict[str, Any]) -> tuple[BaseProcess, float]:
        process = self._context.Process(target=_child, args=(self.kind, fields), daemon=False)
        process.start()
        return process, time.monotonic()

    def _terminate(self, processes: list[BaseProcess]) -> None:
        for process in processes:
            if process.is_alive():
                process.terminate()
        deadline = time.monotonic() + self.settings.drain_ms_max / 1000 + 1
        for process in processes:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join()


__all__ = ["Supervisor", "run_worker"]
