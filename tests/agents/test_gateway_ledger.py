"""The gateway's key acting for agents at a real ledger worker (broker and ledger processes,
CURVE): each agent is charged and shown as itself, and never reaches another agent's account."""

from __future__ import annotations

import json
import time

import pytest

from latentmas_mesh import codec
from latentmas_mesh.errors import Unauthorized
from latentmas_mesh.protocol import ErrorBody
from latentmas_mesh.protocol.ledger import (
    LEDGER_SERVICE,
    BalanceRequest,
    DepositEvent,
    LedgerEventsRequest,
    ReserveEvent,
    StatementRequest,
)
from latentmas_mesh.settlement.ledger_client import LedgerClient, raise_for_result
from latentmas_mesh.testing.ledger_mesh import LedgerNet
from latentmas_mesh.transport import ReplyVerifier, UnverifiedReply, new_request_id, trusted_keys

FUNDS = {"alice": 300, "bob": 100}


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    """Broker + one ledger worker whose LATENTMAS_GATEWAY_KEYS lists the `gateway` client's
    key; the operator funded alice and bob."""
    ledger_net = LedgerNet(tmp_path_factory.mktemp("gateway-ledger"), clients=(*FUNDS, "gateway"))
    gateway = ledger_net.identity("gateway")
    ledger_net.extra_env = {"LATENTMAS_GATEWAY_KEYS": json.dumps([gateway])}
    ledger_net.start()
    try:
        with ledger_net.transport("operator") as transport:
            operator = LedgerClient(transport)
            for name, units in FUNDS.items():
                operator.deposit(ledger_net.identity(name), units)
        yield ledger_net
    finally:
        ledger_net.stop()


def ledger_call(net, sender, message, *, on_behalf_of):
    """`message` to the ledger from `sender`'s key for `on_behalf_of`'s agent; the answer's
    seal is checked (sealed to the sender, who is the CURVE peer) before it is decoded."""
    secret = net.root / "keys" / "clients" / f"{sender}.key_secret"
    verifier = ReplyVerifier(secret, trusted_keys(net.ledger_keys_dir))
    request_id = new_request_id()
    frames = codec.encode(message, request_id=request_id, on_behalf_of=net.identity(on_behalf_of))
    with net.transport(sender) as transport:
        body = transport.request(LEDGER_SERVICE, frames)
    reply = codec.decode(verifier.open(request_id, body)).message
    if isinstance(reply, ErrorBody):
        raise reply.to_exception()
    return reply


def balance_of(net, name):
    with net.transport(name) as transport:
        return LedgerClient(transport).balance().balance_units


class TestGatewayActingForAgents:
    def test_each_agent_reads_its_own_balance_through_the_gateway(self, net):
        answers = {
            name: ledger_call(net, "gateway", BalanceRequest(), on_behalf_of=name) for name in FUNDS
        }

        assert {n: (f"agent:{net.identity(n)}", FUNDS[n]) for n in FUNDS} == {
            n: (a.account, a.balance_units) for n, a in answers.items()
        }

    @pytest.mark.parametrize(
        "request_for_bob",
        [
            StatementRequest(account="agent:{bob}"),
            BalanceRequest(account="agent:{bob}"),
        ],
        ids=["statement", "balance"],
    )
    def test_alice_through_the_gateway_cannot_read_bobs_account(self, net, request_for_bob):
        """The ledger's refusal, sealed by the ledger (not an UnverifiedReply): alice's
        identity, vouched for by the gateway, is still only alice's."""
        account = request_for_bob.account.format(bob=net.identity("bob"))
        message = request_for_bob.model_copy(update={"account": account})

        with pytest.raises(Unauthorized) as refused:
            ledger_call(net, "gateway", message, on_behalf_of="alice")

        assert not isinstance(refused.value, UnverifiedReply)

    def test_what_alice_spends_through_the_gateway_comes_from_alice_only(self, net):
        """A reservation made for alice holds alice's funds; bob's balance does not move, and
        a deposit to bob in alice's name is refused (she is no operator)."""
        reserve = ReserveEvent(
            event_id="alice-via-gateway-1", creator=net.identity("bob"), validators=(),
            amount_units=50, expires_at_ms=time.time_ns() // 1_000_000 + 60_000,
        )  # fmt: skip
        deposit = DepositEvent(
            event_id="alice-for-bob-1", agent_id=net.identity("bob"), amount_units=1
        )
        before = {name: balance_of(net, name) for name in FUNDS}

        reserved = ledger_call(
            net, "gateway", LedgerEventsRequest(events=(reserve,)), on_behalf_of="alice"
        )
        deposited = ledger_call(
            net, "gateway", LedgerEventsRequest(events=(deposit,)), on_behalf_of="alice"
        )
        after = {name: balance_of(net, name) for name in FUNDS}

        assert 50 == raise_for_result(reserved.results[0]).amount_units
        with pytest.raises(Unauthorized):
            raise_for_result(deposited.results[0])
        assert {"alice": before["alice"] - 50, "bob": before["bob"]} == after

    def test_an_agents_own_key_may_not_act_for_another(self, net):
        """Alice's key naming bob is refused UNAUTHORIZED by the worker, sealed to alice."""
        with pytest.raises(Unauthorized) as refused:
            ledger_call(net, "alice", BalanceRequest(), on_behalf_of="bob")

        assert "gateway" in refused.value.message
        assert not isinstance(refused.value, UnverifiedReply)
