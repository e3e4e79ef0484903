"""Ledger benchmark: durable settlements/s through the worker vs raw journal inserts, per engine."""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import psycopg

from latentmas_mesh.ledger import PLATFORM_ACCOUNT, agent_account, validator_account
from latentmas_mesh.ledger.client import LedgerClient
from latentmas_mesh.ledger.localnet import LedgerNet
from latentmas_mesh.ledger.pgcluster import TemporaryPostgres
from latentmas_mesh.ledger.postgres import PostgresLedgerStore
from latentmas_mesh.ledger.sqlite import SqliteLedgerStore, connect
from latentmas_mesh.market import split_revenue
from latentmas_mesh.protocol.ledger import SettleEvent

CREATORS = ("creator-0", "creator-1", "creator-2")
VALIDATORS = ("validator-0", "validator-1")
TARGET_SQLITE_PER_S = 5_000
TARGET_VS_RAW = 0.3


def make_events(count: int, prefix: str) -> list[SettleEvent]:
    """Settlements with two validators each: 5 journal lines + 1 event row per settlement."""
    return [
        SettleEvent(
            event_id=f"{prefix}-{i}",
            creator=CREATORS[i % len(CREATORS)],
            validators=VALIDATORS,
            amount_units=100 + i % 900,
        )
        for i in range(count)
    ]


def through_worker(root: Path, ledger_url: str, count: int, batch: int, clients: int) -> float:
    """Settlements/s through broker + ledger worker (CURVE on), `clients` senders in parallel."""
    names = tuple(f"payer-{i}" for i in range(clients))
    net = LedgerNet(root, clients=names, ledger_url=ledger_url)
    net.start()
    try:
        with net.transport("operator") as transport:
            operator = LedgerClient(transport)
            for owner in CREATORS:
                operator.open_account("agent", owner)
            for owner in VALIDATORS:
                operator.open_account("validator", owner)
            for name in names:
                operator.deposit(net.identity(name), 10**12)
        share = count // clients
        failures: list[str] = []
        prepared = {name: make_events(share, name) for name in names}  # built before the clock

        def send(name: str) -> None:
            events = prepared[name]
            with net.transport(name, request_timeout_ms=120_000) as transport:
                client = LedgerClient(transport)
                for start in range(0, share, batch):
                    results = client.send_events(events[start : start + batch])
                    failures.extend(r.event_id for r in results if r.status != 0)

        threads = [threading.Thread(target=send, args=(name,)) for name in names]
        started = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
        if failures:
            raise RuntimeError(f"{len(failures)} settlements not applied, e.g. {failures[:3]}")
        return share * clients / elapsed
    finally:
        net.stop()


def journal_rows(count: int, prefix: str) -> tuple[list[tuple], list[tuple]]:
    """The event rows and journal lines the ledger writes for `count` settlements."""
    events, lines = [], []
    payer = agent_account("payer")
    for event in make_events(count, prefix):
        amount = event.amount_units
        digest = hashlib.sha256(event.event_id.encode()).hexdigest()
        events.append((event.event_id, "settle", digest, 0, amount, 1))
        split = split_revenue(amount, event.validators)
        lines.append((event.event_id, payer, -amount, 0, 1))
        lines.append((event.event_id, agent_account(event.creator), split.creator_units, 0, 1))
        lines.append((event.event_id, PLATFORM_ACCOUNT, split.platform_units, 0, 1))
        lines.extend(
            (event.event_id, validator_account(v), units, 0, 1) for v, units in split.validators
        )
    return events, lines


