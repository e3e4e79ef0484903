"""Crash test: >= 10,000 settlements while the ledger worker is SIGKILLed and restarted."""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field

import pytest

from latentmas_mesh.ledger import EventStatus, agent_account, validator_account
from latentmas_mesh.ledger.client import LedgerClient
from latentmas_mesh.ledger.localnet import LedgerNet
from latentmas_mesh.ledger.outbox import Outbox
from latentmas_mesh.ledger.sqlite import SqliteLedgerStore
from latentmas_mesh.market import split_revenue
from latentmas_mesh.protocol.ledger import LEDGER_SERVICE as SERVICE
from latentmas_mesh.protocol.ledger import SettleEvent

EMITTERS = 4
EVENTS_PER_EMITTER = 2_560
CHUNK = 64  # events an emitter spools at a time
CHUNK_PAUSE_S = 0.25  # spreads the run over ~10 s, so kills land throughout it
CRASHES_MIN = 6
CREATORS = ("creator-0", "creator-1", "creator-2")
VALIDATORS = ("validator-0", "validator-1")
SEED = 20260125


@dataclass
class EmitterStats:
    sent: int = 0
    attempts: int = 0
    replayed: int = 0
    restarts: int = 0
    errors: list[str] = field(default_factory=list)


def make_events(rng: random.Random, emitter: int) -> list[SettleEvent]:
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


def expected_ledger(payers: dict[str, tuple[int, list[SettleEvent]]]) -> tuple[dict, dict]:
    """The model: balances after every emitter's events in its own order, and status counts."""
    balances: dict[str, int] = {"platform": 0, "escrow": 0, "funding": 0}
    balances |= {agent_account(c): 0 for c in CREATORS}
    balances |= {validator_account(v): 0 for v in VALIDATORS}
    statuses = {EventStatus.APPLIED: 0, EventStatus.INSUFFICIENT_FUNDS: 0}
    for payer, (budget, events) in payers.items():
        balances["funding"] -= budget
        balance = budget
        for event in events:
            if event.amount_units > balance:
                statuses[EventStatus.INSUFFICIENT_FUNDS] += 1
                continue
            statuses[EventStatus.APPLIED] += 1
            balance -= event.amount_units
            split = split_revenue(event.amount_units, event.validators)
            balances[agent_account(event.creator)] += split.creator_units
            balances["platform"] += split.platform_units
            for validator, units in split.validators:
                balances[validator_account(validator)] += units
        balances[agent_account(payer)] = balance
    return balances, statuses


@dataclass
class Emitter:
    net: LedgerNet
    name: str
    spool: object
    events: list[SettleEvent]
    done_spooling: threading.Event = field(default_factory=threading.Event)
    stats: EmitterStats = field(default_factory=EmitterStats)


