"""Broker, worker base and client transport behaviour, written once and run over inproc and tcp."""

from __future__ import annotations

import asyncio
import threading
import time

import numpy as np
import pytest
import zmq

from latentmas_mesh import codec, mdp
from latentmas_mesh.errors import (
    InsufficientFunds,
    InternalError,
    InvalidRequest,
    PayloadTooLarge,
    ServiceUnavailable,
    Timeout,
)
from tests.broker.messages import Note
from workers.echo import SERVICE as ECHO

NOTE = "tests.note"


def note_handler(decoded, context):
    """Answers a Note with the text upper-cased and the values doubled."""
    note = decoded.message
    if note.text == "broke":
        raise InsufficientFunds("no money", details={"needed_units": 5})
    if note.text == "crash":
        raise RuntimeError("handler bug")
    return Note(text=note.text.upper(), values=note.values * 2)


def raw_peer(mesh, *frames_to_send):
    """A DEALER on the broker that sends each message given (a rogue or strict peer)."""
    socket = mesh.context.socket(zmq.DEALER)
    socket.setsockopt(zmq.LINGER, 0)
    socket.connect(mesh.endpoint)
    for frames in frames_to_send:
        socket.send_multipart(frames)
    return socket


def metric_total(metric):
    """The sum of a prometheus counter over all its labels."""
    return sum(
        sample.value
        for family in metric.collect()
        for sample in family.samples
        if sample.name.endswith("_total")
    )


def recv(socket, timeout_ms=3_000):
    assert socket.poll(timeout_ms), "no message arrived"
    return socket.recv_multipart()


