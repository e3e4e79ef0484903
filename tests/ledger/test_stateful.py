"""Stateful property test: the ledger beside an independent in-memory model, on every backend."""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    rule,
    run_state_machine_as_test,
)

from latentmas_mesh.errors import Conflict
from latentmas_mesh.ledger import (
    AccountKind,
    Deposit,
    EventStatus,
    LedgerEvent,
    LedgerStore,
    Post,
    ReservationStatus,
    Reserve,
    Settle,
    Void,
    agent_account,
    validator_account,
)

AGENTS = ("alice", "bob", "carol")
VALIDATORS = ("v1", "v2")
amounts = st.integers(min_value=1, max_value=2_000)
validator_sets = st.lists(st.sampled_from(VALIDATORS), unique=True, max_size=2).map(tuple)


def model_split(amount: int, validators: tuple[str, ...]) -> dict[str, int]:
    """Spec 7.4.3's 80/15/5 in integer units, written again from the rule `split_revenue`
    documents (nested round half up; the pool equally, the remainder one unit each to the first
    validators in sorted id order; no validators: the platform keeps their 5%), with exact
    fractions instead of the production code's integer formulas."""

    def round_half_up(exact: Fraction) -> int:
        return math.floor(exact + Fraction(1, 2))

    creator = round_half_up(Fraction(amount * 80, 100))
    rest = amount - creator
    if not validators:
        return {"creator": creator, "platform": rest}
    platform = round_half_up(Fraction(rest * 15, 15 + 5))
    pool = rest - platform
    ordered = sorted(validators)
    shares = {validator_account(v): pool // len(ordered) for v in ordered}
    for validator in ordered[: pool % len(ordered)]:
        shares[validator_account(validator)] += 1
    return {"creator": creator, "platform": platform} | shares


@dataclass
class ModelReservation:
    payer: str
    creator: str
    validators: tuple[str, ...]
    amount: int
    expires_at_ms: int
    status: ReservationStatus = ReservationStatus.PENDING


class LedgerModel:
    """What the ledger should hold, computed with plain dicts and no SQL."""

    def __init__(self) -> None:
        self.balances = {"funding": 0, "platform": 0, "escrow": 0}
        self.balances |= {validator_account(v): 0 for v in VALIDATORS}
        self.recorded: dict[str, tuple[LedgerEvent, EventStatus]] = {}
        self.reservations: dict[str, ModelReservation] = {}

    def move(self, source: str, amount: int, creator: str, validators: tuple[str, ...]) -> None:
        split = model_split(amount, validators)
        assert amount == sum(split.values())  # the model's own arithmetic, checked
        self.balances[source] -= amount
        self.balances[agent_account(creator)] += split.pop("creator")
        for account, units in split.items():  # the platform and each validator
            self.balances[account] += units

    def expire(self, reservation: ModelReservation) -> None:
        reservation.status = ReservationStatus.EXPIRED
        self.balances["escrow"] -= reservation.amount
        self.balances[agent_account(reservation.payer)] += reservation.amount


class LedgerMachine(RuleBasedStateMachine):
    """Random deposits, settlements, reservations, posts, voids, expiries, replays, conflicts."""

    store: LedgerStore
    events = Bundle("events")
    pending = Bundle("pending")

    def __init__(self) -> None:
        super().__init__()
        self.model = LedgerModel()
        self.now_ms = 1_000
        self.ids = itertools.count()
        for validator in VALIDATORS:
            self.store.open_account(validator_account(validator), AccountKind.VALIDATOR, 0)
        for agent in AGENTS:  # every agent starts funded, so reservations often succeed
            self.apply(Deposit(self.new_id(), agent, 1_000))
            self.model.balances[agent_account(agent)] = 1_000
            self.model.balances["funding"] -= 1_000

    def new_id(self) -> str:
        return f"e{next(self.ids)}"

    def apply(self, event: LedgerEvent) -> EventStatus:
        outcome = self.store.apply(event, self.now_ms)
        assert not outcome.replayed
        self.model.recorded[event.event_id] = (event, outcome.status)
        return outcome.status

    @rule(target=events, agent=st.sampled_from(AGENTS), amount=amounts)
    def deposit(self, agent: str, amount: int) -> LedgerEvent:
        event = Deposit(self.new_id(), agent, amount)
        assert EventStatus.APPLIED == self.apply(event)
        self.model.balances["funding"] -= amount
        self.model.balances[agent_account(agent)] += amount
        return event

    @rule(
        target=events,
        payer=st.sampled_from(AGENTS),
        creator=st.sampled_from(AGENTS),
        validators=validator_sets,
        amount=amounts,
    )
    def settle(self, payer: str, creator: str, validators: tuple[str, ...], amount: int):
        event = Settle(self.new_id(), payer, creator, validators, amount)
        affordable = self.model.balances[agent_account(payer)] >= amount
        status = self.apply(event)
        if affordable:
            assert EventStatus.APPLIED == status
            self.model.move(agent_account(payer), amount, creator, validators)
        else:
            assert EventStatus.INSUFFICIENT_FUNDS == status
        return event

    @rule(
        target=pending,
        payer=st.sampled_from(AGENTS),
        creator=st.sampled_from(AGENTS),
        validators=validator_sets,
        amount=amounts,
        ttl_ms=st.integers(min_value=1, max_value=500),
    )
    def reserve(self, payer, creator, validators, amount, ttl_ms) -> str:
        event = Reserve(self.new_id(), payer, creator, validators, amount, self.now_ms + ttl_ms)
        affordable = self.model.balances[agent_account(payer)] >= amount
        status = self.apply(event)
        assert (EventStatus.APPLIED if affordable else EventStatus.INSUFFICIENT_FUNDS) == status
        if affordable:
            self.model.balances[agent_account(payer)] -= amount
            self.model.balances["escrow"] += amount
            self.model.reservations[event.event_id] = ModelReservation(
                payer, creator, event.validators, amount, event.expires_at_ms
            )
        return event.event_id

    @rule(reservation_id=consumes(pending), post=st.booleans(), as_service=st.booleans())
    def finish(self, reservation_id: str, post: bool, as_service: bool) -> None:
        reservation = self.model.reservations.get(reservation_id)
        if reservation is None:  # the reserve was refused for funds
            return
        actor = "aligner" if as_service else reservation.payer
        kind = Post if post else Void
        status = self.apply(kind(self.new_id(), reservation_id, actor, as_service))
        if reservation.status != ReservationStatus.PENDING:
            assert EventStatus.RESERVATION_NOT_PENDING == status
        elif self.now_ms >= reservation.expires_at_ms:
            assert EventStatus.RESERVATION_EXPIRED == status
            self.model.expire(reservation)
        elif post:
            assert EventStatus.APPLIED == status
            reservation.status = ReservationStatus.POSTED
            self.model.move(
                "escrow", reservation.amount, reservation.creator, reservation.validators
            )
        else:
            assert EventStatus.APPLIED == status
            reservation.status = ReservationStatus.VOIDED
            self.model.balances["escrow"] -= reservation.amount
            self.model.balances[agent_account(reservation.payer)] += reservation.amount

    @rule(elapsed_ms=st.integers(min_value=1, max_value=400))
    def time_passes(self, elapsed_ms: int) -> None:
        self.now_ms += elapsed_ms
        expired = {o.event_id for o in self.store.expire_due(self.now_ms)}
        due = {
            f"expire:{rid}"
            for rid, r in self.model.reservations.items()
            if r.status == ReservationStatus.PENDING and r.expires_at_ms <= self.now_ms
        }
        assert due == expired
        for rid, reservation in self.model.reservations.items():
            if f"expire:{rid}" in due:
                self.model.expire(reservation)

    @rule(event=events)
    def redeliver(self, event: LedgerEvent) -> None:
        outcome = self.store.apply(event, self.now_ms)
        assert (True, self.model.recorded[event.event_id][1]) == (outcome.replayed, outcome.status)

    @rule(event=events, extra=st.integers(min_value=1, max_value=5))
    def reuse_id_with_other_content(self, event: Deposit | Settle, extra: int) -> None:
        altered = dataclasses.replace(event, amount_units=event.amount_units + extra)
        try:
            self.store.apply(altered, self.now_ms)
        except Conflict:
            return
        raise AssertionError("a reused id with different content was accepted")

    @invariant()
    def balances_equal_the_model(self) -> None:
        assert self.model.balances == self.store.balances()

    @invariant()
    def balances_sum_to_zero_and_none_but_funding_is_negative(self) -> None:
        balances = self.store.balances()
        assert 0 == sum(balances.values())
        assert [] == [a for a, units in balances.items() if units < 0 and a != "funding"]

    def teardown(self) -> None:
        self.now_ms += 10_000
        self.store.expire_due(self.now_ms)
        statuses = {self.store.reservation(rid).status for rid in self.model.reservations}
        assert ReservationStatus.PENDING not in statuses
        assert 0 == self.store.balance_units("escrow")
        events_recorded = self.store.audit().events
        assert (
            len(self.model.recorded)
            + sum(
                1 for r in self.model.reservations.values() if r.status == ReservationStatus.EXPIRED
            )
            <= events_recorded
        )
        assert self.store.audit().ok, self.store.audit().problems


def test_ledger_matches_an_independent_model(make_store, request):
    """Every balance equals the model's after every step; ids apply once; reservations all end."""
    backend = request.node.callspec.params["make_store"]

    def machine() -> LedgerMachine:
        LedgerMachine.store = make_store()
        return LedgerMachine()

    examples = 60 if backend == "sqlite" else 20
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=examples,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )


@pytest.mark.parametrize(
    ("amount", "validators", "expected"),
    [
        (100, ("v1", "v2"), {"creator": 80, "platform": 15, "validator:v1": 3, "validator:v2": 2}),
        (7, ("v2", "v1"), {"creator": 6, "platform": 1, "validator:v1": 0, "validator:v2": 0}),
        (10, ("v1",), {"creator": 8, "platform": 2, "validator:v1": 0}),
        (30, ("v1", "v2"), {"creator": 24, "platform": 5, "validator:v1": 1, "validator:v2": 0}),
        (9, (), {"creator": 7, "platform": 2}),
    ],
)
def test_model_split_follows_the_rounding_rule_by_hand(amount, validators, expected):
    """The model agrees with splits worked out by hand: it is a reference in its own right."""
    assert expected == model_split(amount, validators)
