"""Expired reservations are released by the sweeper's timer, with no request touching them."""

from __future__ import annotations

import time

import pytest

from latentmas_mesh.errors import InternalError
from latentmas_mesh.ledger import (
    BATCH_EVENTS_MAX,
    Deposit,
    EventStatus,
    LedgerStore,
    Post,
    ReservationStatus,
    Reserve,
    agent_account,
    expire_event_id,
)
from latentmas_mesh.ledger.sweeper import ReservationSweeper

WAIT_S_MAX = 10.0


class Clock:
    """The ledger's now in ms, moved by the test."""

    def __init__(self, now_ms: int) -> None:
        self.now_ms = now_ms

    def __call__(self) -> int:
        return self.now_ms


def funded(store: LedgerStore) -> LedgerStore:
    store.apply(Deposit("fund-alice", "alice", 1_000_000), now_ms=1)
    store.apply(Deposit("fund-bob", "bob", 1), now_ms=1)
    return store


def reserve(store: LedgerStore, reservation_id: str, expires_at_ms: int, units: int = 100) -> None:
    store.apply(Reserve(reservation_id, "alice", "bob", (), units, expires_at_ms), now_ms=10)


def wait_until(condition, timeout_s: float = WAIT_S_MAX) -> bool:
    """Poll `condition` every 10 ms until it holds or `timeout_s` passes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.01)
    return condition()


class TestSweeper:
    def test_a_reservation_left_alone_is_released_by_the_timer(self, store):
        """Past its deadline, with no further request, the sweeper thread returns the funds and
        records the expiry as an event of its own."""
        funded(store)
        reserve(store, "r1", expires_at_ms=2_000)
        clock = Clock(1_000)
        sweeper = ReservationSweeper(store, clock=clock, interval_ms=10)
        sweeper.start()
        try:
            clock.now_ms = 2_000
            released = wait_until(
                lambda: store.reservation("r1").status == ReservationStatus.EXPIRED
            )
        finally:
            sweeper.stop()

        assert (True, 1_000_000, 0, EventStatus.APPLIED) == (
            released,
            store.balance_units(agent_account("alice")),
            store.balance_units("escrow"),
            store.event_outcome(expire_event_id("r1")).status,
        )
        assert store.audit().ok, store.audit().problems

    def test_only_due_and_pending_reservations_expire(self, store):
        """A posted reservation and one not yet due are left as they are."""
        funded(store)
        reserve(store, "due", expires_at_ms=2_000)
        reserve(store, "later", expires_at_ms=9_000)
        reserve(store, "posted", expires_at_ms=2_000)
        store.apply(Post("p1", "posted", actor="alice"), now_ms=20)

        expired = ReservationSweeper(store, clock=Clock(5_000)).sweep_once()

        assert ["expire:due"] == [outcome.event_id for outcome in expired]
        assert [ReservationStatus.EXPIRED, ReservationStatus.PENDING, ReservationStatus.POSTED] == [
            store.reservation(rid).status for rid in ("due", "later", "posted")
        ]

    def test_sweeping_again_changes_nothing(self, store):
        """A second sweep finds nothing to do: each reservation expires once."""
        funded(store)
        reserve(store, "r1", expires_at_ms=2_000)
        sweeper = ReservationSweeper(store, clock=Clock(5_000))
        first = sweeper.sweep_once()
        balances = store.balances()

        second = sweeper.sweep_once()

        assert (1, [], balances) == (len(first), second, store.balances())

    def test_a_backlog_beyond_one_batch_is_released_in_one_tick(self, store):
        """More due reservations than one transaction holds all expire in the same sweep."""
        funded(store)
        count = BATCH_EVENTS_MAX + 10
        for start in range(0, count, BATCH_EVENTS_MAX):
            store.apply_batch(
                [
                    Reserve(f"r{i}", "alice", "bob", (), 1, expires_at_ms=2_000)
                    for i in range(start, min(count, start + BATCH_EVENTS_MAX))
                ],
                now_ms=10,
            )

        expired = ReservationSweeper(store, clock=Clock(5_000)).sweep_once()

        assert (count, 1_000_000, 0) == (
            len(expired),
            store.balance_units(agent_account("alice")),
            store.audit().pending_reservations,
        )

    def test_a_sweep_that_fails_before_commit_leaves_nothing_and_the_next_one_finishes(
        self, store, monkeypatch
    ):
        """A failure after the expiry rows are written rolls the whole round back; the timer's
        next round expires the reservation once."""
        funded(store)
        reserve(store, "r1", expires_at_ms=2_000)
        original = store._read_back
        calls = []

        def fail_once(*args):
            calls.append(args)
            if len(calls) == 1:
                raise InternalError("simulated crash between write and commit")
            return original(*args)

        monkeypatch.setattr(store, "_read_back", fail_once)
        sweeper = ReservationSweeper(store, clock=Clock(5_000), interval_ms=10)
        with pytest.raises(InternalError):
            sweeper.sweep_once()
        after_failure = (store.reservation("r1").status, store.event_outcome("expire:r1"))
        sweeper.start()
        try:
            wait_until(lambda: store.reservation("r1").status == ReservationStatus.EXPIRED)
        finally:
            sweeper.stop()

        assert ((ReservationStatus.PENDING, None), ReservationStatus.EXPIRED, 1) == (
            after_failure,
            store.reservation("r1").status,
            sweeper.expired,
        )
        assert store.audit().ok, store.audit().problems
