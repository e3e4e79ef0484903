"""Ledger behaviour, written once and run against every backend (SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest

from latentmas_mesh.errors import (
    Conflict,
    InternalError,
    InvalidRequest,
    PayloadTooLarge,
    ReservationClosed,
    ReservationNotFound,
    Unauthorized,
)
from latentmas_mesh.ledger import (
    BATCH_EVENTS_MAX,
    AccountKind,
    Deposit,
    EventStatus,
    Expire,
    LedgerStore,
    Post,
    Reservation,
    ReservationStatus,
    Reserve,
    Settle,
    Snapshot,
    Void,
    agent_account,
    plan_batch,
    validator_account,
)


def funded(store: LedgerStore, *agents: tuple[str, int]) -> LedgerStore:
    for index, (agent, units) in enumerate(agents):
        store.apply(Deposit(f"fund-{index}", agent, units), now_ms=1)
    for validator in ("v1", "v2"):
        store.open_account(validator_account(validator), AccountKind.VALIDATOR, now_ms=1)
    return store


class TestDeposit:
    def test_deposit_moves_units_from_funding_to_the_agent(self, store):
        """Funding an agent opens its account; the funding account carries the opposite sign."""
        store.apply(Deposit("d1", "alice", 1_000), now_ms=5)

        assert (1_000, -1_000) == (
            store.balance_units(agent_account("alice")),
            store.balance_units("funding"),
        )


class TestSettle:
    def test_settlement_splits_80_15_5_and_sums_to_zero(self, store):
        """Alice pays 1,000 to Bob's asset attested by v1 and v2: 800 / 150 / 25 + 25."""
        funded(store, ("alice", 1_000), ("bob", 0 + 1))
        store.apply(Settle("s1", "alice", "bob", ("v1", "v2"), 1_000), now_ms=10)

        assert {
            "agent:alice": 0,
            "agent:bob": 801,
            "platform": 150,
            "validator:v1": 25,
            "validator:v2": 25,
            "funding": -1_001,
            "escrow": 0,
        } == store.balances()
        assert store.audit().ok

    def test_payment_beyond_the_balance_is_insufficient_funds_and_changes_nothing(self, store):
        """A balance never goes below zero: the settlement is refused with INSUFFICIENT_FUNDS."""
        funded(store, ("alice", 99), ("bob", 1))
        before = store.balances()

        outcome = store.apply(Settle("s1", "alice", "bob", (), 100), now_ms=10)

        assert EventStatus.INSUFFICIENT_FUNDS == outcome.status
        assert before == store.balances()


class TestIdempotency:
    def test_redelivered_event_returns_the_original_outcome_and_changes_nothing(self, store):
        """The second delivery of an event is answered from the record, marked replayed."""
        funded(store, ("alice", 500), ("bob", 1))
        first = store.apply(Settle("s1", "alice", "bob", ("v1",), 100), now_ms=10)
        balances = store.balances()

        again = store.apply(Settle("s1", "alice", "bob", ("v1",), 100), now_ms=99)

        assert (first.status, first.applied_at_ms, True) == (
            again.status,
            again.applied_at_ms,
            again.replayed,
        )
        assert balances == store.balances()

    def test_redelivered_rejection_stays_rejected(self, store):
        """An event refused for funds is still refused on re-delivery, even after a deposit."""
        funded(store, ("alice", 10), ("bob", 1))
        store.apply(Settle("s1", "alice", "bob", (), 100), now_ms=10)
        store.apply(Deposit("top-up", "alice", 1_000), now_ms=11)

        again = store.apply(Settle("s1", "alice", "bob", (), 100), now_ms=12)

        assert (EventStatus.INSUFFICIENT_FUNDS, True) == (again.status, again.replayed)
        assert 1_010 == store.balance_units(agent_account("alice"))

    def test_same_id_with_different_content_is_a_conflict(self, store):
        """Reusing an event id for another amount is rejected, not silently accepted."""
        funded(store, ("alice", 500), ("bob", 1))
        store.apply(Settle("s1", "alice", "bob", (), 100), now_ms=10)

        with pytest.raises(Conflict):
            store.apply(Settle("s1", "alice", "bob", (), 101), now_ms=11)
        assert 400 == store.balance_units(agent_account("alice"))

    def test_duplicate_inside_one_batch_is_applied_once(self, store):
        """Two copies of one event in a batch: the second is a replay of the first."""
        funded(store, ("alice", 500), ("bob", 1))
        event = Settle("s1", "alice", "bob", (), 100)

        results = store.apply_batch([event, event], now_ms=10)

        assert [False, True] == [r.replayed for r in results]  # type: ignore[union-attr]
        assert 400 == store.balance_units(agent_account("alice"))

    def test_rejected_event_in_a_batch_does_not_stop_the_others(self, store):
        """A batch answers each event on its own: one conflict, two applied."""
        funded(store, ("alice", 500), ("bob", 1))
        store.apply(Settle("s0", "alice", "bob", (), 1), now_ms=9)

        results = store.apply_batch(
            [
                Settle("s1", "alice", "bob", (), 100),
                Settle("s0", "alice", "bob", (), 2),
                Settle("s2", "alice", "bob", (), 100),
            ],
            now_ms=10,
        )

        assert [False, True, False] == [isinstance(r, Conflict) for r in results]
        assert 299 == store.balance_units(agent_account("alice"))


