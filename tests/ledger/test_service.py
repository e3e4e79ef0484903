"""The ledger service's rules over the wire messages: identity decides who pays and who reads."""

from __future__ import annotations

import pytest
from pydantic import BaseModel

from latentmas_mesh import codec
from latentmas_mesh.errors import (
    Conflict,
    InsufficientFunds,
    InvalidRequest,
    ModelNotSupported,
    ReservationClosed,
    ReservationNotFound,
    Unauthorized,
)
from latentmas_mesh.ledger import AccountKind, EventStatus, validator_account
from latentmas_mesh.market import AssetType
from latentmas_mesh.protocol.base import validate_message
from latentmas_mesh.protocol.ledger import (
    LedgerEventsRequest,
    PostEvent,
    QuoteRequest,
    ReserveEvent,
    SettleEvent,
    VoidEvent,
)
from latentmas_mesh.services.ledger import LedgerPolicy, LedgerService
from latentmas_mesh.settlement.ledger_client import LedgerClient, new_event_id

KEY = b"q" * 32


class Clock:
    def __init__(self) -> None:
        self.now_ms = 1_000

    def __call__(self) -> int:
        return self.now_ms


class InProcess:
    """A Caller that encodes and decodes like the wire, then calls the service as `identity`."""

    def __init__(self, service: LedgerService, identity: str | None) -> None:
        self.service, self.identity = service, identity

    def call(self, service, message: BaseModel, *, request_id=None, timeout_ms=None):
        request = codec.decode(codec.encode(message, request_id="r1"))
        try:
            reply = self.service.handle(request.message, self.identity)
        except Exception as error:
            raise error
        return codec.decode(codec.encode(reply, request_id="r1"))


@pytest.fixture
def mesh(store):
    clock = Clock()
    policy = LedgerPolicy(quote_key=KEY, operators=frozenset({"op"}), services=frozenset({"svc"}))
    service = LedgerService(store, policy, clock=clock)
    store.open_account(validator_account("v1"), AccountKind.VALIDATOR, 0)

    def client(identity: str | None) -> LedgerClient:
        return LedgerClient(InProcess(service, identity))

    client("op").deposit("alice", 1_000)
    client("op").deposit("bob", 1)
    return client, clock