def run_emitter(emitter: Emitter) -> None:
    """Spool chunk by chunk and deliver; 'crash' (reopen the spool) every ten chunks."""
    net, name, spool, events = emitter.net, emitter.name, emitter.spool, emitter.events
    done_spooling, stats = emitter.done_spooling, emitter.stats
    outbox = Outbox(spool)
    with net.transport(name, attempt_timeout_ms=2_000, request_timeout_ms=5_000) as transport:
        client = LedgerClient(transport)

        def send(batch):
            stats.sent += len(batch)
            results = client.send_events(batch)
            stats.replayed += sum(1 for r in results if r.replayed)
            return results

        try:
            for start in range(0, len(events), CHUNK):
                outbox.add(*events[start : start + CHUNK])
                outbox.drain(send, batch_max=256, deadline_s=0.5)
                if (start // CHUNK) % 10 == 9:
                    outbox.close()  # the emitter "dies"; its spool is all it keeps
                    outbox = Outbox(spool)
                    stats.restarts += 1
                time.sleep(CHUNK_PAUSE_S)
            done_spooling.set()
            left = outbox.drain(send, batch_max=256, deadline_s=60.0)
            if left:
                stats.errors.append(f"{name}: {left} events still pending")
        except Exception as error:  # reported by the test, not swallowed
            stats.errors.append(f"{name}: {error!r}")
            done_spooling.set()
        finally:
            stats.attempts = transport.attempts_total
            outbox.close()


def wait_for_new_worker(mesh, timeout_s: float = 30.0) -> None:
    """Wait until the broker has dropped the killed worker (liveness) and lists the new one."""
    expiry_s = mesh.heartbeat_ms * mesh.liveness / 1000 + 0.2
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        time.sleep(0.1)
        if time.monotonic() - started < expiry_s:
            continue
        if mesh.registered_workers().get(SERVICE, 0) >= 1:
            return
    raise AssertionError("the restarted ledger worker never registered")


@pytest.mark.slow
def test_no_settlement_is_lost_or_doubled_when_the_ledger_is_killed(tmp_path):
    """10,240 settlements from 4 emitters through the broker; the ledger worker is SIGKILLed at
    random moments and restarted; afterwards every balance equals the model's to the unit."""
    rng = random.Random(SEED)
    emitters = [f"emitter-{i}" for i in range(EMITTERS)]
    net = LedgerNet(tmp_path / "net", clients=tuple(emitters))
    mesh = net.start()
    payers: dict[str, tuple[int, list[SettleEvent]]] = {}
    try:
        with net.transport("operator") as transport:
            operator = LedgerClient(transport)
            for owner in CREATORS:
                operator.open_account("agent", owner)
            for owner in VALIDATORS:
                operator.open_account("validator", owner)
            for index, name in enumerate(emitters):
                events = make_events(rng, index)
                budget = sum(e.amount_units for e in events) * 95 // 100  # the tail runs dry
                operator.deposit(net.identity(name), budget, event_id=f"fund-{index}")
                payers[net.identity(name)] = (budget, events)
        runs = [
            Emitter(net, name, tmp_path / f"{name}.spool", payers[net.identity(name)][1])
            for name in emitters
        ]
        stats = [run.stats for run in runs]
        threads = [threading.Thread(target=run_emitter, args=(r,), daemon=True) for r in runs]
        for thread in threads:
            thread.start()
        crashes = 0
        while crashes < CRASHES_MIN or not all(r.done_spooling.is_set() for r in runs):
            time.sleep(rng.uniform(0.3, 1.2))  # let the new worker get into its stride
            for process in [p for p in mesh.worker_processes if p.alive()]:
                mesh.kill(process)  # SIGKILL, wherever it is: mid-batch, mid-commit, idle
                crashes += 1
            mesh.start_worker("ledger")
            wait_for_new_worker(mesh)
        for thread in threads:
            thread.join(timeout=90)
    finally:
        net.stop()

    store = SqliteLedgerStore(net.root / "ledger.db")
    expected_balances, expected_statuses = expected_ledger(payers)
    events_total = EMITTERS * EVENTS_PER_EMITTER
    spooled_answers = [Outbox(tmp_path / f"{n}.spool").final_counts() for n in emitters]
    answered = sum(sum(counts.values()) for counts in spooled_answers)
    recorded = dict(
        store._connection.execute(
            "SELECT status, COUNT(*) FROM events WHERE kind = 'settle' GROUP BY status"
        ).fetchall()
    )
    print(
        f"\nevents {events_total}, crashes {crashes}, "
        f"emitter restarts {sum(s.restarts for s in stats)}, "
        f"events sent by emitters {sum(s.sent for s in stats)} "
        f"in {sum(s.attempts for s in stats)} transport attempts, "
        f"duplicates rejected {sum(s.replayed for s in stats)}, "
        f"applied {recorded.get(0, 0)}, insufficient funds {recorded.get(1, 0)}, "
        f"lost {events_total - answered}"
    )

    assert [] == [error for s in stats for error in s.errors]
    assert events_total == answered
    assert {int(k): v for k, v in expected_statuses.items()} == recorded
    assert expected_balances == store.balances()
    assert store.audit().ok, store.audit().problems
    assert crashes >= CRASHES_MIN