class TestReservation:
    def test_reserve_holds_funds_and_post_splits_them(self, store):
        """Reserve moves funds to escrow; post pays creator, platform and validators."""
        funded(store, ("alice", 1_000), ("bob", 1))
        store.apply(Reserve("r1", "alice", "bob", ("v1",), 600, expires_at_ms=1_000), now_ms=10)
        held = (store.balance_units(agent_account("alice")), store.balance_units("escrow"))

        store.apply(Post("p1", "r1", actor="alice"), now_ms=20)

        assert (400, 600) == held
        assert (0, 481, 90, 30) == (
            store.balance_units("escrow"),
            store.balance_units(agent_account("bob")),
            store.balance_units("platform"),
            store.balance_units(validator_account("v1")),
        )
        assert ReservationStatus.POSTED == store.reservation("r1").status

    def test_void_returns_the_held_funds(self, store):
        """A failed delivery voids the reservation and the payer gets everything back."""
        funded(store, ("alice", 1_000), ("bob", 1))
        store.apply(Reserve("r1", "alice", "bob", (), 600, expires_at_ms=1_000), now_ms=10)

        store.apply(Void("x1", "r1", actor="aligner", actor_is_service=True), now_ms=20)

        assert (1_000, ReservationStatus.VOIDED) == (
            store.balance_units(agent_account("alice")),
            store.reservation("r1").status,
        )

    def test_expired_reservation_returns_funds_to_buyer(self, store):
        """A reservation past its deadline gives the held units back."""
        funded(store, ("alice", 1_000), ("bob", 1))
        store.apply(Reserve("r1", "alice", "bob", (), 600, expires_at_ms=100), now_ms=10)

        expired = store.expire_due(now_ms=100)

        assert ["expire:r1"] == [o.event_id for o in expired]
        assert 1_000 == store.balance_units(agent_account("alice"))
        assert ReservationStatus.EXPIRED == store.reservation("r1").status

    def test_post_after_the_deadline_expires_instead(self, store):
        """A late post cannot take money: the reservation expires and the post says so."""
        funded(store, ("alice", 1_000), ("bob", 1))
        store.apply(Reserve("r1", "alice", "bob", (), 600, expires_at_ms=100), now_ms=10)

        outcome = store.apply(Post("p1", "r1", actor="alice"), now_ms=150)

        assert EventStatus.RESERVATION_EXPIRED == outcome.status
        assert (1_000, 0) == (
            store.balance_units(agent_account("alice")),
            store.balance_units("escrow"),
        )

    def test_second_finish_of_a_reservation_is_refused(self, store):
        """Post after void is RESERVATION_NOT_PENDING and moves nothing."""
        funded(store, ("alice", 1_000), ("bob", 1))
        store.apply(Reserve("r1", "alice", "bob", (), 600, expires_at_ms=1_000), now_ms=10)
        store.apply(Void("x1", "r1", actor="alice"), now_ms=20)

        outcome = store.apply(Post("p1", "r1", actor="alice"), now_ms=30)

        assert EventStatus.RESERVATION_NOT_PENDING == outcome.status
        assert 1_000 == store.balance_units(agent_account("alice"))

    def test_expiry_of_a_closed_reservation_is_reservation_closed(self):
        """The planner refuses to expire a reservation posted meanwhile: RESERVATION_CLOSED."""
        posted = Reservation("r1", "alice", "bob", (), 600, ReservationStatus.POSTED, 100)
        snapshot = Snapshot(events={}, reservations={"r1": posted}, accounts={})

        (result,) = plan_batch([Expire("r1")], snapshot, now_ms=200).results

        assert (ReservationClosed, "posted") == (type(result), result.details["status"])

    def test_only_the_payer_or_a_service_may_post(self, store):
        """Mallory cannot post Alice's reservation to herself or anyone."""
        funded(store, ("alice", 1_000), ("bob", 1), ("mallory", 1))
        store.apply(Reserve("r1", "alice", "bob", (), 600, expires_at_ms=1_000), now_ms=10)

        with pytest.raises(Unauthorized):
            store.apply(Post("p1", "r1", actor="mallory"), now_ms=20)
        assert ReservationStatus.PENDING == store.reservation("r1").status

    def test_reservation_beyond_the_balance_is_refused(self, store):
        """Reserving more than the available balance is INSUFFICIENT_FUNDS, nothing held."""
        funded(store, ("alice", 100), ("bob", 1))

        outcome = store.apply(
            Reserve("r1", "alice", "bob", (), 101, expires_at_ms=1_000), now_ms=10
        )

        assert (EventStatus.INSUFFICIENT_FUNDS, None) == (
            outcome.status,
            store.reservation("r1"),
        )


