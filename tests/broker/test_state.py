"""Broker routing state: LRU dispatch, bounded queues, heartbeats, requeues, MMI; integer clocks."""

from __future__ import annotations

from collections import Counter

import pytest

from broker.state import BrokerState, Limits, Send
from latentmas_mesh import mdp

HB = 1_000  # heartbeat interval in the tests' microseconds


def error_reply(code, message, request_body):
    """Stands in for the codec: the error code and the request's first body frame."""
    return [b"ERR", code.value.encode(), request_body[0] if request_body else b""]


class Recorder:
    """Observer that keeps everything it is told."""

    def __init__(self):
        self.done = []
        self.requeues = 0
        self.rejects = []
        self.changes = []

    def request_done(self, service, outcome, elapsed_us, request_body):
        self.done.append((service, outcome, elapsed_us))

    def requeued(self, service, request_body):
        self.requeues += 1

    def rejected(self, reason, peer):
        self.rejects.append(reason)

    def worker_changed(self, change, service, peer):
        self.changes.append((change, peer))


def make_state(**limits):
    recorder = Recorder()
    state = BrokerState(
        Limits(heartbeat_us=HB, **limits), error_reply=error_reply, observer=recorder
    )
    return state, recorder


def request(state, client, body=b"x", *, service=b"svc", now=0, dialect=mdp.Dialect.RFC18):
    return state.apply(client, mdp.parse(mdp.client_request(service, [body], dialect=dialect)), now)


def ready(state, worker, service=b"svc", now=0, delimited=False):
    return state.apply(worker, mdp.WorkerReady(service, delimited), now)


def final(state, worker, address, body=b"r", now=0):
    return state.apply(worker, mdp.WorkerFinal(address, (body,)), now)


def only(sends):
    assert 1 == len(sends)
    return sends[0]


def dispatched(send: Send):
    """(worker, address, body) of a REQUEST the broker sent a worker."""
    event = mdp.parse_for_worker(send.frames)
    assert isinstance(event, mdp.BrokerRequest)
    return send.peer, event.client_address, event.body


def reply_to(send: Send, dialect=mdp.Dialect.RFC18):
    return send.peer, mdp.parse_reply(send.frames, dialect)


