"""An emitter process for the crash test: spools settlements, delivers them from its outbox.

Run as `python -m tests.ledger.emitter_process BROKER SECRET SERVER_KEY SPOOL INDEX SEED`.
Killed and restarted, it regenerates the same events (seeded), re-adds them (a no-op for those
already spooled) and delivers whatever its spool still holds. With CRASH_AFTER_SENDS=n in the
environment it SIGKILLs itself right after its n-th delivery returns and before it records the
answers: the worst moment, when the ledger has applied a batch the emitter will send again.
"""

from __future__ import annotations

import os
import random
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from latentmas_mesh.protocol.ledger import EventResult, LedgerWireEvent, SettleEvent
from latentmas_mesh.settlement.ledger_client import LedgerClient
from latentmas_mesh.settlement.outbox import Outbox
from latentmas_mesh.transport import Transport, TransportSettings

EVENTS_PER_EMITTER = 2_560
CHUNK = 64
CHUNK_PAUSE_S = 0.25
CRASH_AFTER_SENDS = "CRASH_AFTER_SENDS"
CREATORS = ("creator-0", "creator-1", "creator-2")
VALIDATORS = ("validator-0", "validator-1")


def make_events(seed: int, emitter: int) -> list[SettleEvent]:
    """The emitter's settlements: the same list every time for the same seed and index."""
    rng = random.Random(seed * 1_000 + emitter)
    events = []
    for index in range(EVENTS_PER_EMITTER):
        validators = tuple(rng.sample(VALIDATORS, rng.randint(0, len(VALIDATORS))))
        events.append(
            SettleEvent(
                event_id=f"em{emitter}-{index}",
                creator=rng.choice(CREATORS),
                validators=validators,
                amount_units=rng.randint(1, 500),
            )
        )
    return events


def main(argv: list[str]) -> int:
    broker_url, secret, server_key, spool, index, seed = argv
    events = make_events(int(seed), int(index))
    settings = TransportSettings(
        broker_url=broker_url,
        curve_secret_key_file=Path(secret),
        curve_server_key_file=Path(server_key),
        attempt_timeout_ms=2_000,
        request_timeout_ms=5_000,
    )
    outbox = Outbox(spool)
    crash_after = int(os.environ.get(CRASH_AFTER_SENDS, "0"))
    sends = 0
    with Transport(settings) as transport:
        client = LedgerClient(transport)

        def send(batch: Sequence[LedgerWireEvent]) -> list[EventResult]:
            nonlocal sends
            results = client.send_events(batch)
            sends += 1
            if sends == crash_after:
                os.kill(os.getpid(), signal.SIGKILL)
            return results

        for start in range(0, len(events), CHUNK):
            if outbox.add(*events[start : start + CHUNK]):  # new work: deliver as we go
                outbox.drain(send, batch_max=256, deadline_s=0.5)
                time.sleep(CHUNK_PAUSE_S)
        left = outbox.drain(send, batch_max=256, deadline_s=60.0)
    outbox.close()
    return 0 if left == 0 else 3


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