class TestBadInput:
    @pytest.mark.parametrize("amount", [-5, 0, 1.5, "10", True, 10**16])
    def test_amounts_that_are_not_positive_int_units_are_refused(self, amount):
        """Negative, zero, float, string, boolean and oversized amounts never reach a store."""
        with pytest.raises(InvalidRequest):
            Settle("s1", "alice", "bob", (), amount)
        with pytest.raises(InvalidRequest):
            Deposit("d1", "alice", amount)

    def test_unknown_validators_are_refused_and_a_creators_first_sale_opens_its_account(
        self, store
    ):
        """Validators are registered (their accounts opened by an operator): paying one that is
        not is an invalid request. A creator is an agent like any other: its account opens with
        the first money it receives, as a deposit opens a payer's."""
        funded(store, ("alice", 1_000))

        with pytest.raises(InvalidRequest, match="validator:ghost"):
            store.apply(Settle("s1", "alice", "alice", ("ghost",), 10), now_ms=5)
        sold = store.apply(Settle("s2", "alice", "newcomer", (), 10), now_ms=5)

        assert None is store.event_outcome("s1")
        assert (EventStatus.APPLIED, 8) == (sold.status, store.balance_units("agent:newcomer"))
        with pytest.raises(InvalidRequest):
            store.balance_units("agent:nobody")

    def test_a_payer_never_funded_has_insufficient_funds(self, store):
        """An account never opened holds nothing: paying from it is INSUFFICIENT_FUNDS (a
        recorded outcome, like an empty account's), never an error about the account."""
        funded(store, ("alice", 1_000))

        outcomes = [
            store.apply(Settle("s1", "nobody", "alice", (), 10), now_ms=5),
            store.apply(Reserve("r1", "nobody", "alice", (), 10, expires_at_ms=99), now_ms=5),
        ]

        assert [EventStatus.INSUFFICIENT_FUNDS] * 2 == [o.status for o in outcomes]
        assert 1_000 == store.balance_units("agent:alice")

    @pytest.mark.parametrize("finish", [Post, Void])
    def test_unknown_reservation_is_reservation_not_found(self, store, finish):
        """A post or void naming a reservation never made is RESERVATION_NOT_FOUND, unrecorded."""
        with pytest.raises(ReservationNotFound) as caught:
            store.apply(finish("p1", "nope", actor="alice"), now_ms=5)

        assert ("nope", None) == (
            caught.value.details["reservation_id"],
            store.event_outcome("p1"),
        )

    def test_a_reserve_refused_for_funds_holds_no_reservation(self, store):
        """Posting a reserve the ledger refused for funds is RESERVATION_NOT_FOUND: none is held."""
        funded(store, ("alice", 10), ("bob", 1))
        store.apply(Reserve("r1", "alice", "bob", (), 11, expires_at_ms=1_000), now_ms=10)

        with pytest.raises(ReservationNotFound):
            store.apply(Post("p1", "r1", actor="alice"), now_ms=20)

    @pytest.mark.parametrize("event_id", ["", "has space", "expire:r1", "x" * 129, 7])
    def test_malformed_event_ids_are_refused(self, event_id):
        """Event ids are 1..128 of [A-Za-z0-9._-]; the ledger's own ids cannot be forged."""
        with pytest.raises(InvalidRequest):
            Deposit(event_id, "alice", 1)

    def test_reservation_deadline_must_be_ahead_and_bounded(self, store):
        """A reservation that is already due, or due in more than a day, is refused."""
        funded(store, ("alice", 1_000), ("bob", 1))

        with pytest.raises(InvalidRequest):
            store.apply(Reserve("r1", "alice", "bob", (), 1, expires_at_ms=10), now_ms=10)
        with pytest.raises(InvalidRequest):
            store.apply(Reserve("r2", "alice", "bob", (), 1, expires_at_ms=10**12), now_ms=10)

    def test_oversized_batch_is_refused(self, store):
        """More than BATCH_EVENTS_MAX events in one batch is PAYLOAD_TOO_LARGE."""
        events = [Deposit(f"d{i}", "alice", 1) for i in range(BATCH_EVENTS_MAX + 1)]

        with pytest.raises(PayloadTooLarge):
            store.apply_batch(events, now_ms=1)


