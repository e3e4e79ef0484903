"""Worker processes: the shared worker base and a registry of worker kinds, imported lazily."""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from workers.base import RawWorker
    from workers.settings import WorkerSettings

WorkerFactory = Callable[["WorkerSettings"], "RawWorker"]

WORKER_KINDS: dict[str, str] = {
    "echo": "workers.echo:create",
    "ledger": "workers.ledger:create",
    "align": "workers.align:create",
    "wmatrix": "workers.wmatrix:create",
    "market": "workers.market:create",
}
"""Kind name -> "module:factory"; a factory takes WorkerSettings and returns a worker to `run()`.

A new kind is one line here (e.g. "ledger": "workers.ledger:create"); its module is imported only
when that kind is started, so a kind's heavy dependencies cost nothing to the others.
"""


EXTRA_KINDS_VARIABLE = "LATENTMAS_WORKER_KINDS"
"""Operators (and tests) add kinds without a code change: "slow=mypkg.slow:create,other=m:f"."""


def worker_kinds() -> dict[str, str]:
    """The registered kinds plus those named in LATENTMAS_WORKER_KINDS (which win on a clash)."""
    kinds = dict(WORKER_KINDS)
    for entry in os.environ.get(EXTRA_KINDS_VARIABLE, "").split(","):
        kind, _, target = entry.strip().partition("=")
        if kind and ":" in target:
            kinds[kind] = target
    return kinds


def load_factory(kind: str) -> WorkerFactory:
    """The factory of a registered kind; an unknown kind raises KeyError naming the known ones."""
    kinds = worker_kinds()
    try:
        target = kinds[kind]
    except KeyError:
        known = ", ".join(sorted(kinds))
        raise KeyError(f"unknown worker kind {kind!r}; known kinds: {known}") from None
    module_name, _, attribute = target.partition(":")
    factory: WorkerFactory = getattr(importlib.import_module(module_name), attribute)
    return factory


__all__ = ["EXTRA_KINDS_VARIABLE", "WORKER_KINDS", "WorkerFactory", "load_factory", "worker_kinds"]
