"""Several ledger nodes on one PostgreSQL database never spend the same unit twice."""

from __future__ import annotations

import threading

import pytest

from latentmas_mesh.ledger import AccountKind, Deposit, EventStatus, Settle, agent_account
from latentmas_mesh.ledger.postgres import PostgresLedgerStore

pytestmark = pytest.mark.postgres


def test_two_nodes_racing_on_one_payer_never_overspend(postgres_dsn):
    """Two stores (two nodes) settle 300 payments each from one payer who can afford 250 in all:
    exactly 250 succeed, the balance ends at zero, and the ledger audits clean."""
    nodes = [PostgresLedgerStore(postgres_dsn, schema="race") for _ in range(2)]
    try:
        nodes[0].open_account(agent_account("bob"), AccountKind.AGENT, 0)
        nodes[0].apply(Deposit("fund", "alice", 250), now_ms=1)
        outcomes: list[list[EventStatus]] = [[], []]

        def pay(node: int) -> None:
            for index in range(0, 300, 10):
                batch = [Settle(f"n{node}-{index + k}", "alice", "bob", (), 1) for k in range(10)]
                results = nodes[node].apply_batch(batch, now_ms=2)
                outcomes[node].extend(r.status for r in results)  # type: ignore[union-attr]

        threads = [threading.Thread(target=pay, args=(n,)) for n in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        applied = sum(s == EventStatus.APPLIED for node in outcomes for s in node)
        assert (250, 0) == (applied, nodes[1].balance_units(agent_account("alice")))
        assert nodes[1].audit().ok, nodes[1].audit().problems
    finally:
        nodes[0]._connection.execute("DROP SCHEMA race CASCADE")
        for node in nodes:
            node.close()