class TestDispatch:
    def test_request_goes_to_idle_worker_and_final_back_to_client(self):
        """A request reaches the service's worker; its FINAL reaches the client with the service."""
        state, recorder = make_state()
        ready(state, b"W1")

        worker, address, body = dispatched(only(request(state, b"C1", b"hello", now=5)))
        client, reply = reply_to(only(final(state, b"W1", address, b"olleh", now=9)))

        assert (b"W1", (b"hello",)) == (worker, body)
        assert (b"C1", mdp.Reply(True, (b"olleh",), b"svc")) == (client, reply)
        assert [(b"svc", "ok", 4)] == recorder.done

    def test_least_recently_used_idle_worker_gets_the_next_request(self):
        """The worker idle longest is picked; one that just finished goes to the back."""
        state, _ = make_state()
        ready(state, b"W1")
        ready(state, b"W2")
        w_first, address, _ = dispatched(only(request(state, b"C1")))
        final(state, w_first, address)

        w_second, _, _ = dispatched(only(request(state, b"C2")))

        assert (b"W1", b"W2") == (w_first, w_second)

    def test_request_waits_in_queue_until_a_worker_registers(self):
        """RFC 18: requests for a service with no worker are queued, not refused."""
        state, _ = make_state()
        assert [] == request(state, b"C1", b"early")

        worker, _, body = dispatched(only(ready(state, b"W1")))

        assert (b"W1", (b"early",)) == (worker, body)

    def test_full_queue_answers_service_unavailable_at_once(self):
        """One request beyond the bounded queue gets SERVICE_UNAVAILABLE instead of memory."""
        state, _ = make_state(service_queue_depth_max=2)
        request(state, b"C1", b"a")
        request(state, b"C2", b"b")

        client, reply = reply_to(only(request(state, b"C3", b"c")))

        assert (b"C3", (b"ERR", b"SERVICE_UNAVAILABLE", b"c")) == (client, reply.body)

    def test_queued_request_expires_with_service_unavailable(self):
        """RFC 18: queued requests expire after a configurable time."""
        state, recorder = make_state(request_queue_us_max=50)
        request(state, b"C1", b"a", now=0)
        assert [] == state.tick(49)

        client, reply = reply_to(only(state.tick(50)))

        assert (b"C1", (b"ERR", b"SERVICE_UNAVAILABLE", b"a")) == (client, reply.body)
        assert [(b"svc", "SERVICE_UNAVAILABLE", 50)] == recorder.done

    def test_partial_is_forwarded_and_worker_stays_busy(self):
        """A PARTIAL reaches the client and the worker takes no other request until FINAL."""
        state, _ = make_state()
        ready(state, b"W1")
        _, address, _ = dispatched(only(request(state, b"C1")))

        client, reply = reply_to(only(state.apply(b"W1", mdp.WorkerPartial(address, (b"p",)), 1)))

        assert (b"C1", mdp.Reply(False, (b"p",), b"svc")) == (client, reply)
        assert [] == request(state, b"C2")

    def test_majortomo_client_is_answered_in_its_dialect(self):
        """A majortomo client's request gets '' MDPC02 0x04 body, without a service frame."""
        state, _ = make_state()
        ready(state, b"W1")
        _, address, _ = dispatched(only(request(state, b"C1", dialect=mdp.Dialect.MAJORTOMO)))

        send = only(final(state, b"W1", address, b"r"))

        assert [b"", b"MDPC02", b"\x04", b"r"] == send.frames

    def test_delimited_worker_is_spoken_to_with_the_delimiter(self):
        """A majortomo worker (leading empty frame) receives its commands framed the same way."""
        state, _ = make_state()
        ready(state, b"W1", delimited=True)

        send = only(request(state, b"C1"))

        assert [b"", b"MDPW02", b"\x02"] == send.frames[:3]

    def test_client_identity_rides_in_the_address_frame(self):
        """The authenticated identity reaches the worker inside the opaque client address."""
        state, _ = make_state()
        ready(state, b"W1")
        frames = mdp.client_request(b"svc", [b"x"])

        sends = state.apply(b"C1", mdp.parse(frames), 0, identity="client-key")

        _, address, _ = dispatched(only(sends))
        assert mdp.ClientAddress(b"C1", "client-key") == mdp.unpack_client_address(address)


