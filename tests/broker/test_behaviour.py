"""The broker behaviour suite over each transport: inproc and TCP loopback."""

from __future__ import annotations

from latentmas_mesh import mdp
from tests.broker.behaviour import BrokerBehaviour, ClientBehaviour, raw_peer
from tests.broker.conftest import InProcessMesh
from workers.echo import SERVICE as ECHO


class TestInproc(BrokerBehaviour):
    endpoint = "inproc://broker"


class TestTcp(BrokerBehaviour):
    endpoint = "tcp://127.0.0.1:*"


class TestClientsInproc(ClientBehaviour):
    endpoint = "inproc://broker"


class TestClientsTcp(ClientBehaviour):
    endpoint = "tcp://127.0.0.1:*"


class TestTcpOnly:
    """Limits that ZeroMQ enforces in its TCP engine (inproc has no wire to check)."""

    def test_frame_over_the_size_limit_drops_its_sender_only(self):
        """A rogue client's oversized frame gets it disconnected; others are still served."""
        mesh = InProcessMesh("tcp://127.0.0.1:*", frame_bytes_max=1 << 20)
        try:
            mesh.echo()
            rogue = raw_peer(mesh, mdp.client_request(ECHO.encode(), [b"\x00" * (2 << 20)]))

            with mesh.transport() as transport:
                reply = transport.request(ECHO, [b"small"])

            assert [b"small"] == [frame.bytes for frame in reply]
            assert 0 == rogue.poll(300)  # the oversized request was never delivered
            rogue.close()
        finally:
            mesh.close()