class BrokerBehaviour:
    endpoint = "tcp://127.0.0.1:*"

    # ------------------------------------------------------------------------------ round trips

    def test_echo_returns_every_body_frame_unchanged(self, mesh):
        """Multi-frame bodies pass broker and echo worker and come back byte for byte."""
        mesh.echo()
        body = [b"header", b"\x00" * 1000, b"", b"tail"]

        with mesh.transport() as transport:
            reply = transport.request(ECHO, body)

        assert body == [frame.bytes for frame in reply]

    def test_typed_call_returns_the_decoded_reply(self, mesh):
        """A message goes through the codec both ways, arrays included."""
        mesh.typed(NOTE, note_handler)

        with mesh.transport() as transport:
            decoded = transport.call(NOTE, Note(text="hi", values=np.arange(4.0)))

        assert ("HI", [0.0, 2.0, 4.0, 6.0]) == (decoded.message.text, list(decoded.message.values))

    def test_reply_carries_the_request_id_of_the_call(self, mesh):
        """The request id the client chose comes back in the reply's header."""
        mesh.typed(NOTE, note_handler)

        with mesh.transport() as transport:
            decoded = transport.call(NOTE, Note(text="a", values=np.zeros(1)), request_id="rq-42")

        assert "rq-42" == decoded.request_id

    def test_asyncio_transport_serves_concurrent_calls(self, mesh):
        """Concurrent asyncio requests each get their own answer."""
        mesh.echo()
        mesh.echo()

        async def run():
            async with mesh.async_transport() as transport:
                replies = await asyncio.gather(
                    *(transport.request(ECHO, [b"%d" % i]) for i in range(50))
                )
            return [reply[0].bytes for reply in replies]

        assert [b"%d" % i for i in range(50)] == asyncio.run(run())

    def test_asyncio_typed_call_raises_typed_error(self, mesh):
        """An error reply is raised as its typed exception by the asyncio transport too."""
        mesh.typed(NOTE, note_handler)

        async def run():
            async with mesh.async_transport() as transport:
                await transport.call(NOTE, Note(text="broke", values=np.zeros(1)))

        with pytest.raises(InsufficientFunds) as caught:
            asyncio.run(run())

        assert {"needed_units": 5} == caught.value.details

    def test_retry_after_silence_resends_the_same_request_id(self, mesh):
        """An attempt that times out is resent on a new socket with the same id; one answer."""
        seen = []

        def slow_first_time(decoded, context):
            seen.append(context.request_id)
            if len(seen) == 1:
                time.sleep(0.6)
            return decoded.message

        mesh.typed(NOTE, slow_first_time)

        with mesh.transport(attempt_timeout_ms=250, retries_max=5) as transport:
            decoded = transport.call(NOTE, Note(text="once", values=np.zeros(1)), request_id="r-7")
            attempts = transport.attempts_total

        assert "r-7" == decoded.request_id
        assert {"r-7"} == set(seen)
        assert attempts >= 2

    # --------------------------------------------------------------------------------- errors

    def test_handler_protocol_error_reaches_client_typed(self, mesh):
        """A ProtocolError raised in a handler arrives as the same typed error with details."""
        mesh.typed(NOTE, note_handler)

        with mesh.transport() as transport, pytest.raises(InsufficientFunds) as caught:
            transport.call(NOTE, Note(text="broke", values=np.zeros(1)))

        assert {"needed_units": 5} == caught.value.details

    def test_handler_crash_is_internal_error_and_worker_lives_on(self, mesh):
        """A handler bug answers INTERNAL, and the same worker serves the next request."""
        worker = mesh.typed(NOTE, note_handler)

        with mesh.transport() as transport:
            with pytest.raises(InternalError):
                transport.call(NOTE, Note(text="crash", values=np.zeros(1)))
            decoded = transport.call(NOTE, Note(text="ok", values=np.zeros(1)))

        assert ("OK", 2) == (decoded.message.text, worker.handled)

    def test_garbage_body_to_typed_worker_is_invalid_request(self, mesh):
        """Bytes that are not a codec message get INVALID_REQUEST, not a dead worker."""
        mesh.typed(NOTE, note_handler)

        with mesh.transport() as transport:
            reply = transport.request(NOTE, [b"\xc1 not msgpack"])

        error = codec.decode(reply).message.to_exception()
        assert InvalidRequest is type(error)

    def test_unserved_service_times_out_with_typed_timeout(self, mesh):
        """No worker and a short deadline: the client raises TIMEOUT with its attempts."""
        with mesh.transport() as transport, pytest.raises(Timeout) as caught:
            transport.request("nobody.home", [b"x"], timeout_ms=300)

        assert 1 == caught.value.details["attempts"]

    def test_full_queue_answers_service_unavailable(self, mesh):
        """With no worker and a full queue, the next request is refused at once."""
        mesh.restart_broker(service_queue_depth_max=1)
        waiting = raw_peer(mesh, mdp.client_request(b"busy.svc", [b"first"]))
        time.sleep(0.1)

        with mesh.transport() as transport:
            reply = transport.request("busy.svc", [b"second"], timeout_ms=2_000)

        error = codec.decode(reply).message.to_exception()
        assert isinstance(error, ServiceUnavailable)
        waiting.close()

    # ------------------------------------------------------------------------------------ MMI

    def test_mmi_reports_whether_a_service_has_workers(self, mesh):
        """mmi.service says 200 for a served service and 404 otherwise."""
        mesh.echo()

        with mesh.transport() as transport:
            answers = (transport.service_available(ECHO), transport.service_available("none"))

        assert (True, False) == answers

    # ------------------------------------------------------------------------------ liveness

    def test_request_held_by_a_silent_worker_is_requeued(self, mesh):
        """A worker that takes a request and falls silent is dropped; another one answers."""
        silent = raw_peer(mesh, mdp.worker_ready(ECHO.encode()))
        mesh.wait_for_service(ECHO)
        mesh.echo()
        mesh.wait_for_service(ECHO, workers=2)

        with mesh.transport() as transport:
            reply = transport.request(ECHO, [b"job"])  # LRU: the silent worker gets it first

        assert [b"job"] == [frame.bytes for frame in reply]
        assert metric_total(mesh.broker.metrics.requeues) >= 1
        silent.close()

    def test_request_a_handler_never_answers_gets_timeout_and_frees_the_service(self, mesh):
        """A worker that heartbeats but whose handler hangs: past the in-flight deadline the
        client is answered TIMEOUT by the broker and the worker is recycled; the service goes on
        (before: the request and the worker were held for ever)."""
        mesh.restart_broker(request_in_flight_ms_max=400)
        release = threading.Event()

        def hang(body, context):
            release.wait(10)
            return body

        mesh.raw("tests.hang", hang)
        mesh.raw("tests.hang", lambda body, context: body)
        try:
            with mesh.transport() as transport:
                started = time.monotonic()
                first = transport.request("tests.hang", [b"hangs"], timeout_ms=5_000)
                elapsed_s = time.monotonic() - started
                second = transport.request("tests.hang", [b"served"], timeout_ms=5_000)
        finally:
            release.set()

        # LRU: the worker registered first (the hanging one) gets the first request.
        assert isinstance(codec.decode(first).message.to_exception(), Timeout)
        assert elapsed_s < 3
        assert [b"served"] == [frame.bytes for frame in second]

    def test_over_long_request_is_answered_and_holds_no_worker(self, mesh):
        """The probe: 4,101 body frames (12 KB) once held a worker for ever. Now the broker
        answers PAYLOAD_TOO_LARGE at once and the one worker serves the next request."""
        mesh.echo()

        with mesh.transport() as transport:
            refused = transport.request(ECHO, [b"x"] * (mdp.BODY_FRAMES_MAX + 5), timeout_ms=3_000)
            reply = transport.request(ECHO, [b"next"], timeout_ms=3_000)

        assert isinstance(codec.decode(refused).message.to_exception(), PayloadTooLarge)
        assert [b"next"] == [frame.bytes for frame in reply]

    def test_worker_reregisters_after_broker_disconnect(self, mesh):
        """A worker told DISCONNECT reconnects on a new socket and serves again."""
        worker = mesh.echo()
        mesh.wait_for_service(ECHO)
        peer = next(iter(mesh.broker.state._workers))
        mesh.broker.state._workers[peer].expires_us = 0  # the broker drops it at the next tick

        deadline = time.monotonic() + 5
        while worker.connections < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        mesh.wait_for_service(ECHO)
        with mesh.transport() as transport:
            reply = transport.request(ECHO, [b"again"])

        assert (2, [b"again"]) == (worker.connections, [frame.bytes for frame in reply])

    # ---------------------------------------------------------------------- hostile peers

    def test_garbage_from_a_rogue_client_is_dropped_and_others_served(self, mesh):
        """Wrong headers, unknown commands, empty and huge frames: dropped, counted, harmless."""
        mesh.echo()
        rogue = raw_peer(
            mesh,
            [b"garbage"],
            [b"MDPC01", b"\x01", b"svc", b"x"],
            [b"MDPC02", b"\x07", b"svc", b"x"],
            [b"MDPC02", b"\x01"],
            [b"MDPC02", b"\x01", b"\xff" * 300, b"x"],
            [b"", b"", b""],
            [b"MDPW02", b"\x04", b"addr", b"", b"forged final"],
            [b"MDPC02", b"\x01", b"svc", *([b"x"] * 5000)],
        )

        with mesh.transport() as transport:
            reply = transport.request(ECHO, [b"still here"])

        assert [b"still here"] == [frame.bytes for frame in reply]
        assert metric_total(mesh.broker.metrics.rejected_frames) >= 7
        rogue.close()

    def test_rogue_worker_gets_disconnect_and_others_served(self, mesh):
        """A worker sending unknown commands or foreign replies is cut off; service goes on."""
        mesh.echo()
        rogue = raw_peer(
            mesh,
            mdp.worker_ready(b"rogue.svc"),
            [b"MDPW02", b"\x09"],
            [b"MDPW02", b"\x04", b"not-a-client", b"", b"x"],
        )

        with mesh.transport() as transport:
            reply = transport.request(ECHO, [b"fine"])

        assert [b"fine"] == [frame.bytes for frame in reply]
        assert [b"MDPW02", b"\x06"] == recv(rogue)
        rogue.close()

    def test_worker_survives_garbage_from_its_broker(self, mesh):
        """Malformed frames reaching a worker are dropped; it answers the next real request."""
        router = mesh.context.socket(zmq.ROUTER)
        router.setsockopt(zmq.LINGER, 0)
        port_endpoint = (
            mesh.endpoint.replace("://", "://fake-")
            if "inproc" in mesh.endpoint
            else ("tcp://127.0.0.1:*")
        )
        router.bind(port_endpoint)
        fake_broker = router.getsockopt(zmq.LAST_ENDPOINT).decode()
        mesh.raw(ECHO, lambda body, context: body, connect=fake_broker, handler_thread=False)
        worker_id, *ready = recv(router)
        for garbage in ([b"junk"], [b"MDPW02", b"\x02", b"no-delimiter"], [b"MDPW02", b"\x09"]):
            router.send_multipart([worker_id, *garbage])

        router.send_multipart([worker_id, *mdp.broker_request(b"client-1", [b"real"])])
        reply = recv(router)
        while reply[2] == b"\x05":  # skip heartbeats
            reply = recv(router)

        assert [b"MDPW02", b"\x01", ECHO.encode()] == ready
        assert [worker_id, b"MDPW02", b"\x04", b"client-1", b"", b"real"] == reply
        router.close()

    def test_worker_answers_a_request_it_cannot_take_instead_of_dropping_it(self, mesh):
        """A broker that is not ours hands over too many frames: the worker replies
        PAYLOAD_TOO_LARGE for that client at once, and serves the next request."""
        router = mesh.context.socket(zmq.ROUTER)
        router.setsockopt(zmq.LINGER, 0)
        router.bind("tcp://127.0.0.1:*")
        fake_broker = router.getsockopt(zmq.LAST_ENDPOINT).decode()
        mesh.raw(ECHO, lambda body, context: body, connect=fake_broker, handler_thread=False)
        worker_id, *_ = recv(router)
        over_long = codec.encode(Note(text="x", values=np.zeros(1)), request_id="req-1")
        over_long += [b"x"] * mdp.BODY_FRAMES_MAX

        replies = []
        for body in (over_long, [b"real"]):
            router.send_multipart([worker_id, *mdp.broker_request(b"client-1", body)])
            reply = recv(router)
            while reply[2] == b"\x05":  # skip heartbeats
                reply = recv(router)
            replies.append(reply)

        refused, served = replies
        decoded = codec.decode(refused[5:])
        assert [b"MDPW02", b"\x04", b"client-1"] == refused[1:4]
        assert ("req-1", PayloadTooLarge) == (
            decoded.request_id,
            type(decoded.message.to_exception()),
        )
        assert [worker_id, b"MDPW02", b"\x04", b"client-1", b"", b"real"] == served
        router.close()


