"""The outbox: durable spooling, re-sending until a final answer, exactly-once at the ledger."""

from __future__ import annotations

import sqlite3

import pytest

from latentmas_mesh.errors import Conflict, Timeout
from latentmas_mesh.protocol.ledger import EventResult, SettleEvent
from latentmas_mesh.settlement.outbox import Outbox


def settle(event_id: str, amount: int = 5) -> SettleEvent:
    return SettleEvent(event_id=event_id, creator="bob", amount_units=amount)


class FlakyLedger:
    """Answers like a ledger that records each id once; fails the first `failures` sends."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.seen: dict[str, int] = {}
        self.sends = 0

    def __call__(self, events):
        self.sends += 1
        if self.failures:
            self.failures -= 1
            for event in events:  # applied, but the answer is lost on the way back
                self.seen[event.event_id] = self.seen.get(event.event_id, 0) + 1
            raise Timeout("no answer")
        results = []
        for event in events:
            replayed = event.event_id in self.seen
            self.seen[event.event_id] = self.seen.get(event.event_id, 0) + 1
            results.append(EventResult(event_id=event.event_id, status=0, replayed=replayed))
        return results


class TestOutbox:
    def test_spooled_events_survive_reopening(self, tmp_path):
        """An emitter that crashes after add finds its events pending on restart."""
        Outbox(tmp_path / "o.db").add(settle("a"), settle("b"))

        reopened = Outbox(tmp_path / "o.db")

        assert ["a", "b"] == [e.event_id for e in reopened.pending()]

    def test_lost_answers_are_resent_until_acknowledged(self, tmp_path):
        """Two timeouts, then an answer: every event ends acknowledged, none pending."""
        outbox = Outbox(tmp_path / "o.db")
        outbox.add(*(settle(f"e{i}") for i in range(10)))
        ledger = FlakyLedger(failures=2)

        left = outbox.drain(ledger, batch_max=4, sleep=lambda _: None)

        assert (0, 5) == (left, ledger.sends)  # two lost answers, then batches of 4, 4, 2
        assert {"status_0": 10} == outbox.final_counts()
        assert True is outbox.result("e0").replayed

    def test_spooled_returns_the_event_delivered_or_not(self, tmp_path):
        """`spooled` reads back an event by id before and after its answer; unknown ids: None."""
        outbox = Outbox(tmp_path / "o.db")
        outbox.add(settle("e1"))
        before = outbox.spooled("e1")
        outbox.drain(FlakyLedger(failures=0), deadline_s=5.0)

        assert (settle("e1"), settle("e1"), None) == (
            before,
            outbox.spooled("e1"),
            outbox.spooled("e2"),
        )

    def test_same_event_twice_is_spooled_once(self, tmp_path):
        """Adding an identical event again is a no-op."""
        outbox = Outbox(tmp_path / "o.db")
        outbox.add(settle("a"))
        outbox.add(settle("a"))

        assert 1 == outbox.pending_count()

    def test_other_content_under_a_spooled_id_is_a_conflict(self, tmp_path):
        """An emitter bug reusing an id is caught before it reaches the ledger."""
        outbox = Outbox(tmp_path / "o.db")
        outbox.add(settle("a", 5))

        with pytest.raises(Conflict):
            outbox.add(settle("a", 6))
        assert 1 == outbox.pending_count()

    def test_final_refusals_are_not_resent(self, tmp_path):
        """A conflict or insufficient funds is an answer: the event leaves the queue."""
        outbox = Outbox(tmp_path / "o.db")
        outbox.add(settle("a"), settle("b"))

        def refuse(events):
            return [
                EventResult(event_id="a", status=1),
                EventResult(
                    event_id="b", error={"code": "CONFLICT", "message": "m", "resolution": "r"}
                ),
            ]

        outbox.drain(refuse, sleep=lambda _: None)

        assert (0, {"status_1": 1, "CONFLICT": 1}) == (
            outbox.pending_count(),
            outbox.final_counts(),
        )

    def test_failed_acknowledge_records_nothing_and_the_outbox_stays_usable(self, tmp_path):
        """An answer that cannot be written half-way through a batch rolls the whole batch back;
        the outbox then takes new events and answers as before."""
        outbox = Outbox(tmp_path / "o.db")
        outbox.add(settle("a"), settle("b"))
        saboteur = sqlite3.connect(tmp_path / "o.db", timeout=1.0)
        saboteur.execute(  # "a" is updated, then "b" fails inside the same transaction
            "CREATE TRIGGER refuse_b BEFORE UPDATE ON outbox WHEN NEW.event_id = 'b'"
            " BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
        )
        answers = [EventResult(event_id=event_id, status=0) for event_id in ("a", "b")]

        with pytest.raises(sqlite3.IntegrityError, match="injected failure"):
            outbox.acknowledge(answers)
        unchanged = ([e.event_id for e in outbox.pending()], outbox.result("a"))
        saboteur.execute("DROP TRIGGER refuse_b")  # needs the write lock a leaked BEGIN holds
        saboteur.close()
        outbox.add(settle("c"))
        acknowledged = outbox.acknowledge([*answers, EventResult(event_id="c", status=0)])

        assert ((["a", "b"], None), 3, 0) == (unchanged, acknowledged, outbox.pending_count())