class TestService:
    def test_payer_is_the_authenticated_identity(self, mesh):
        """Alice's settlement debits Alice: the body has no payer field to forge."""
        client, _ = mesh
        client("alice").apply(
            SettleEvent(event_id="s1", creator="bob", validators=("v1",), amount_units=100)
        )

        assert (900, 81) == (
            client("alice").balance().balance_units,
            client("bob").balance().balance_units,
        )

    def test_payer_field_in_the_body_is_refused(self):
        """A message that tries to name a payer does not even validate."""
        with pytest.raises(InvalidRequest):
            validate_message(
                LedgerEventsRequest,
                {
                    "events": [
                        {
                            "type": "settle",
                            "event_id": "s",
                            "payer": "alice",
                            "creator": "bob",
                            "amount_units": 1,
                        }
                    ]
                },
            )

    def test_unauthenticated_requests_cannot_spend_or_read(self, mesh):
        """Without a CURVE identity there is no account to pay from or read."""
        client, _ = mesh
        with pytest.raises(Unauthorized):
            client(None).balance()
        with pytest.raises(Unauthorized):
            client(None).apply(SettleEvent(event_id="s1", creator="bob", amount_units=1))

    def test_only_the_owner_or_an_operator_reads_a_statement(self, mesh):
        """Mallory cannot read Alice's journal; the operator can."""
        client, _ = mesh
        with pytest.raises(Unauthorized):
            client("mallory").statement("agent:alice")

        page = client("op").statement("agent:alice")

        assert [1_000] == [e.amount_units for e in page.entries]

    def test_an_agent_never_funded_has_nothing_but_anothers_unknown_account_is_refused(self, mesh):
        """A new agent reads its own account as 0 units and no entries before its first
        deposit opens it; an operator asking for an account nobody opened gets the error."""
        client, _ = mesh
        newcomer = client("carol")

        balance, statement = newcomer.balance(), newcomer.statement()

        assert ("agent:carol", 0, (), None) == (
            balance.account,
            balance.balance_units,
            statement.entries,
            statement.next_after,
        )
        with pytest.raises(InvalidRequest, match="unknown account"):
            client("op").balance("agent:nobody")

    def test_only_operators_fund_accounts(self, mesh):
        """An agent cannot mint money for itself."""
        client, _ = mesh
        with pytest.raises(Unauthorized):
            client("alice").deposit("alice", 10**6)

    def test_float_amount_is_refused_on_the_wire(self):
        """1.5 units never become 1 or 2: the event does not validate."""
        with pytest.raises(InvalidRequest):
            validate_message(
                LedgerEventsRequest,
                {
                    "events": [
                        {"type": "settle", "event_id": "s", "creator": "b", "amount_units": 1.5}
                    ]
                },
            )

    def test_insufficient_funds_reaches_the_client_as_its_code(self, mesh):
        """Paying more than the balance raises InsufficientFunds at the client."""
        client, _ = mesh
        with pytest.raises(InsufficientFunds):
            client("bob").apply(SettleEvent(event_id="s1", creator="alice", amount_units=50))

    def test_another_agent_cannot_post_my_reservation_but_a_service_can(self, mesh):
        """Mallory is refused; the platform service that delivered posts it."""
        client, _ = mesh
        client("alice").apply(
            ReserveEvent(event_id="r1", creator="bob", amount_units=100, expires_at_ms=60_000)
        )
        with pytest.raises(Unauthorized):
            client("mallory").apply(PostEvent(event_id="p1", reservation_id="r1"))

        client("svc").apply(PostEvent(event_id="p2", reservation_id="r1"))

        assert 81 == client("bob").balance().balance_units

    def test_quote_pays_the_quoted_price_and_expires(self, mesh):
        """A quote fixes creator and price; after its deadline a new payment with it is refused."""
        client, clock = mesh
        quote = client(None).quote(
            QuoteRequest(
                asset_type=AssetType.MEMORY,
                asset_id="asset-1",
                creator="bob",
                tokens=32_768,
                source_model="llama-3-70b",
                quality=1.0,
                ttl_ms=1_000,
            )
        )
        client("alice").apply(SettleEvent(event_id="s1", quote=quote))
        clock.now_ms += 1_000

        with pytest.raises(InvalidRequest, match="expired"):
            client("alice").apply(SettleEvent(event_id="s2", quote=quote))
        replay = client("alice").apply(SettleEvent(event_id="s1", quote=quote))

        assert (quote.price_units, True) == (
            1_000 - client("alice").balance().balance_units,
            replay.replayed,
        )

    def test_altered_quote_is_refused(self, mesh):
        """Lowering a quote's price breaks its signature."""
        client, _ = mesh
        quote = client(None).quote(
            QuoteRequest(
                asset_type=AssetType.REASONING,
                asset_id="a",
                creator="bob",
                tokens=1,
                source_model="llama-3-70b",
                quality=0.5,
            )
        )
        cheap = quote.model_copy(update={"price_units": 1})

        with pytest.raises(InvalidRequest, match="signature"):
            client("alice").apply(SettleEvent(event_id="s1", quote=cheap))

    def test_quote_for_an_unknown_model_is_model_not_supported(self, mesh):
        """The tier comes from the registry; an unknown model has none."""
        client, _ = mesh
        with pytest.raises(ModelNotSupported):
            client(None).quote(
                QuoteRequest(
                    asset_type=AssetType.MEMORY,
                    asset_id="a",
                    creator="bob",
                    tokens=1,
                    source_model="no-such-model",
                    quality=0.5,
                )
            )

    def test_settlement_status_and_replay_conflict(self, mesh):
        """Status reports the recorded outcome; reusing the id for other content is a conflict."""
        client, _ = mesh
        event_id = new_event_id()
        client("alice").apply(SettleEvent(event_id=event_id, creator="bob", amount_units=10))

        with pytest.raises(Conflict):
            client("alice").apply(SettleEvent(event_id=event_id, creator="bob", amount_units=11))
        assert (EventStatus.APPLIED, None) == (
            client("alice").status(event_id).status,
            client("alice").status("never-sent"),
        )

    def test_a_late_post_is_refused_and_the_funds_go_back(self, mesh):
        """A post after the deadline is RESERVATION_CLOSED (expired); Alice has her units back."""
        client, clock = mesh
        client("alice").apply(
            ReserveEvent(event_id="r1", creator="bob", amount_units=100, expires_at_ms=2_000)
        )
        clock.now_ms = 5_000

        with pytest.raises(ReservationClosed, match="reservation_expired") as caught:
            client("alice").apply(PostEvent(event_id="p1", reservation_id="r1"))
        assert (EventStatus.RESERVATION_EXPIRED, 1_000) == (
            caught.value.details["status"],
            client("alice").balance().balance_units,
        )

    @pytest.mark.parametrize("finish", [PostEvent, VoidEvent])
    def test_finishing_a_closed_reservation_is_reservation_closed_every_time(self, mesh, finish):
        """A post or void of a posted reservation is RESERVATION_CLOSED, and so is its replay:
        the outcome is recorded under the event id, nothing moves."""
        client, _ = mesh
        client("alice").apply(
            ReserveEvent(event_id="r1", creator="bob", amount_units=100, expires_at_ms=60_000)
        )
        client("svc").apply(PostEvent(event_id="p1", reservation_id="r1"))
        late = finish(event_id="late-1", reservation_id="r1")

        codes = []
        for _ in range(2):
            with pytest.raises(ReservationClosed) as caught:
                client("alice").apply(late)
            codes.append((caught.value.code, caught.value.details["status"]))

        assert [("RESERVATION_CLOSED", EventStatus.RESERVATION_NOT_PENDING)] * 2 == codes
        assert (900, 81) == (
            client("alice").balance().balance_units,
            client("bob").balance().balance_units,
        )

    @pytest.mark.parametrize("finish", [PostEvent, VoidEvent])
    def test_finishing_an_unknown_reservation_is_reservation_not_found(self, mesh, finish):
        """The ledger answers a post or void naming no reservation with RESERVATION_NOT_FOUND
        in the event's result, and records nothing under its id."""
        client, _ = mesh
        event = finish(event_id="f1", reservation_id="never-made")

        (result,) = client("svc").send_events([event])

        assert ("RESERVATION_NOT_FOUND", "never-made", None) == (
            result.error.code,
            result.error.details["reservation_id"],
            client("op").status("f1"),
        )
        with pytest.raises(ReservationNotFound):
            client("alice").apply(event)


