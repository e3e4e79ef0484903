"""Worker liveness state: heartbeats, broker death, reconnect backoff, drain; integer clocks."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from workers.state import (
    CONNECT,
    DISCONNECT,
    HEARTBEAT,
    Action,
    Limits,
    Reconnect,
    ReconnectReason,
    Refusal,
    WorkerState,
)

HB = 100  # heartbeat interval in the tests' milliseconds
LIVENESS = 3
EXPIRY = HB * LIVENESS
SILENT = ReconnectReason.BROKER_SILENT
SAID_DISCONNECT = ReconnectReason.BROKER_DISCONNECT


def make_state(fraction: Callable[[], float] = lambda: 1.0, **limits: int) -> WorkerState:
    """A state with small round intervals; the jitter fraction 1.0 gives the full delay."""
    settings = {
        "heartbeat_ms": HB,
        "liveness": LIVENESS,
        "reconnect_ms_min": 10,
        "reconnect_ms_max": 80,
        "drain_ms_max": 500,
        **limits,
    }
    return WorkerState(Limits(**settings), random_fraction=fraction)


def connected(now: int = 0, **limits: int) -> WorkerState:
    state = make_state(**limits)
    assert CONNECT == state.tick(now)
    return state


def timeline(state: WorkerState, start: int, end: int) -> list[tuple[int, Action]]:
    """Tick every millisecond of [start, end) and keep what was due, with its time."""
    out: list[tuple[int, Action]] = []
    for now in range(start, end):
        action = state.tick(now)
        if action is not None:
            out.append((now, action))
    return out


def drop_for_silence(state: WorkerState, connected_at: int) -> tuple[int, Reconnect]:
    """Let a fresh connection expire; the time and the Reconnect it gives."""
    dropped_at = connected_at + EXPIRY
    action = state.tick(dropped_at)
    assert isinstance(action, Reconnect)
    return dropped_at, action


class TestConnect:
    def test_first_tick_connects_at_once(self):
        """A new worker starts its conversation without waiting."""
        state = make_state()

        assert (0, CONNECT, True) == (state.next_deadline_ms(), state.tick(0), state.connected)

    def test_nothing_is_due_right_after_connecting(self):
        """READY counts as the first heartbeat, and the broker has a full liveness window."""
        state = connected(now=5)

        assert [] == timeline(state, 5, 5 + HB)


class TestHeartbeat:
    def test_heartbeat_is_due_at_exactly_the_interval(self):
        """A heartbeat goes HB ms after READY, not one ms sooner, and every HB ms after that."""
        state = connected()
        state.broker_message(150)  # keep the broker alive past the window

        assert [(HB, HEARTBEAT), (2 * HB, HEARTBEAT), (3 * HB, HEARTBEAT)] == timeline(
            state, 1, 3 * HB + 1
        )

    def test_a_reply_postpones_the_heartbeat(self):
        """RFC 18: any command sent implies a heartbeat, so none follows it within HB."""
        state = connected()
        state.sent(50)

        assert [(50 + HB, HEARTBEAT)] == timeline(state, 1, 50 + HB + 1)

    def test_heartbeats_go_on_while_busy(self):
        """A long request does not silence the worker: the broker still hears from it."""
        state = connected()
        assert state.accept_request() is None

        assert [HB * n for n in range(1, 11)] == [t for t, _ in timeline(state, 1, 10 * HB + 1)]


class TestBrokerLiveness:
    def test_broker_is_dead_after_liveness_intervals_of_silence_and_not_sooner(self):
        """RFC 18: 'some multiple of that interval' with no traffic, to the millisecond."""
        state = connected()

        assert [(HB, HEARTBEAT), (2 * HB, HEARTBEAT)] == timeline(state, 1, EXPIRY)
        assert Reconnect(SILENT, 10) == state.tick(EXPIRY)
        assert not state.connected

    def test_any_broker_traffic_resets_liveness(self):
        """A heartbeat, request or any well-formed command restarts the window from its arrival."""
        state = connected()
        state.broker_message(250)

        assert all(a != Reconnect(SILENT, 10) for _, a in timeline(state, 1, 250 + EXPIRY))
        assert Reconnect(SILENT, 10) == state.tick(250 + EXPIRY)

    def test_a_busy_worker_never_declares_the_broker_dead(self):
        """Some brokers (majortomo) do not heartbeat a busy worker; it must not reconnect then."""
        state = connected()
        state.accept_request()

        assert {HEARTBEAT} == {a for _, a in timeline(state, 1, 10 * EXPIRY)}
        assert state.connected

    def test_finishing_a_request_gives_the_broker_a_fresh_window(self):
        """After long work the broker gets `liveness` intervals from the reply, not from before."""
        state = connected()
        state.accept_request()
        state.request_done(1_000)

        assert HEARTBEAT == state.tick(1_000 + EXPIRY - 1)
        assert Reconnect(SILENT, 10) == state.tick(1_000 + EXPIRY)


class TestReconnectBackoff:
    def test_reconnect_waits_for_its_delay_and_not_one_ms_less(self):
        """After a drop nothing happens until the delay has passed; then READY goes again."""
        state = connected()
        dropped_at, reconnect = drop_for_silence(state, 0)

        assert [(dropped_at + reconnect.delay_ms, CONNECT)] == timeline(
            state, dropped_at + 1, dropped_at + reconnect.delay_ms + 1
        )

    def test_backoff_doubles_and_is_capped(self):
        """RFC 18 backoff: each failed conversation waits twice as long, up to reconnect_ms_max."""
        state = connected()
        connected_at, delays = 0, []
        for _ in range(6):
            dropped_at, reconnect = drop_for_silence(state, connected_at)
            delays.append(reconnect.delay_ms)
            connected_at = dropped_at + reconnect.delay_ms
            assert CONNECT == state.tick(connected_at)

        assert [10, 20, 40, 80, 80, 80] == delays

    @pytest.mark.parametrize(("fraction", "delay_ms"), [(0.0, 20), (0.5, 30), (1.0, 40)])
    def test_jitter_spreads_the_delay_over_half_to_all_of_the_backoff(self, fraction, delay_ms):
        """Workers that lost the same broker do not all come back in the same millisecond."""
        state = WorkerState(
            Limits(heartbeat_ms=HB, liveness=LIVENESS, reconnect_ms_min=40),
            random_fraction=lambda: fraction,
        )
        state.tick(0)

        assert Reconnect(SILENT, delay_ms) == state.tick(EXPIRY)

    def test_broker_traffic_brings_the_backoff_back_to_its_minimum(self):
        """A conversation that worked means the next failure is new, not the same outage."""
        state = connected()
        connected_at = 0
        for _ in range(3):
            dropped_at, reconnect = drop_for_silence(state, connected_at)
            connected_at = dropped_at + reconnect.delay_ms
            state.tick(connected_at)
        state.broker_message(connected_at + 1)

        assert Reconnect(SILENT, 10) == state.tick(connected_at + 1 + EXPIRY)

    def test_broker_disconnect_drops_the_connection_with_backoff(self):
        """RFC 18: after DISCONNECT the worker sends that conversation nothing more."""
        state = connected()

        assert Reconnect(SAID_DISCONNECT, 10) == state.broker_disconnected(50)
        assert (False, None, CONNECT) == (state.connected, state.tick(59), state.tick(60))

    def test_no_new_conversation_while_a_request_is_in_hand(self):
        """The worker reconnects only when free, so a new broker never sees it busy."""
        state = connected()
        state.accept_request()
        state.broker_disconnected(50)

        assert [] == timeline(state, 51, 1_000)
        state.request_done(1_000)
        assert CONNECT == state.tick(1_000)


class TestRequests:
    def test_one_request_at_a_time(self):
        """RFC 18: a second request while busy is refused, and taken again once free."""
        state = connected()

        assert None is state.accept_request()
        assert Refusal.BUSY == state.accept_request()
        state.request_done(10)
        assert None is state.accept_request()


class TestDrain:
    def test_idle_worker_disconnects_at_once(self):
        """With nothing in hand there is nothing to wait for."""
        state = connected()
        state.drain(50)

        assert (DISCONNECT, False) == (state.tick(50), state.connected)

    def test_drain_stops_taking_new_requests(self):
        """After the drain starts a REQUEST is dropped; the broker requeues it on DISCONNECT."""
        state = connected()
        state.drain(50)

        assert Refusal.DRAINING == state.accept_request()

    def test_drain_finishes_the_request_in_hand_then_disconnects(self):
        """The in-flight reply still goes; DISCONNECT comes right after it, not before."""
        state = connected()
        state.accept_request()
        state.drain(10)

        assert {HEARTBEAT} == {a for _, a in timeline(state, 10, 300)}
        state.request_done(300)
        assert DISCONNECT == state.tick(300)

    def test_drain_gives_up_on_the_request_after_drain_ms_max(self):
        """A request that never finishes does not keep the worker alive forever."""
        state = connected()
        state.accept_request()
        state.drain(10)
        state.drain(400)  # a second stop() does not move the deadline

        assert DISCONNECT not in {a for _, a in timeline(state, 10, 510)}
        assert (510, DISCONNECT) == (state.next_deadline_ms(), state.tick(510))

    def test_draining_never_reconnects(self):
        """A worker that lost its broker while draining stops instead of starting over."""
        state = connected()
        state.accept_request()
        state.broker_disconnected(20)
        state.drain(30)

        assert [] == timeline(state, 30, 200)
        state.request_done(200)
        assert DISCONNECT == state.tick(200)


class TestNextDeadline:
    def test_idle_connection_wakes_for_the_heartbeat(self):
        """The loop sleeps until the next heartbeat (before the expiry)."""
        state = connected()

        assert HB == state.next_deadline_ms()

    def test_expiry_counts_when_it_comes_first(self):
        """A reply just sent moves the heartbeat past the expiry; the loop wakes for the expiry."""
        state = connected()
        state.sent(EXPIRY - 10)

        assert EXPIRY == state.next_deadline_ms()

    def test_busy_connection_ignores_the_expiry(self):
        """While busy the broker is not watched, so its expiry is no reason to wake."""
        state = connected()
        state.accept_request()
        state.sent(EXPIRY - 10)

        assert EXPIRY - 10 + HB == state.next_deadline_ms()

    def test_disconnected_worker_wakes_to_reconnect(self):
        """After a drop the next thing due is the new conversation."""
        state = connected()
        state.broker_disconnected(50)

        assert 60 == state.next_deadline_ms()

    def test_busy_disconnected_worker_waits_for_its_request(self):
        """Nothing but the request's end can make a Connect due, so there is no deadline."""
        state = connected()
        state.accept_request()
        state.broker_disconnected(50)

        assert None is state.next_deadline_ms()