class TestQueries:
    def test_statement_pages_through_an_account_oldest_first(self, store):
        """Five entries read two at a time come back in order, with running balances."""
        for index in range(5):
            store.apply(Deposit(f"d{index}", "alice", 10), now_ms=index)

        pages, after = [], 0
        while after is not None:
            page = store.statement(agent_account("alice"), after, limit=2)
            pages.append([(e.event_id, e.balance_after_units) for e in page.entries])
            after = page.next_after

        assert [
            [("d0", 10), ("d1", 20)],
            [("d2", 30), ("d3", 40)],
            [("d4", 50)],
        ] == pages

    def test_settlement_status_is_the_recorded_outcome(self, store):
        """The status of an applied event is found by its id; an unknown id has none."""
        store.apply(Deposit("d1", "alice", 10), now_ms=3)

        assert (EventStatus.APPLIED, 3, None) == (
            store.event_outcome("d1").status,
            store.event_outcome("d1").applied_at_ms,
            store.event_outcome("nope"),
        )


class TestInvariantChecks:
    def test_a_write_that_differs_from_the_plan_is_rolled_back(self, store, monkeypatch):
        """A journal line altered between write and commit is caught by the read-back: the
        batch raises InternalError and nothing of it is committed."""
        funded(store, ("alice", 500), ("bob", 1))
        before = store.balances()
        real_write = store._write_plan

        def corrupting_write(cursor, plan, now_ms):
            real_write(cursor, plan, now_ms)
            cursor.execute(
                store._sql("UPDATE journal SET amount_units = amount_units + 1 WHERE event_id = ?"),
                ("s1",),
            )

        monkeypatch.setattr(store, "_write_plan", corrupting_write)

        with pytest.raises(InternalError):
            store.apply(Settle("s1", "alice", "bob", (), 100), now_ms=10)
        assert (before, None) == (store.balances(), store.event_outcome("s1"))