class TestLiveness:
    def test_heartbeat_is_sent_when_due(self):
        """The broker heartbeats a worker it has sent nothing to for one interval."""
        state, _ = make_state()
        ready(state, b"W1")
        assert [] == state.tick(HB - 1)

        send = only(state.tick(HB))

        assert (b"W1", [b"MDPW02", b"\x05"]) == (send.peer, send.frames)

    def test_silent_worker_is_dropped_and_its_request_requeued(self):
        """After liveness intervals of silence a worker is dropped; another gets its request."""
        state, recorder = make_state(liveness=3)
        ready(state, b"W1", now=0)
        dispatched(only(request(state, b"C1", b"job")))
        ready(state, b"W2", now=2 * HB)
        state.apply(b"W2", mdp.WorkerHeartbeat(), 3 * HB - 1)

        sends = state.tick(3 * HB)

        peers = [s.peer for s in sends]
        redispatched = [dispatched(s) for s in sends if s.peer == b"W2" and s.frames[1] == b"\x02"]
        assert b"W1" in peers
        assert [(b"W2", (b"job",))] == [(w, body) for w, _, body in redispatched]
        assert 1 == recorder.requeues

    def test_heartbeats_keep_a_worker_alive(self):
        """Any command from the worker pushes its expiry forward."""
        state, _ = make_state(liveness=3)
        ready(state, b"W1", now=0)
        state.apply(b"W1", mdp.WorkerHeartbeat(), 2 * HB)

        sends = state.tick(4 * HB)

        assert [[b"MDPW02", b"\x05"]] == [s.frames for s in sends]

    def test_requeues_are_bounded_then_internal_error(self):
        """A request whose workers keep dying is answered INTERNAL after requeue_max requeues."""
        state, _ = make_state(requeue_max=1)
        request(state, b"C1", b"poison")
        ready(state, b"W1")
        state.apply(b"W1", mdp.WorkerDisconnect(), 1)
        ready(state, b"W2", now=2)

        sends = state.apply(b"W2", mdp.WorkerDisconnect(), 3)

        client, reply = reply_to(only(sends))
        assert (b"C1", (b"ERR", b"INTERNAL", b"poison")) == (client, reply.body)

    def test_late_final_from_dropped_worker_is_not_delivered(self):
        """A FINAL from a worker already dropped gets DISCONNECT; the client hears only once."""
        state, _ = make_state()
        ready(state, b"W1")
        _, address, _ = dispatched(only(request(state, b"C1")))
        state.tick(10 * HB)

        send = only(final(state, b"W1", address, now=10 * HB + 1))

        assert (b"W1", [b"MDPW02", b"\x06"]) == (send.peer, send.frames)

    def test_heartbeat_from_unknown_worker_gets_disconnect(self):
        """After a broker restart a worker's heartbeat gets DISCONNECT, so it registers again."""
        state, _ = make_state()

        send = only(state.apply(b"W9", mdp.WorkerHeartbeat(), 0))

        assert [b"MDPW02", b"\x06"] == send.frames

    def test_second_ready_disconnects_the_worker(self):
        """RFC 18: a worker MUST NOT send a further READY; the broker answers DISCONNECT."""
        state, recorder = make_state()
        ready(state, b"W1")

        send = only(ready(state, b"W1"))

        assert (b"W1", [b"MDPW02", b"\x06"]) == (send.peer, send.frames)
        assert not state.is_worker(b"W1")
        assert ["unexpected_command"] == recorder.rejects

    def test_final_with_a_foreign_address_disconnects_and_requeues(self):
        """A worker answering for a client it was not given is dropped; the request is requeued."""
        state, recorder = make_state()
        ready(state, b"W1")
        request(state, b"C1")

        sends = final(state, b"W1", b"someone-else")

        assert [b"W1"] == [s.peer for s in sends]
        assert 1 == recorder.requeues

    @pytest.mark.parametrize(
        ("identity", "service"),
        [("bad", b"svc"), (None, b"svc"), ("good", b"latentmas.ledger")],
    )
    def test_worker_key_serves_only_its_own_services(self, identity, service):
        """With keys bound to services, a READY from an unknown key, or from a known key for a
        service its directory does not name, gets DISCONNECT, is counted and never registers."""
        state, recorder = make_state(worker_services={"good": frozenset({b"svc"})})

        sends = state.apply(b"W1", mdp.WorkerReady(service), 0, identity=identity)

        assert [b"W1"] == [s.peer for s in sends]
        assert ["unauthorized_service"] == recorder.rejects
        assert not state.is_worker(b"W1")

    def test_worker_key_registers_for_its_own_service(self):
        """The same key registers for the service its directory names."""
        state, _ = make_state(worker_services={"good": frozenset({b"svc"})})

        assert [] == state.apply(b"W1", mdp.WorkerReady(b"svc"), 0, identity="good")
        assert state.is_worker(b"W1")