class SyncClient:
    """The sync transport behind the interface the client suite uses."""

    def __init__(self, mesh, **overrides):
        self.transport = mesh.transport(**overrides)

    def request(self, service, body, **options):
        return self.transport.request(service, body, **options)

    def call(self, service, message, **options):
        return self.transport.call(service, message, **options)

    def service_available(self, service):
        return self.transport.service_available(service)

    def close(self):
        self.transport.close()


class AsyncClient(SyncClient):
    """The asyncio transport behind the same interface, each call run to completion."""

    def __init__(self, mesh, **overrides):
        self.transport = mesh.async_transport(**overrides)

    def request(self, service, body, **options):
        return asyncio.run(self.transport.request(service, body, **options))

    def call(self, service, message, **options):
        return asyncio.run(self.transport.call(service, message, **options))

    def service_available(self, service):
        return asyncio.run(self.transport.service_available(service))


class ClientBehaviour:
    """What every client transport does, run for the sync and the asyncio one."""

    endpoint = "tcp://127.0.0.1:*"

    @pytest.fixture(params=[SyncClient, AsyncClient], ids=["sync", "asyncio"])
    def client(self, request, mesh):
        built = request.param(mesh)
        yield built
        built.close()

    def test_request_returns_the_final_body(self, mesh, client):
        """A raw request gets the worker's FINAL body frames."""
        mesh.echo()

        assert [b"a", b"b"] == [frame.bytes for frame in client.request(ECHO, [b"a", b"b"])]

    def test_error_reply_is_raised_typed(self, mesh, client):
        """An ErrorBody reply becomes the typed exception with its details."""
        mesh.typed(NOTE, note_handler)

        with pytest.raises(InsufficientFunds) as caught:
            client.call(NOTE, Note(text="broke", values=np.zeros(1)))

        assert {"needed_units": 5} == caught.value.details

    def test_mmi_lookup(self, mesh, client):
        """service_available is the MMI answer."""
        mesh.echo()

        assert (True, False) == (client.service_available(ECHO), client.service_available("x"))

    def test_deadline_gives_typed_timeout(self, mesh, client):
        """No answer within the call's deadline raises TIMEOUT."""
        with pytest.raises(Timeout):
            client.request("nobody.home", [b"x"], timeout_ms=200)