ACCOUNTS = [agent_account("payer"), *map(agent_account, CREATORS)]
EVENT_INSERT = (
    "INSERT INTO events (event_id, kind, content_sha256, status, amount_units, applied_at_ms)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)
LINE_INSERT = (
    "INSERT INTO journal (event_id, account_id, amount_units, balance_after_units, at_ms)"
    " VALUES (?, ?, ?, ?, ?)"
)


def raw_sqlite(path: Path, count: int, batch: int) -> float:
    """The ceiling: the same rows into the same tables, same pragmas and batch, no logic."""
    SqliteLedgerStore(path).close()
    db = connect(path)
    db.executemany(
        "INSERT INTO accounts VALUES (?, 'agent', 0, 0)", [(a,) for a in ACCOUNTS]
    )
    db.executemany(
        "INSERT INTO accounts VALUES (?, 'validator', 0, 0)",
        [(validator_account(v),) for v in VALIDATORS],
    )
    events, lines = journal_rows(count, "raw")
    per_event = len(lines) // len(events)
    started = time.perf_counter()
    for start in range(0, count, batch):
        db.execute("BEGIN IMMEDIATE")
        db.executemany(EVENT_INSERT, events[start : start + batch])
        db.executemany(LINE_INSERT, lines[start * per_event : (start + batch) * per_event])
        db.execute("COMMIT")
    elapsed = time.perf_counter() - started
    db.close()
    return count / elapsed


def raw_postgres(dsn: str, count: int, batch: int) -> float:
    """The PostgreSQL ceiling: the same rows, one transaction per batch, pipelined executemany."""
    PostgresLedgerStore(dsn, schema="raw").close()
    events, lines = journal_rows(count, "raw")
    per_event = len(lines) // len(events)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET search_path TO raw")
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO accounts VALUES (%s, 'agent', 0, 0)", [(a,) for a in ACCOUNTS]
            )
            cur.executemany(
                "INSERT INTO accounts VALUES (%s, 'validator', 0, 0)",
                [(validator_account(v),) for v in VALIDATORS],
            )
        started = time.perf_counter()
        for start in range(0, count, batch):
            with conn.transaction(), conn.cursor() as cur:
                cur.executemany(EVENT_INSERT.replace("?", "%s"), events[start : start + batch])
                cur.executemany(
                    LINE_INSERT.replace("?", "%s"),
                    lines[start * per_event : (start + batch) * per_event],
                )
        elapsed = time.perf_counter() - started
    return count / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--settlements", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--clients", type=int, default=2)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="latentmas-bench-ledger-"))
    figures: dict[str, object] = {
        "settlements": args.settlements,
        "batch": args.batch,
        "clients": args.clients,
        "journal_lines_per_settlement": 5,
    }
    sqlite_raw = raw_sqlite(root / "raw.db", args.settlements, args.batch)
    sqlite_worker = through_worker(
        root / "sqlite", f"sqlite://{root / 'ledger.db'}", args.settlements, args.batch,
        args.clients,
    )
    with TemporaryPostgres() as dsn:
        postgres_raw = raw_postgres(dsn, args.settlements, args.batch)
        postgres_worker = through_worker(
            root / "pg", f"{dsn}#bench", args.settlements, args.batch, args.clients
        )
    figures |= {
        "sqlite_settlements_per_s": round(sqlite_worker),
        "sqlite_raw_per_s": round(sqlite_raw),
        "sqlite_vs_raw": round(sqlite_worker / sqlite_raw, 3),
        "postgres_settlements_per_s": round(postgres_worker),
        "postgres_raw_per_s": round(postgres_raw),
        "postgres_vs_raw": round(postgres_worker / postgres_raw, 3),
    }
    figures["sqlite_target_met"] = (
        sqlite_worker >= TARGET_SQLITE_PER_S and sqlite_worker / sqlite_raw >= TARGET_VS_RAW
    )
    print(f"{args.settlements} settlements, batches of {args.batch}, {args.clients} clients, "
          "5 journal lines each; durable (SQLite WAL+FULL, PostgreSQL fsync on)")
    print(f"{'engine':<10} {'worker /s':>12} {'raw /s':>12} {'worker/raw':>11}")
    for engine, worker, raw in (
        ("sqlite", sqlite_worker, sqlite_raw),
        ("postgres", postgres_worker, postgres_raw),
    ):
        print(f"{engine:<10} {worker:>12,.0f} {raw:>12,.0f} {worker / raw:>11.3f}")
    print(f"targets: sqlite >= {TARGET_SQLITE_PER_S}/s and >= {TARGET_VS_RAW}x raw")
    print(json.dumps(figures))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