class TestInFlightDeadline:
    def test_request_held_past_the_deadline_is_answered_timeout_and_the_worker_recycled(self):
        """A worker that heartbeats but never answers: TIMEOUT for the client, DISCONNECT for
        the worker, which leaves the table (its service is not held hostage)."""
        state, recorder = make_state(liveness=100, request_in_flight_us_max=10 * HB)
        ready(state, b"W1")
        dispatched(only(request(state, b"C1", b"hang", now=0)))
        state.apply(b"W1", mdp.WorkerHeartbeat(), 10 * HB - 1)
        assert [] == [s for s in state.tick(10 * HB - 1) if s.peer == b"C1"]

        sends = state.tick(10 * HB)

        client, reply = reply_to(next(s for s in sends if s.peer == b"C1"))
        assert (b"C1", (b"ERR", b"TIMEOUT", b"hang")) == (client, reply.body)
        assert [[b"MDPW02", b"\x06"]] == [s.frames for s in sends if s.peer == b"W1"]
        assert not state.is_worker(b"W1")
        assert (0, 0) == (state.in_flight, recorder.requeues)
        assert ("overdue", b"W1") in recorder.changes

    def test_timed_out_request_is_not_requeued_and_a_late_final_is_dropped(self):
        """The next worker never sees the request; the first one's late FINAL reaches nobody."""
        state, _ = make_state(liveness=100, request_in_flight_us_max=10 * HB)
        ready(state, b"W1")
        _, address, _ = dispatched(only(request(state, b"C1", b"hang")))
        ready(state, b"W2", now=1)
        state.tick(10 * HB)

        late = only(final(state, b"W1", address, now=10 * HB + 1))
        second = request(state, b"C2", b"next", now=10 * HB + 2)

        assert (b"W1", [b"MDPW02", b"\x06"]) == (late.peer, late.frames)
        assert [(b"W2", (b"next",))] == [(w, body) for w, _, body in map(dispatched, second)]

    def test_the_deadline_counts_from_each_hand_over(self):
        """A worker that answers in time keeps going; its next request has a full deadline."""
        state, _ = make_state(liveness=100, request_in_flight_us_max=10 * HB)
        ready(state, b"W1")
        _, address, _ = dispatched(only(request(state, b"C1", now=0)))
        final(state, b"W1", address, now=9 * HB)
        dispatched(only(request(state, b"C2", now=9 * HB)))

        assert [] == [s for s in state.tick(18 * HB) if s.peer == b"C2"]
        assert 1 == len([s for s in state.tick(19 * HB) if s.peer == b"C2"])

    def test_next_deadline_includes_the_in_flight_deadline(self):
        """A deadline before the next heartbeat is what wakes the loop."""
        state, _ = make_state(liveness=100, request_in_flight_us_max=HB // 2)
        ready(state, b"W1")
        dispatched(only(request(state, b"C1", now=HB // 4)))

        assert HB // 4 + HB // 2 == state.next_deadline_us()

    def test_in_flight_limit_comes_from_the_environment(self, monkeypatch):
        from broker.settings import BrokerSettings

        monkeypatch.setenv("LATENTMAS_REQUEST_IN_FLIGHT_MS_MAX", "1234")

        assert 1_234_000 == BrokerSettings().limits().request_in_flight_us_max


def refused(event):
    return mdp.RefusedBody("too_many_frames", "a body of 4097 frames exceeds 4096", event)


class TestRefusedBody:
    def test_refused_request_is_answered_payload_too_large_at_once(self):
        """A client request whose body the framing refused gets its typed error, never silence."""
        state, recorder = make_state()
        ready(state, b"W1")
        event = mdp.ClientRequest(b"svc", (b"req-1",))

        client, reply = reply_to(only(state.refuse(b"C1", refused(event), 5)))

        assert (b"C1", (b"ERR", b"PAYLOAD_TOO_LARGE", b"req-1")) == (client, reply.body)
        assert [(b"svc", "PAYLOAD_TOO_LARGE", 0)] == recorder.done
        assert 0 == state.in_flight

    def test_refused_reply_is_replaced_by_an_error_and_the_worker_is_free(self):
        """A worker's over-long FINAL: the client gets PAYLOAD_TOO_LARGE (with its request id),
        the worker takes the next queued request."""
        state, recorder = make_state()
        ready(state, b"W1")
        _, address, _ = dispatched(only(request(state, b"C1", b"req-1")))
        request(state, b"C2", b"req-2")

        sends = state.refuse(b"W1", refused(mdp.WorkerFinal(address, (b"huge",))), 7)

        client, reply = reply_to(sends[0])
        assert (b"C1", (b"ERR", b"PAYLOAD_TOO_LARGE", b"req-1")) == (client, reply.body)
        assert [(b"W1", (b"req-2",))] == [(w, body) for w, _, body in map(dispatched, sends[1:])]
        assert [("svc", "PAYLOAD_TOO_LARGE")] == [(s.decode(), o) for s, o, _ in recorder.done]

    def test_refused_reply_from_an_unknown_worker_gets_disconnect(self):
        state, _ = make_state()

        send = only(state.refuse(b"W9", refused(mdp.WorkerFinal(b"\x00C1", (b"x",))), 0))

        assert (b"W9", [b"MDPW02", b"\x06"]) == (send.peer, send.frames)


class TestByteBudget:
    def test_requests_beyond_the_budget_are_refused_at_once_and_fit_again_once_answered(self):
        """Held bodies count until their FINAL; past bytes_max a request gets
        SERVICE_UNAVAILABLE with the reason, one larger than the whole budget PAYLOAD_TOO_LARGE."""
        state, _ = make_state(bytes_max=100, request_queue_us_max=50)
        assert [] == request(state, b"C1", b"a" * 60, now=0)
        assert 60 == state.held_bytes

        _, over = reply_to(only(request(state, b"C2", b"b" * 60, now=1)))
        _, huge = reply_to(only(request(state, b"C3", b"c" * 101, now=2)))
        reply_to(only(state.tick(50)))  # C1's request expires: its bytes are released
        fits = request(state, b"C4", b"d" * 60, now=51)

        assert (b"ERR", b"SERVICE_UNAVAILABLE") == over.body[:2]
        assert (b"ERR", b"PAYLOAD_TOO_LARGE") == huge.body[:2]
        assert ([], 60) == (fits, state.held_bytes)

    def test_bytes_are_released_when_the_worker_answers(self):
        state, _ = make_state(bytes_max=100)
        ready(state, b"W1")
        _, address, _ = dispatched(only(request(state, b"C1", b"a" * 60)))
        assert 60 == state.held_bytes

        final(state, b"W1", address, b"r")

        assert 0 == state.held_bytes

    def test_replies_are_tracked_once_per_track_every_bytes_and_count_until_read(self):
        """Small replies accumulate; the one that crosses the threshold carries all of them."""
        state, _ = make_state(track_every_bytes=100)
        ready(state, b"W1")
        tracked = []
        for n in range(3):
            _, address, _ = dispatched(only(request(state, b"C1", b"q%d" % n)))
            tracked.append(only(final(state, b"W1", address, b"r" * 40)).tracked_bytes)

        assert [0, 0, 120] == tracked
        assert 120 == state.held_bytes
        state.replies_read(b"C1", 120)
        assert 0 == state.held_bytes

    def test_a_slow_consumer_loses_replies_and_requests_until_it_reads(self):
        """Past peer_unread_bytes_max a client's replies are discarded (counted) and its new
        requests refused; other clients are served; once it reads it is served again."""
        state, recorder = make_state(peer_unread_bytes_max=150, track_every_bytes=100)
        ready(state, b"W1")
        for n in range(2):  # two tracked replies of 100 bytes, never read
            _, address, _ = dispatched(only(request(state, b"C1", b"q%d" % n)))
            assert 100 == only(final(state, b"W1", address, b"r" * 100)).tracked_bytes

        refused = only(request(state, b"C1", b"q2"))
        _, address, _ = dispatched(only(request(state, b"C2", b"other")))
        other = only(final(state, b"W1", address, b"fine"))
        state.replies_read(b"C1", 200)
        again = dispatched(only(request(state, b"C1", b"q3")))

        assert (b"C1", []) == (refused.peer, refused.frames)
        assert "slow_consumer" in recorder.rejects
        assert ("svc", "SERVICE_UNAVAILABLE") == (recorder.done[2][0].decode(), recorder.done[2][1])
        assert b"C2" == other.peer
        assert (b"q3",) == again[2]

    def test_the_untracked_table_is_bounded(self):
        """Clients that got a few small replies each are remembered up to a bound."""
        state, _ = make_state(track_every_bytes=1000, untracked_peers_max=4)
        ready(state, b"W1")
        for n in range(10):
            _, address, _ = dispatched(only(request(state, b"C%d" % n)))
            final(state, b"W1", address)

        assert len(state._untracked) <= 4

    def test_budget_comes_from_the_environment(self, monkeypatch):
        from broker.settings import BrokerSettings

        monkeypatch.setenv("LATENTMAS_BROKER_BYTES_MAX", "4096")
        monkeypatch.setenv("LATENTMAS_PEER_UNREAD_BYTES_MAX", "1024")

        limits = BrokerSettings().limits()
        assert (4096, 1024) == (limits.bytes_max, limits.peer_unread_bytes_max)


class TestMmi:
    @pytest.mark.parametrize(
        ("service", "body", "expected"),
        [
            (b"mmi.service", b"svc", b"200"),
            (b"mmi.service", b"nobody", b"404"),
            (b"mmi.unknown", b"svc", b"501"),
        ],
    )
    def test_mmi_answers_whether_a_service_has_workers(self, service, body, expected):
        """mmi.service answers 200 or 404; other mmi. names answer 501."""
        state, _ = make_state()
        ready(state, b"W1")

        _, reply = reply_to(only(request(state, b"C1", body, service=service)))

        assert mdp.Reply(True, (expected,), service) == reply


class TestShutdown:
    def test_draining_refuses_new_requests(self):
        """After drain, a new request gets SERVICE_UNAVAILABLE at once."""
        state, _ = make_state()
        state.drain(0)

        _, reply = reply_to(only(request(state, b"C1", b"late")))

        assert (b"ERR", b"SERVICE_UNAVAILABLE", b"late") == reply.body

    def test_draining_answers_requests_no_worker_can_take(self):
        """Requests queued for a service without workers are refused when the drain begins."""
        state, _ = make_state()
        request(state, b"C1", b"stuck")

        _, reply = reply_to(only(state.drain(1)))

        assert ((b"ERR", b"SERVICE_UNAVAILABLE", b"stuck"), 0) == (reply.body, state.in_flight)

    def test_draining_lets_in_flight_requests_finish(self):
        """A request accepted before drain still gets its worker's FINAL."""
        state, _ = make_state()
        ready(state, b"W1")
        _, address, _ = dispatched(only(request(state, b"C1")))
        state.drain(0)

        client, reply = reply_to(only(final(state, b"W1", address, b"done")))

        assert (b"C1", (b"done",), 0) == (client, reply.body, state.in_flight)

    def test_shutdown_answers_everyone_and_disconnects_workers(self):
        """Unfinished requests get SERVICE_UNAVAILABLE and every worker gets DISCONNECT."""
        state, _ = make_state()
        ready(state, b"W1")
        request(state, b"C1", b"held")
        request(state, b"C2", b"queued")

        sends = state.shutdown(5)

        bodies = sorted(reply_to(s)[1].body for s in sends if s.peer.startswith(b"C"))
        assert [
            (b"ERR", b"SERVICE_UNAVAILABLE", b"held"),
            (b"ERR", b"SERVICE_UNAVAILABLE", b"queued"),
        ] == bodies
        assert [[b"MDPW02", b"\x06"]] == [s.frames for s in sends if s.peer == b"W1"]

    def test_service_table_is_bounded(self):
        """Requests naming ever new services stop at services_max."""
        state, _ = make_state(services_max=2)
        request(state, b"C1", service=b"a")
        request(state, b"C1", service=b"b")

        _, reply = reply_to(only(request(state, b"C1", b"c", service=b"c")))

        assert b"SERVICE_UNAVAILABLE" == reply.body[1]


DISCONNECT = [b"MDPW02", b"\x06"]


class TestBoundedTables:
    def test_ready_for_a_new_service_beyond_services_max_is_disconnected(self):
        """A worker offering one service too many gets DISCONNECT; the table does not grow."""
        state, recorder = make_state(services_max=2)
        ready(state, b"W1", b"a")
        ready(state, b"W2", b"b")

        send = only(ready(state, b"W3", b"c"))

        assert (b"W3", DISCONNECT) == (send.peer, send.frames)
        assert ({b"a", b"b"}, False) == (set(state.stats()), state.is_worker(b"W3"))
        assert ["services_max_reached"] == recorder.rejects

    def test_ready_for_a_held_service_is_accepted_at_services_max(self):
        """The bound counts services, not workers: another worker of a known service joins."""
        state, _ = make_state(services_max=1)
        ready(state, b"W1", b"a")

        assert [] == ready(state, b"W2", b"a")
        assert (1, True) == (len(state.stats()), state.is_worker(b"W2"))

    def test_queued_requests_count_against_services_max_for_ready(self):
        """A service a request created fills the table for a READY naming another one."""
        state, _ = make_state(services_max=1)
        request(state, b"C1", service=b"a")

        send = only(ready(state, b"W1", b"b"))

        assert ([b"a"], DISCONNECT) == (list(state.stats()), send.frames)

    def test_ready_from_a_new_worker_beyond_workers_max_is_disconnected(self):
        """One worker too many gets DISCONNECT and leaves both tables as they were."""
        state, recorder = make_state(workers_max=2)
        ready(state, b"W1", b"a")
        ready(state, b"W2", b"a")

        send = only(ready(state, b"W3", b"b"))

        assert (b"W3", DISCONNECT) == (send.peer, send.frames)
        assert ([b"a"], False) == (list(state.stats()), state.is_worker(b"W3"))
        assert ["workers_max_reached"] == recorder.rejects

    def test_refused_worker_takes_no_request(self):
        """A refused worker is not dispatched to: the queued request waits for a real one."""
        state, _ = make_state(workers_max=1)
        ready(state, b"W1", b"a")
        request(state, b"C1", service=b"b")

        only(ready(state, b"W2", b"b"))

        assert 1 == state.stats()[b"b"].queued

    def test_a_service_whose_worker_left_makes_room_for_another(self):
        """A DISCONNECT frees its service's slot at once, without waiting for a tick."""
        state, _ = make_state(services_max=1)
        ready(state, b"W1", b"a")
        state.apply(b"W1", mdp.WorkerDisconnect(), 1)

        assert [] == ready(state, b"W2", b"b", now=2)
        assert ([b"b"], True) == (list(state.stats()), state.is_worker(b"W2"))

    def test_a_service_whose_worker_expired_makes_room_for_another(self):
        """A worker dropped for silence frees its service's slot."""
        state, _ = make_state(services_max=1, liveness=3)
        ready(state, b"W1", b"a")
        state.tick(3 * HB)

        assert [] == ready(state, b"W2", b"b", now=3 * HB)
        assert [b"b"] == list(state.stats())

    def test_a_worker_that_left_makes_room_for_another(self):
        """At workers_max, a DISCONNECT lets the next READY in."""
        state, _ = make_state(workers_max=1)
        ready(state, b"W1")
        state.apply(b"W1", mdp.WorkerDisconnect(), 1)

        assert [] == ready(state, b"W2", now=2)
        assert state.is_worker(b"W2")

    def test_a_worker_that_expired_makes_room_for_another(self):
        """At workers_max, a worker dropped for silence lets the next READY in."""
        state, _ = make_state(workers_max=1, liveness=3)
        ready(state, b"W1")
        state.tick(3 * HB)

        assert [] == ready(state, b"W2", now=3 * HB)
        assert (False, True) == (state.is_worker(b"W1"), state.is_worker(b"W2"))

    def test_workers_max_comes_from_the_environment(self, monkeypatch):
        """LATENTMAS_WORKERS_MAX reaches the routing state's limits."""
        from broker.settings import BrokerSettings

        monkeypatch.setenv("LATENTMAS_WORKERS_MAX", "7")

        assert 7 == BrokerSettings().limits().workers_max


class TestExactlyOnce:
    def test_every_request_gets_exactly_one_final_in_bounded_time_under_random_faults(self, rng):
        """Random arrivals, replies, deaths, silences, hung handlers and refused replies: each
        request is answered at most once (safety) and, once arrivals stop, every one is
        answered within the bound the limits imply without a shutdown (liveness)."""
        queue_us, in_flight_us, liveness, requeues = 50 * HB, 20 * HB, 3, 3
        state, recorder = make_state(
            liveness=liveness,
            requeue_max=requeues,
            service_queue_depth_max=20,
            request_queue_us_max=queue_us,
            request_in_flight_us_max=in_flight_us,
            bytes_max=50,  # about 7 held requests: the budget refuses some
            track_every_bytes=20,  # every few replies tracked; the test releases each at once
        )
        finals: Counter[bytes] = Counter()
        busy: dict[bytes, bytes] = {}  # worker -> address it holds (and will answer)
        hung: set[bytes] = set()  # heartbeating workers whose handler never returns
        alive: set[bytes] = set()
        sent = 0
        next_worker = 0
        now = 0

        def absorb(sends):
            for send in sends:
                if send.tracked_bytes:  # ZeroMQ took the reply
                    state.replies_read(send.peer, send.tracked_bytes)
                if send.peer.startswith(b"C"):
                    reply = mdp.parse_reply(send.frames)
                    assert reply.final
                    key = reply.body[-1] if reply.body[0] == b"ERR" else reply.body[0]
                    finals[key] += 1
                elif send.frames[1] == b"\x02":
                    event = mdp.parse_for_worker(send.frames)
                    busy[send.peer] = event.client_address
                elif send.frames[1] == b"\x06":
                    alive.discard(send.peer)
                    hung.discard(send.peer)
                    busy.pop(send.peer, None)

        def answer(worker, *, too_long=False):
            address = busy.pop(worker)
            final = mdp.WorkerFinal(address, (b"?",))
            if too_long:
                frames = state.refuse(worker, refused(final), now)
            else:
                frames = state.apply(worker, final, now)
            # The worker echoes the request body: find it by the address's client id.
            client = mdp.unpack_client_address(address).routing_id
            for send in frames:
                if send.peer == client and not too_long:
                    finals[b"req-" + client[1:]] += 1
                    state.replies_read(client, send.tracked_bytes)
                else:
                    absorb([send])

        def heartbeat_and_tick():
            for worker in sorted(alive):
                absorb(state.apply(worker, mdp.WorkerHeartbeat(), now))
            absorb(state.tick(now))

        for _ in range(4_000):
            now += int(rng.integers(1, HB // 2))
            action = rng.integers(0, 8)
            if action == 0 and sent < 1_000:
                absorb(request(state, b"C%d" % sent, b"req-%d" % sent, now=now))
                sent += 1
            elif action == 1 and len(alive) < 6:
                worker = b"W%d" % next_worker
                next_worker += 1
                alive.add(worker)
                absorb(ready(state, worker, now=now))
            elif action in (2, 6) and busy:
                answer(sorted(busy)[int(rng.integers(0, len(busy)))], too_long=action == 6)
            elif action == 3 and alive - hung:  # a hung worker outlives kills: only its deadline
                candidates = sorted(alive - hung)  # frees its request
                worker = candidates[int(rng.integers(0, len(candidates)))]
                alive.discard(worker)
                busy.pop(worker, None)  # killed: it never answers
            elif action == 7 and busy and rng.random() < 0.2:
                worker = sorted(busy)[int(rng.integers(0, len(busy)))]
                busy.pop(worker)  # its handler hangs; the process keeps heartbeating
                hung.add(worker)
            else:
                heartbeat_and_tick()

        # Liveness: no more arrivals, live workers answer what they hold, hung ones never do. A
        # request waits at most queue_us per hand-over, is held at most in_flight_us (or until its
        # worker is declared dead), and is handed over at most requeues + 1 times.
        bound_us = (requeues + 1) * (queue_us + in_flight_us + liveness * HB + HB)
        settle_until = now + bound_us
        while now < settle_until and sent != len(finals):
            now += HB // 2
            for worker in sorted(busy):
                answer(worker)
            heartbeat_and_tick()

        outcomes = Counter(outcome for _, outcome, _ in recorder.done)
        assert sent == len(finals), f"{sent - len(finals)} requests unanswered after {bound_us} us"
        assert {1} == set(finals.values())
        assert 0 == state.in_flight
        assert recorder.requeues > 0
        assert outcomes["ok"] > 0
        assert outcomes["TIMEOUT"] > 0
        assert outcomes["PAYLOAD_TOO_LARGE"] > 0
        assert outcomes["SERVICE_UNAVAILABLE"] > 0
        assert 0 == state.held_bytes  # every body and reply counted was released once
        absorb(state.shutdown(now))
        assert {1} == set(finals.values())