class TestSettlementStatus:
    def test_payer_creator_validator_and_operator_read_a_settlements_status(self, mesh):
        """Each party of a settlement, and an operator, sees its recorded outcome."""
        client, _ = mesh
        client("alice").apply(
            SettleEvent(event_id="s1", creator="bob", validators=("v1",), amount_units=10)
        )

        seen = [client(who).status("s1") for who in ("alice", "bob", "v1", "op")]

        assert [EventStatus.APPLIED] * 4 == [result.status for result in seen]

    def test_a_stranger_gets_the_answer_of_an_unknown_id(self, mesh):
        """Mallory asking about Alice's settlement is told what any unknown id gets: nothing."""
        client, _ = mesh
        client("alice").apply(SettleEvent(event_id="s1", creator="bob", amount_units=10))

        assert (None, None) == (
            client("mallory").status("s1"),
            client("mallory").status("never-sent"),
        )

    def test_a_refused_payment_is_visible_to_its_parties_only(self, mesh):
        """Bob's settlement refused for funds reads INSUFFICIENT_FUNDS to Bob and Alice only."""
        client, _ = mesh
        with pytest.raises(InsufficientFunds):
            client("bob").apply(SettleEvent(event_id="s1", creator="alice", amount_units=50))

        assert [EventStatus.INSUFFICIENT_FUNDS, EventStatus.INSUFFICIENT_FUNDS, None] == [
            None if result is None else result.status
            for result in (client(who).status("s1") for who in ("bob", "alice", "mallory"))
        ]

    def test_the_service_that_posted_and_the_reservations_parties_read_the_post(self, mesh):
        """A post by a platform service is visible to that service and to payer and creator."""
        client, _ = mesh
        client("alice").apply(
            ReserveEvent(event_id="r1", creator="bob", amount_units=100, expires_at_ms=60_000)
        )
        client("svc").apply(PostEvent(event_id="p1", reservation_id="r1"))

        seen = [client(who).status("p1") for who in ("svc", "alice", "bob", "mallory")]

        assert [EventStatus.APPLIED] * 3 + [None] == [
            None if result is None else result.status for result in seen
        ]


class TestReservationLookup:
    def test_payer_and_service_read_the_reservation_terms(self, mesh):
        """The payer and a platform service both see who pays, whom it credits, and its state."""
        client, _ = mesh
        client("alice").apply(
            ReserveEvent(
                event_id="r1",
                creator="bob",
                validators=("v1",),
                amount_units=100,
                expires_at_ms=60_000,
            )
        )
        expected = ("alice", "bob", ("v1",), 100, "pending", 60_000)

        seen = [client(who).reservation("r1") for who in ("alice", "svc")]

        assert [expected, expected] == [
            (r.payer, r.creator, r.validators, r.amount_units, r.status, r.expires_at_ms)
            for r in seen
        ]

    def test_a_stranger_cannot_read_a_reservation(self, mesh):
        """Neither another agent nor an unauthenticated caller learns a reservation's terms."""
        client, _ = mesh
        client("alice").apply(
            ReserveEvent(event_id="r1", creator="bob", amount_units=100, expires_at_ms=60_000)
        )
        with pytest.raises(Unauthorized):
            client("mallory").reservation("r1")
        with pytest.raises(Unauthorized):
            client(None).reservation("r1")

    def test_unknown_reservation_is_reservation_not_found(self, mesh):
        """An id the ledger never held is RESERVATION_NOT_FOUND naming the id, for any caller
        allowed to ask; it says nothing about anyone's terms."""
        client, _ = mesh
        with pytest.raises(ReservationNotFound) as caught:
            client("svc").reservation("never-made")

        assert {"reservation_id": "never-made"} == caught.value.details

    def test_status_follows_post_and_deadline(self, mesh):
        """A posted reservation reads posted; one past its deadline reads expired, swept or not."""
        client, clock = mesh
        for rid in ("r1", "r2"):
            client("alice").apply(
                ReserveEvent(event_id=rid, creator="bob", amount_units=10, expires_at_ms=2_000)
            )
        client("svc").apply(PostEvent(event_id="p1", reservation_id="r1"))
        clock.now_ms = 2_000

        assert ("posted", "expired") == (
            client("svc").reservation("r1").status,
            client("svc").reservation("r2").status,
        )
