"""The echo worker: returns a request's body frames unchanged (tests, benchmarks, operators)."""

from __future__ import annotations

from collections.abc import Sequence

import zmq

from workers.base import Frame, RawWorker, RequestContext
from workers.settings import WorkerSettings

SERVICE = "latentmas.echo"


def echo(body: list[zmq.Frame], context: RequestContext) -> Sequence[Frame]:
    """The body frames themselves: forwarded zero-copy, whatever they contain."""
    return body


def create(settings: WorkerSettings) -> RawWorker:
    """An echo worker; it runs inline (no handler thread) since echoing never blocks."""
    return RawWorker(SERVICE, echo, settings.model_copy(update={"handler_thread": False}))


__all__ = ["SERVICE", "create", "echo"]
