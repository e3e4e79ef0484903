"""The ledger worker through a real broker with CURVE: identity from the key, not the body."""

from __future__ import annotations

import time

import pytest

from latentmas_mesh import codec
from latentmas_mesh.errors import Unauthorized
from latentmas_mesh.ledger import ReservationStatus, agent_account
from latentmas_mesh.ledger.sqlite import SqliteLedgerStore
from latentmas_mesh.protocol.ledger import (
    LEDGER_SERVICE,
    BalanceReply,
    BalanceRequest,
    ReserveEvent,
    SettleEvent,
)
from latentmas_mesh.settlement.ledger_client import LedgerClient
from latentmas_mesh.testing.ledger_mesh import LedgerNet
from latentmas_mesh.transport import (
    ReplyVerifier,
    UnverifiedReply,
    create_key_pair,
    is_sealed,
)
from workers.ledger import wall_clock_ms

SWEEP_INTERVAL_MS = 50


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    ledger_net = LedgerNet(
        tmp_path_factory.mktemp("ledger-net"),
        clients=("alice", "bob"),
        extra_env={"LATENTMAS_LEDGER_SWEEP_INTERVAL_MS": str(SWEEP_INTERVAL_MS)},
    )
    ledger_net.start()
    yield ledger_net
    ledger_net.stop()


class TestLedgerWorker:
    def test_settlement_through_the_broker_charges_the_authenticated_key(self, net):
        """Alice's key pays; Bob's account receives 80%; statements are per owner."""
        alice, bob = net.identity("alice"), net.identity("bob")
        with (
            net.transport("operator") as t_op,
            net.transport("alice") as t_alice,
            net.transport("bob") as t_bob,
        ):
            operator = LedgerClient(t_op)
            operator.deposit(alice, 1_000)
            operator.deposit(bob, 1)
            LedgerClient(t_alice).apply(SettleEvent(event_id="w-s1", creator=bob, amount_units=100))

            balances = (
                LedgerClient(t_alice).balance().balance_units,
                LedgerClient(t_bob).balance().balance_units,
            )
            with pytest.raises(Unauthorized):
                LedgerClient(t_bob).statement(f"agent:{alice}")

        assert (900, 81) == balances

    def test_every_answer_is_sealed_to_the_client_by_the_ledger_key(self, net):
        """A raw balance request comes back with a trailing seal that opens under the ledger
        worker's key for this client and request id, leaving exactly the codec's frames."""
        request = codec.encode(BalanceRequest(), request_id="raw-balance-1")
        verifier = ReplyVerifier(
            net.root / "keys" / "clients" / "alice.key_secret", [net.worker_identity("ledger")]
        )
        with net.transport("alice") as t_alice:
            frames = t_alice.request(LEDGER_SERVICE, request)

        opened = verifier.open("raw-balance-1", frames)

        assert (True, len(frames) - 1) == (is_sealed(frames), len(opened))
        assert isinstance(codec.decode(opened).message, BalanceReply)

    def test_a_client_trusting_other_ledger_keys_refuses_the_answers(self, net, tmp_path):
        """Alice trusting only another ledger's key takes nothing from this one, not even her
        balance (UnverifiedReply, untrusted_key); trusting the net's ledger keys she does."""
        create_key_pair(tmp_path / "other-ledgers", "elsewhere")
        with (
            net.transport("alice", ledger_keys_dir=tmp_path / "other-ledgers") as t_wrong,
            net.transport("alice") as t_right,
        ):
            with pytest.raises(UnverifiedReply) as refused:
                LedgerClient(t_wrong).balance()
            balance = LedgerClient(t_right).balance()

        assert "untrusted_key" == refused.value.details["reason"]
        assert f"agent:{net.identity('alice')}" == balance.account

    def test_curve_without_trusted_ledger_keys_fails_before_any_call(self, net):
        """Fail closed: a CURVE client with no LATENTMAS_LEDGER_KEYS_DIR cannot make a ledger
        client at all, rather than take answers it cannot check."""
        with net.transport("alice", ledger_keys_dir=None) as t_alice:
            with pytest.raises(Unauthorized, match="LATENTMAS_LEDGER_KEYS_DIR"):
                LedgerClient(t_alice)

            assert 0 == t_alice.attempts_total

    def test_cli_deposits_and_prints_balance_and_statement(self, net, monkeypatch):
        """`latentmas ledger deposit|balance|statement` work through the broker, as keys allow."""
        bob = net.identity("bob")
        funding = ("deposit", bob, "250", "--event-id", "cli-1")
        deposit = run_cli(net, monkeypatch, "operator", *funding)
        again = run_cli(net, monkeypatch, "operator", *funding)
        refused = run_cli(net, monkeypatch, "bob", "deposit", bob, "250")
        balance = run_cli(net, monkeypatch, "bob", "balance")
        statement = run_cli(net, monkeypatch, "bob", "statement", "--limit", "1")

        assert (0, 0, 1, 0, 0) == (
            deposit.exit_code,
            again.exit_code,
            refused.exit_code,
            balance.exit_code,
            statement.exit_code,
        )
        assert "already applied" in again.output
        assert "UNAUTHORIZED" in refused.output
        assert f"agent:{bob}" in balance.output
        assert "more: --after" in statement.output

    def test_a_reservation_left_alone_is_released_by_the_worker(self, net):
        """After its deadline, with no request reaching the ledger, the worker's sweeper gives
        Alice's held units back (read from the ledger file, not asked of the worker)."""
        alice, bob = net.identity("alice"), net.identity("bob")
        with net.transport("operator") as t_op, net.transport("alice") as t_alice:
            LedgerClient(t_op).deposit(alice, 500, event_id="sweep-fund-alice")
            LedgerClient(t_op).deposit(bob, 1, event_id="sweep-fund-bob")
            before = LedgerClient(t_alice).balance().balance_units
            LedgerClient(t_alice).apply(
                ReserveEvent(
                    event_id="sweep-r1",
                    creator=bob,
                    amount_units=100,
                    expires_at_ms=wall_clock_ms() + 300,
                )
            )
            held = LedgerClient(t_alice).balance().balance_units
        store = SqliteLedgerStore(net.root / "ledger.db")
        try:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                reservation = store.reservation("sweep-r1")
                if reservation is not None and reservation.status != ReservationStatus.PENDING:
                    break
                time.sleep(SWEEP_INTERVAL_MS / 1000)
            after = (
                store.reservation("sweep-r1").status,
                store.balance_units(agent_account(alice)),
            )
        finally:
            store.close()

        assert (before - 100, (ReservationStatus.EXPIRED, before)) == (held, after)


def run_cli(net, monkeypatch, client, *args):
    """Invoke `latentmas ledger ...` as `client` (its CURVE key from the environment)."""
    from typer.testing import CliRunner

    from latentmas_mesh.cli import _register_subcommands, app

    _register_subcommands()
    keys = net.root / "keys"
    secret = keys / "clients" / f"{client}.key_secret"
    monkeypatch.setenv("LATENTMAS_CURVE_SECRET_KEY_FILE", str(secret))
    monkeypatch.setenv("LATENTMAS_CURVE_SERVER_KEY_FILE", str(keys / "broker" / "broker.key"))
    monkeypatch.setenv("LATENTMAS_LEDGER_KEYS_DIR", str(net.ledger_keys_dir))
    return CliRunner().invoke(app, ["ledger", *args, "--broker-url", net.mesh.broker_url])
