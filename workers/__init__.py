"""Worker processes: the shared worker base and a registry of worker kinds, imported lazily."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from workers.base import RawWorker
    from workers.settings import WorkerSettings

WorkerFactory = Callable[["WorkerSettings"], "RawWorker"]

WORKER_KINDS: dict[str, str] = {
    "echo": "workers.echo:create",
    "ledger": "workers.ledger:create",
}
"""Kind name -> "module:factory"; a factory takes WorkerSettings and returns a worker to `run()`.

A new kind is one line here (e.g. "ledger": "workers.ledger:create"); its module is imported only
when that kind is started, so a kind's heavy dependencies cost nothing to the others.
"""


def load_factory(kind: str) -> WorkerFactory:
    """The factory of a registered kind; an unknown kind raises KeyError naming the known ones."""
    try:
        target = WORKER_KINDS[kind]
    except KeyError:
        known = ", ".join(sorted(WORKER_KINDS))
        raise KeyError(f"unknown worker kind {kind!r}; known kinds: {known}") from None
    module_name, _, attribute = target.partition(":")
    factory: WorkerFactory = getattr(importlib.import_module(module_name), attribute)
    return factory


__all__ = ["WORKER_KINDS", "WorkerFactory", "load_factory"]
