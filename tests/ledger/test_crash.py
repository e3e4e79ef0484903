"""Crash test: >= 10,000 settlements while the ledger worker and the emitters are SIGKILLed."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from latentmas_mesh.ledger import EventStatus, agent_account, open_store, validator_account
from latentmas_mesh.market import split_revenue
from latentmas_mesh.protocol.ledger import LEDGER_SERVICE, SettleEvent
from latentmas_mesh.settlement.ledger_client import LedgerClient
from latentmas_mesh.settlement.outbox import Outbox
from latentmas_mesh.testing.ledger_mesh import LedgerNet
from tests.ledger.emitter_process import CRASH_AFTER_SENDS, CREATORS, VALIDATORS, make_events

EMITTERS = 4
LEDGER_CRASHES_MIN = 6
EMITTER_CRASHES_MIN = 4
DEADLINE_S = 80.0
SEED = 20260125
REPO = Path(__file__).resolve().parents[2]


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


def wait_for_new_worker(mesh, timeout_s: float = 30.0) -> None:
    """Wait until the broker has dropped the killed worker (liveness) and lists the new one."""
    expiry_s = mesh.heartbeat_ms * mesh.liveness / 1000 + 0.2
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        time.sleep(0.1)
        if time.monotonic() - started < expiry_s:
            continue
        if mesh.registered_workers().get(LEDGER_SERVICE, 0) >= 1:
            return
    raise AssertionError("the restarted ledger worker never registered")


class Emitters:
    """The emitter processes: start, SIGKILL, restart; each keeps its spool on disk."""

    def __init__(self, net: LedgerNet, spools: Path, rng: random.Random) -> None:
        self.net, self.spools, self.rng = net, spools, rng
        self.processes: dict[int, subprocess.Popen[bytes]] = {}

    def start(self, index: int) -> None:
        """Start (or restart) emitter `index`; a first start dies by itself after a few sends."""
        crash_after = 0 if index in self.processes else self.rng.randint(2, 12)
        keys = self.net.root / "keys"
        assert self.net.mesh is not None
        args = [
            self.net.mesh.broker_url,
            str(keys / "clients" / f"emitter-{index}.key_secret"),
            str(keys / "broker" / "broker.key"),
            str(self.spools / f"emitter-{index}.spool"),
            str(index),
            str(SEED),
        ]
        log = (self.spools / f"emitter-{index}.log").open("ab")
        self.processes[index] = subprocess.Popen(
            [sys.executable, "-m", "tests.ledger.emitter_process", *args],
            cwd=REPO,
            stdout=log,
            stderr=log,
            env={
                **os.environ,
                "LATENTMAS_LOG_LEVEL": "warning",
                "LATENTMAS_LEDGER_KEYS_DIR": str(self.net.ledger_keys_dir),
                CRASH_AFTER_SENDS: str(crash_after),
            },
        )

    def kill(self, index: int) -> None:
        self.processes[index].send_signal(signal.SIGKILL)
        self.processes[index].wait()

    def running(self) -> list[int]:
        return [i for i, p in self.processes.items() if p.poll() is None]

    def self_killed(self) -> list[int]:
        """Emitters that SIGKILLed themselves (ours are restarted at once, so never seen here)."""
        return [i for i, p in self.processes.items() if p.poll() == -signal.SIGKILL]

    def failed(self) -> dict[int, int]:
        ended = {i: p.poll() for i, p in self.processes.items()}
        return {i: code for i, code in ended.items() if code not in (None, 0, -signal.SIGKILL)}

    def stop_all(self) -> None:
        for index in self.running():
            self.kill(index)


def crash_loop(net: LedgerNet, emitters: Emitters, rng: random.Random) -> tuple[int, int]:
    """SIGKILL the ledger worker or an emitter at random moments, restarting each, until every
    emitter has delivered everything and both crash minimums are reached."""
    mesh = net.mesh
    assert mesh is not None
    ledger_crashes = emitter_crashes = 0
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        if emitters.failed():
            raise AssertionError(f"emitters failed: {emitters.failed()}")
        for index in emitters.self_killed():
            emitter_crashes += 1
            emitters.start(index)
        running = emitters.running()
        if not running and ledger_crashes >= LEDGER_CRASHES_MIN:
            return ledger_crashes, emitter_crashes
        time.sleep(rng.uniform(0.3, 1.0))
        if running and (emitter_crashes < EMITTER_CRASHES_MIN + EMITTERS or rng.random() < 0.3):
            victim = rng.choice(running)
            emitters.kill(victim)  # mid-spool, mid-send or mid-acknowledge
            emitter_crashes += 1
            emitters.start(victim)
            continue
        for process in [p for p in mesh.worker_processes if p.alive()]:
            mesh.kill(process)  # SIGKILL, wherever it is: mid-batch, mid-commit, idle
            ledger_crashes += 1
        mesh.start_worker("ledger")
        wait_for_new_worker(mesh)
    raise AssertionError(f"not done within {DEADLINE_S} s: {len(emitters.running())} emitters left")


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def ledger_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Where the crashing ledger keeps its books: a SQLite file, or a fresh PostgreSQL schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'ledger.db'}"
    dsn = request.getfixturevalue("postgres_dsn")
    return f"{dsn}#crash_{os.getpid()}"


@pytest.mark.slow
def test_no_settlement_is_lost_or_doubled_when_ledger_and_emitters_are_killed(tmp_path, ledger_url):
    """10,240 settlements from 4 emitter processes through the broker; the ledger worker and the
    emitters are SIGKILLed at random moments and restarted; the emitters re-deliver from their
    spools; afterwards every balance equals the model's to the unit. Once per backend."""
    rng = random.Random(SEED)
    names = tuple(f"emitter-{i}" for i in range(EMITTERS))
    net = LedgerNet(tmp_path / "net", clients=names, ledger_url=ledger_url)
    net.start()
    emitters = Emitters(net, tmp_path, rng)
    payers: dict[str, tuple[int, list[SettleEvent]]] = {}
    try:
        with net.transport("operator") as transport:
            operator = LedgerClient(transport)
            for owner in CREATORS:
                operator.open_account("agent", owner)
            for owner in VALIDATORS:
                operator.open_account("validator", owner)
            for index, name in enumerate(names):
                events = make_events(SEED, index)
                budget = sum(e.amount_units for e in events) * 95 // 100  # the tail runs dry
                operator.deposit(net.identity(name), budget, event_id=f"fund-{index}")
                payers[net.identity(name)] = (budget, events)
        for index in range(EMITTERS):
            emitters.start(index)
        ledger_crashes, emitter_crashes = crash_loop(net, emitters, rng)
    finally:
        emitters.stop_all()
        net.stop()

    store = open_store(ledger_url)
    expected_balances, expected_statuses = expected_ledger(payers)
    events_total = sum(len(events) for _, events in payers.values())
    spools = [Outbox(tmp_path / f"{name}.spool") for name in names]
    answered = sum(sum(spool.final_counts().values()) for spool in spools)
    recorded = dict(
        store._connection.execute(
            "SELECT status, COUNT(*) FROM events WHERE kind = 'settle' GROUP BY status"
        ).fetchall()
    )
    print(
        f"\n{ledger_url.split(':')[0]}: events {events_total}, ledger crashes {ledger_crashes}, "
        f"emitter crashes {emitter_crashes}, "
        f"duplicates rejected {sum(spool.replayed_count() for spool in spools)}, "
        f"applied {recorded.get(0, 0)}, insufficient funds {recorded.get(1, 0)}, "
        f"lost {events_total - answered}"
    )

    assert events_total == answered
    assert {int(k): v for k, v in expected_statuses.items()} == recorded
    assert expected_balances == store.balances()
    assert store.audit().ok, store.audit().problems
    assert ledger_crashes >= LEDGER_CRASHES_MIN
    assert emitter_crashes >= EMITTER_CRASHES_MIN + EMITTERS  # ours, plus each one's own
    assert sum(spool.replayed_count() for spool in spools) > 0
