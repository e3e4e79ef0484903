"""The `ledger` worker kind: the `latentmas.ledger` service on the shared worker base."""

from __future__ import annotations

import time

from pydantic import BaseModel

from latentmas_mesh.codec import Decoded
from latentmas_mesh.ledger import open_store
from latentmas_mesh.ledger.service import LedgerPolicy, LedgerService
from latentmas_mesh.ledger.settings import LedgerSettings
from latentmas_mesh.market import PriceSchedule
from latentmas_mesh.protocol.ledger import LEDGER_SERVICE
from workers.base import RawWorker, RequestContext, Worker
from workers.settings import WorkerSettings

SERVICE = LEDGER_SERVICE


def wall_clock_ms() -> int:
    """Milliseconds since the epoch: reservation deadlines and quotes are wall-clock times."""
    return time.time_ns() // 1_000_000


def build_service(ledger: LedgerSettings) -> LedgerService:
    """The service over the configured store (SQLite file or PostgreSQL URL)."""
    store = open_store(ledger.ledger_url, now_ms=wall_clock_ms())
    policy = LedgerPolicy(
        quote_key=ledger.quote_key(),
        currency=ledger.ledger_currency,
        quote_ttl_ms=ledger.ledger_quote_ttl_ms,
        services=ledger.ledger_services,
        operators=ledger.ledger_operators,
        open_deposits=ledger.ledger_open_deposits,
        sweep_interval_ms=ledger.ledger_sweep_interval_ms,
        schedule=PriceSchedule(tokens_cap=ledger.ledger_tokens_cap),
    )
    return LedgerService(store, policy, clock=wall_clock_ms)


def create(settings: WorkerSettings) -> RawWorker:
    """A ledger worker. Its own options come from `LATENTMAS_LEDGER_*` (see LedgerSettings).

    The payer of every event is `context.identity`, the CURVE key the broker authenticated.
    """
    service = build_service(LedgerSettings())

    def handle(request: Decoded, context: RequestContext) -> BaseModel:
        return service.handle(request.message, context.identity)

    return Worker(SERVICE, handle, settings)


__all__ = ["SERVICE", "build_service", "create", "wall_clock_ms"]
