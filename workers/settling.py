"""What a worker that settles on the ledger shares: its ledger client (as the worker's own
CURVE identity) and the thread that drains its durable outbox."""

from __future__ import annotations

import threading
import time
from typing import Final

from latentmas_mesh.log import get_logger
from latentmas_mesh.settlement.ledger_client import LedgerClient
from latentmas_mesh.settlement.outbox import Outbox
from latentmas_mesh.transport import Transport, TransportSettings
from workers.settings import WorkerSettings

OUTBOX_DRAIN_S_MAX: Final = 30.0  # one drain round gives up after this; the next round goes on


def worker_transport(worker: WorkerSettings, timeout_ms: int) -> Transport:
    """A client transport through the worker's broker, under the worker's own CURVE key."""
    return Transport(
        TransportSettings(
            broker_url=worker.connect,
            dialect=worker.dialect,
            request_timeout_ms=timeout_ms,
            attempt_timeout_ms=timeout_ms,
            curve_secret_key_file=worker.curve_secret_key_file,
            curve_server_key_file=worker.curve_server_key_file,
        )
    )


def ledger_client(worker: WorkerSettings, timeout_ms: int) -> LedgerClient:
    """A ledger client as the worker's own identity: the identity the ledger must list in
    LATENTMAS_LEDGER_SERVICES to take its posts and voids."""
    return LedgerClient(worker_transport(worker, timeout_ms), timeout_ms=timeout_ms)


def start_outbox_drain(
    outbox: Outbox, worker: WorkerSettings, *, service: str, interval_ms: int, timeout_ms: int
) -> threading.Thread:
    """A daemon thread re-sending what the outbox still holds (voids, posts whose confirmation
    failed, events left by a crash) every `interval_ms`. It has its own transport: a Transport
    serves one thread."""
    log = get_logger("worker").bind(service=service)

    def drain_forever() -> None:
        client = ledger_client(worker, timeout_ms)
        while True:
            try:
                if outbox.pending_count():
                    left = outbox.drain(client.send_events, deadline_s=OUTBOX_DRAIN_S_MAX)
                    log.info("outbox_drained", pending=left)
            except Exception:  # the ledger refused a batch or is away: next round tries again
                log.exception("outbox_drain_failed")
            time.sleep(interval_ms / 1000)

    thread = threading.Thread(target=drain_forever, name="outbox-drain", daemon=True)
    thread.start()
    return thread


__all__ = ["ledger_client", "start_outbox_drain", "worker_transport"]
