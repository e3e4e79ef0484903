"""Worker kinds used only by the process tests (added through LATENTMAS_WORKER_KINDS)."""

from __future__ import annotations

import time

from workers.base import RawWorker
from workers.settings import WorkerSettings

SLOW_SERVICE = "tests.slow"
KINDS_ENV = {"LATENTMAS_WORKER_KINDS": "slow=tests.broker.kinds:create_slow"}


def slow_echo(body, context):
    """Sleeps for the number of seconds in the first frame, then echoes the body."""
    time.sleep(float(body[0].bytes))
    return body


def create_slow(settings: WorkerSettings) -> RawWorker:
    """A threaded worker whose requests take as long as they ask."""
    return RawWorker(SLOW_SERVICE, slow_echo, settings)
