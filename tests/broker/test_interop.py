"""Interoperability with majortomo's client, worker and broker, and with strict RFC 18 peers."""

# majortomo's broker with our worker and client.

from __future__ import annotations

import socket
import threading

import majortomo
import pytest
import zmq
from majortomo.broker import Broker as MajortomoBroker

from latentmas_mesh import mdp
from latentmas_mesh.transport import Transport, TransportSettings
from workers.base import RawWorker
from workers.echo import SERVICE as ECHO
from workers.echo import echo
from workers.settings import WorkerSettings

from .behaviour import raw_peer, recv


def majortomo_echo_worker(endpoint, context, service=ECHO):
    """majortomo's own worker loop echoing every request, in a thread; returns a stop function."""
    worker = majortomo.Worker(
        endpoint,
        service.encode(),
        heartbeat_interval=0.1,
        heartbeat_timeout=1.0,
        zmq_context=context,
    )
    requests = majortomo.WorkerRequestsIterator(worker)

    def serve():
        for request in requests:
            requests.send_reply_final(request)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()

    def stop():
        requests.stop()
        thread.join(5)

    return stop


class TestOurBrokerWithMajortomoPeers:
    def test_majortomo_client_is_served_by_our_echo_worker(self, mesh):
        """majortomo's client dialect is detected and answered in its own framing."""
        mesh.echo()
        mesh.wait_for_service(ECHO)

        with majortomo.Client(mesh.endpoint, zmq_context=mesh.context) as client:
            client.send(ECHO.encode(), b"one", b"two")
            reply = client.recv_all_as_list(timeout=5)

        assert [b"one", b"two"] == reply

    def test_our_client_is_served_by_majortomo_worker(self, mesh):
        """majortomo's worker (leading empty frame) registers and answers through our broker."""
        stop = majortomo_echo_worker(mesh.endpoint, mesh.context)
        mesh.wait_for_service(ECHO)

        with mesh.transport() as transport:
            reply = transport.request(ECHO, [b"payload", b"\x00\x01"])

        stop()
        assert [b"payload", b"\x00\x01"] == [frame.bytes for frame in reply]

    def test_majortomo_client_and_worker_talk_through_our_broker(self, mesh):
        """Both majortomo peers at once, many requests, all answered in order."""
        stop = majortomo_echo_worker(mesh.endpoint, mesh.context)
        mesh.wait_for_service(ECHO)

        with majortomo.Client(mesh.endpoint, zmq_context=mesh.context) as client:
            replies = []
            for index in range(20):
                client.send(ECHO.encode(), b"%d" % index)
                replies.extend(client.recv_all_as_list(timeout=5))

        stop()
        assert [b"%d" % index for index in range(20)] == replies


class TestOurBrokerWithStrictRfc18Peers:
    def test_strict_peers_see_exactly_rfc18_frames(self, mesh):
        """A raw RFC 18 worker and client: READY, REQUEST, FINAL framed exactly as the RFC says."""
        worker = raw_peer(mesh, [b"MDPW02", b"\x01", b"strict.svc"])
        mesh.wait_for_service("strict.svc")
        client = raw_peer(mesh, [b"MDPC02", b"\x01", b"strict.svc", b"body-1", b"body-2"])

        request = recv(worker)
        while request[1] == b"\x05":
            request = recv(worker)
        worker.send_multipart([b"MDPW02", b"\x03", request[2], b"", b"part"])
        worker.send_multipart([b"MDPW02", b"\x04", request[2], b"", b"done"])
        partial, final = recv(client), recv(client)

        assert [b"MDPW02", b"\x02"] == request[:2]
        assert [b"", b"body-1", b"body-2"] == request[3:]
        assert [b"MDPC02", b"\x02", b"strict.svc", b"part"] == partial
        assert [b"MDPC02", b"\x03", b"strict.svc", b"done"] == final
        worker.close()
        client.close()

    def test_strict_worker_is_heartbeated_and_disconnect_is_honoured(self, mesh):
        """The broker heartbeats an idle worker and, after its DISCONNECT, sends it nothing."""
        worker = raw_peer(mesh, [b"MDPW02", b"\x01", b"strict.svc"])

        heartbeat = recv(worker)
        worker.send_multipart([b"MDPW02", b"\x06"])
        mesh.broker  # noqa: B018  (the broker forgets the worker on DISCONNECT)
        client = raw_peer(mesh, mdp.client_request(b"strict.svc", [b"x"]))

        assert [b"MDPW02", b"\x05"] == heartbeat
        assert 0 == worker.poll(500)
        worker.close()
        client.close()

    def test_mmi_service_is_answered_to_a_strict_client(self, mesh):
        """MMI mmi.service answers in RFC 18 framing with a status code body."""
        client = raw_peer(mesh, [b"MDPC02", b"\x01", b"mmi.service", b"nothing.here"])

        assert [b"MDPC02", b"\x03", b"mmi.service", b"404"] == recv(client)
        client.close()


@pytest.fixture
def majortomo_broker():
    """majortomo 0.2.0's broker on a TCP port, in a thread."""
    context = zmq.Context()
    with socket.socket() as probe:  # closes synchronously, unlike a zmq socket
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    endpoint = f"tcp://127.0.0.1:{port}"
    broker = MajortomoBroker(
        bind=endpoint, heartbeat_interval=0.1, heartbeat_timeout=1.0, zmq_context=context
    )
    thread = threading.Thread(target=broker.run, daemon=True)
    thread.start()
    yield endpoint, context
    broker.stop()
    thread.join(5)
    context.destroy(linger=0)


@pytest.fixture
def our_worker():
    """Starts our echo worker against a given endpoint; stops it after the test."""
    started = []

    def start(endpoint, context, **overrides):
        # majortomo's broker heartbeats only between receives, so allow it some jitter.
        fields = {"connect": endpoint, "dialect": "majortomo", "heartbeat_ms": 200, "liveness": 5}
        fields.update(overrides)
        worker = RawWorker(ECHO, echo, WorkerSettings(**fields), context=context)
        thread = threading.Thread(target=worker.run, daemon=True)
        thread.start()
        started.append((worker, thread))
        assert worker.ready.wait(5)
        return worker

    yield start
    for worker, thread in started:
        worker.stop()
        thread.join(5)


class TestMajortomoBrokerWithOurPeers:
    def test_our_worker_and_client_work_through_majortomo_broker(
        self, majortomo_broker, our_worker
    ):
        """Our worker (majortomo framing) and client (majortomo dialect) via majortomo's broker."""
        endpoint, context = majortomo_broker
        our_worker(endpoint, context, handler_thread=False)
        settings = TransportSettings(
            broker_url=endpoint, dialect="majortomo", request_timeout_ms=5_000
        )

        with Transport(settings, context=context) as transport:
            replies = [transport.request(ECHO, [b"m%d" % i, b"x"]) for i in range(10)]

        assert [[b"m%d" % i, b"x"] for i in range(10)] == [
            [frame.bytes for frame in reply] for reply in replies
        ]

    def test_majortomo_client_reaches_our_worker_through_majortomo_broker(
        self, majortomo_broker, our_worker
    ):
        """majortomo's own client gets answers from our threaded worker behind its broker."""
        endpoint, context = majortomo_broker
        our_worker(endpoint, context, handler_thread=True)

        with majortomo.Client(endpoint, zmq_context=context) as client:
            client.send(ECHO.encode(), b"hello")
            reply = client.recv_all_as_list(timeout=5)

        assert [b"hello"] == reply
