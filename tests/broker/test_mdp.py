"""MDP/0.2 framing: each RFC 18 command and majortomo's dialect parse to one typed event."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from latentmas_mesh import mdp
from latentmas_mesh.errors import ErrorCode


class TestClientRequests:
    def test_rfc18_request_parses_with_its_body_frames_untouched(self):
        """An RFC 18 REQUEST yields the service and the very body objects that came in."""
        body = (memoryview(b"header"), b"array")

        event = mdp.parse([b"MDPC02", b"\x01", b"echo", *body])

        assert mdp.ClientRequest(b"echo", body, mdp.Dialect.RFC18, False) == event
        assert body[0] is event.body[0]

    def test_majortomo_request_is_detected_by_its_delimiter_and_command(self):
        """majortomo's client sends '' MDPC02 0x02: the broker knows the dialect from that."""
        event = mdp.parse([b"", b"MDPC02", b"\x02", b"echo", b"x"])

        assert mdp.ClientRequest(b"echo", (b"x",), mdp.Dialect.MAJORTOMO, True) == event

    def test_request_without_body_is_malformed(self):
        """RFC 18: a REQUEST has 4 or more frames, so an empty body is refused."""
        with pytest.raises(mdp.MalformedFrame) as caught:
            mdp.parse([b"MDPC02", b"\x01", b"echo"])

        assert "short" == caught.value.reason

    def test_undelimited_0x02_from_a_client_is_malformed(self):
        """0x02 is PARTIAL in RFC 18; a client never sends it without majortomo's delimiter."""
        with pytest.raises(mdp.MalformedFrame) as caught:
            mdp.parse([b"MDPC02", b"\x02", b"echo", b"x"])

        assert "bad_command" == caught.value.reason

    def test_unprintable_service_name_is_malformed(self):
        """RFC 18 service names are printable strings."""
        with pytest.raises(mdp.MalformedFrame) as caught:
            mdp.parse([b"MDPC02", b"\x01", b"ec\x00ho", b"x"])

        assert "bad_service" == caught.value.reason

    def test_mmi_request_is_flagged(self):
        """Service names under mmi. address the broker itself."""
        event = mdp.parse([b"MDPC02", b"\x01", b"mmi.service", b"echo"])

        assert isinstance(event, mdp.ClientRequest)
        assert event.is_mmi


class TestWorkerCommands:
    @pytest.mark.parametrize("delimited", [False, True])
    def test_every_worker_command_parses_in_both_framings(self, delimited):
        """READY, PARTIAL, FINAL, HEARTBEAT and DISCONNECT parse with or without the delimiter."""
        lead = [b""] if delimited else []
        expected = [
            mdp.WorkerReady(b"svc", delimited),
            mdp.WorkerPartial(b"addr", (b"p",), delimited),
            mdp.WorkerFinal(b"addr", (b"f", b"g"), delimited),
            mdp.WorkerHeartbeat(delimited),
            mdp.WorkerDisconnect(delimited),
        ]
        frames = [
            [*lead, b"MDPW02", b"\x01", b"svc"],
            [*lead, b"MDPW02", b"\x03", b"addr", b"", b"p"],
            [*lead, b"MDPW02", b"\x04", b"addr", b"", b"f", b"g"],
            [*lead, b"MDPW02", b"\x05"],
            [*lead, b"MDPW02", b"\x06"],
        ]

        assert expected == [mdp.parse(f) for f in frames]

    def test_final_without_delimiter_after_address_is_malformed(self):
        """RFC 18: the client address frame MUST be followed by an empty frame."""
        with pytest.raises(mdp.MalformedFrame) as caught:
            mdp.parse([b"MDPW02", b"\x04", b"addr", b"x", b"body"])

        assert "bad_delimiter" == caught.value.reason

    def test_worker_request_command_sent_to_broker_is_malformed(self):
        """REQUEST (0x02) travels broker to worker only."""
        with pytest.raises(mdp.MalformedFrame) as caught:
            mdp.parse([b"MDPW02", b"\x02", b"addr", b"", b"x"])

        assert "bad_command" == caught.value.reason

    def test_oversized_service_name_is_refused_as_too_large(self):
        """A service name over 255 bytes is refused before it is copied."""
        with pytest.raises(mdp.MalformedFrame) as caught:
            mdp.parse([b"MDPW02", b"\x01", b"s" * 256])

        assert ErrorCode.PAYLOAD_TOO_LARGE == caught.value.code


class TestRoundTrips:
    @pytest.mark.parametrize("dialect", list(mdp.Dialect))
    def test_client_request_builder_round_trips(self, dialect):
        """What client_request builds, parse reads back in the same dialect."""
        event = mdp.parse(mdp.client_request(b"svc", [b"a", b"b"], dialect=dialect))

        assert mdp.ClientRequest(
            b"svc", (b"a", b"b"), dialect, dialect is mdp.Dialect.MAJORTOMO
        ) == (event)

    @pytest.mark.parametrize("dialect", list(mdp.Dialect))
    @pytest.mark.parametrize("final", [True, False])
    def test_client_reply_builder_round_trips(self, dialect, final):
        """A reply built for a dialect parses in that dialect; majortomo's carries no service."""
        frames = mdp.client_reply(b"svc", [b"r"], final=final, dialect=dialect)

        reply = mdp.parse_reply(frames, dialect)

        service = b"svc" if dialect is mdp.Dialect.RFC18 else None
        assert mdp.Reply(final, (b"r",), service) == reply

    @pytest.mark.parametrize("delimited", [False, True])
    def test_broker_to_worker_commands_round_trip(self, delimited):
        """REQUEST, HEARTBEAT and DISCONNECT built by the broker parse on the worker side."""
        frames = [
            mdp.broker_request(b"addr", [b"body"], delimited=delimited),
            mdp.heartbeat(delimited=delimited),
            mdp.disconnect(delimited=delimited),
        ]

        events = [mdp.parse_for_worker(f) for f in frames]

        assert [
            mdp.BrokerRequest(b"addr", (b"body",)),
            mdp.BrokerHeartbeat(),
            mdp.BrokerDisconnect(),
        ] == events

    def test_worker_reply_builder_round_trips(self):
        """A worker's FINAL parses on the broker side with the address returned unchanged."""
        event = mdp.parse(mdp.worker_reply(b"addr", [b"x"], final=True, delimited=True))

        assert mdp.WorkerFinal(b"addr", (b"x",), True) == event

    def test_majortomo_frames_match_its_source(self):
        """majortomo's client sends ['', MDPC02, 0x02, service, body...], so must our client."""
        assert [b"", b"MDPC02", b"\x02", b"svc", b"x"] == mdp.client_request(
            b"svc", [b"x"], dialect=mdp.Dialect.MAJORTOMO
        )


class TestClientAddress:
    def test_identity_round_trips_through_the_address_frame(self):
        """The broker packs routing id and identity; the worker unpacks both."""
        frame = mdp.pack_client_address(b"\x00\x01\x02\x03\x04", "rq:4Zc5w8N0l8f^@")

        assert mdp.ClientAddress(b"\x00\x01\x02\x03\x04", "rq:4Zc5w8N0l8f^@") == (
            mdp.unpack_client_address(frame)
        )

    def test_foreign_address_is_a_bare_routing_id(self):
        """An address from another broker (majortomo) carries no identity."""
        assert mdp.ClientAddress(b"\x00kx\x01\x02") == mdp.unpack_client_address(b"\x00kx\x01\x02")

    def test_no_identity_when_security_is_off(self):
        """Without CURVE the identity is None."""
        frame = mdp.pack_client_address(b"rid")

        assert mdp.ClientAddress(b"rid", None) == mdp.unpack_client_address(frame)


_frames = st.lists(
    st.one_of(
        st.sampled_from(
            [b"", b"MDPC02", b"MDPW02", b"mmi.service", b"svc", b"\x01", b"\x02", b"\x03", b"\x04"]
        ),
        st.binary(min_size=0, max_size=3).map(bytes),
        st.binary(max_size=300),
    ),
    max_size=8,
)

_mdp_like = st.tuples(
    st.sampled_from([b"MDPC02", b"MDPW02", b"", b"MDPW01"]),
    st.sampled_from([bytes([command]) for command in range(7)]),
    _frames,
).map(lambda parts: [parts[0], parts[1], *parts[2]])
"""Frames that start like an MDP command, so the parsers' recognised shapes are reached often."""


def _outcome(parser, frames) -> object:
    """The event, or the ErrorCode of the MalformedFrame; any other exception propagates."""
    try:
        return parser(frames)
    except mdp.MalformedFrame as error:
        return error.code


class TestFuzz:
    @settings(max_examples=600, deadline=None)
    @given(_frames)
    def test_only_malformed_frame_escapes_the_broker_parser(self, frames):
        """Any frames at all give an event or MalformedFrame, never another exception."""
        outcome = _outcome(mdp.parse, frames)

        assert outcome is not None

    @settings(max_examples=300, deadline=None)
    @given(_frames, st.sampled_from(list(mdp.Dialect)))
    def test_only_malformed_frame_escapes_the_worker_and_client_parsers(self, frames, dialect):
        """The worker-side and client-side parsers share the same guarantee."""
        outcomes = [
            _outcome(mdp.parse_for_worker, frames),
            _outcome(lambda f: mdp.parse_reply(f, dialect), frames),
        ]

        assert None not in outcomes

    @settings(max_examples=1000, deadline=None)
    @given(st.one_of(_frames, _mdp_like), st.sampled_from(list(mdp.Dialect)))
    def test_hot_paths_agree_with_the_general_parsers(self, frames, dialect):
        """Recognising REQUEST/FINAL first changes no outcome: same event or same error code."""
        pairs = [
            (_outcome(mdp.parse, frames), _outcome(mdp._parse_general, frames)),
            (
                _outcome(mdp.parse_for_worker, frames),
                _outcome(mdp._parse_for_worker_general, frames),
            ),
            (
                _outcome(lambda f: mdp.parse_reply(f, dialect), frames),
                _outcome(lambda f: mdp._parse_reply_general(f, dialect), frames),
            ),
        ]

        for hot, general in pairs:
            assert general == hot

    def test_command_frame_that_only_compares_equal_takes_the_general_path(self):
        """A non-byte memoryview equal to b'\x01' is no REQUEST: hot and general paths agree."""
        from array import array

        frames = [b"MDPC02", memoryview(array("H", [1])), b"svc", b"body"]

        assert _outcome(mdp._parse_general, frames) == _outcome(mdp.parse, frames)

    @settings(max_examples=300, deadline=None)
    @given(st.binary(max_size=600))
    def test_unpack_client_address_never_raises(self, frame):
        """A worker may receive any address frame; unpacking it never fails."""
        address = mdp.unpack_client_address(frame)

        assert isinstance(address.routing_id, bytes)


LIMIT = mdp.BODY_FRAMES_MAX
AROUND_THE_LIMIT = [1, LIMIT - 1, LIMIT, LIMIT + 1, LIMIT + 2]
LONGEST_ADDRESS = mdp.pack_client_address(b"\xff" * 255, "K" * 40)


def client_frames(body, dialect, delimited):
    frames = mdp.client_request(b"svc", body, dialect=dialect)
    return [b"", *frames] if delimited and dialect is mdp.Dialect.RFC18 else frames


class TestLimitsLeaveRoomForTheEnvelope:
    """Whatever the broker accepts, the next hop accepts after the envelope the broker adds;
    whatever it refuses for its size is refused as a `RefusedBody` that can still be answered."""

    @pytest.mark.parametrize("count", AROUND_THE_LIMIT)
    @pytest.mark.parametrize(
        ("dialect", "client_delimited"),
        [(mdp.Dialect.RFC18, False), (mdp.Dialect.RFC18, True), (mdp.Dialect.MAJORTOMO, True)],
    )
    @pytest.mark.parametrize("worker_delimited", [False, True])
    def test_a_request_the_broker_accepts_is_one_the_worker_accepts(
        self, count, dialect, client_delimited, worker_delimited
    ):
        body = [b"req-id", *[b"x"] * (count - 1)]
        frames = client_frames(body, dialect, client_delimited)

        if count > LIMIT:
            with pytest.raises(mdp.RefusedBody) as refused:
                mdp.parse(frames)
            assert (b"svc", (b"req-id",)) == (refused.value.event.service, refused.value.event.body)
            assert ErrorCode.PAYLOAD_TOO_LARGE == refused.value.code
            return
        event = mdp.parse(frames)
        handed = mdp.broker_request(LONGEST_ADDRESS, event.body, delimited=worker_delimited)
        received = mdp.parse_for_worker(handed)

        assert (LONGEST_ADDRESS, tuple(body)) == (received.client_address, received.body)

    @pytest.mark.parametrize("count", AROUND_THE_LIMIT)
    @pytest.mark.parametrize("dialect", list(mdp.Dialect))
    @pytest.mark.parametrize("worker_delimited", [False, True])
    def test_a_reply_the_broker_accepts_is_one_the_client_accepts(
        self, count, dialect, worker_delimited
    ):
        body = [b"reply", *[b"y"] * (count - 1)]
        frames = mdp.worker_reply(LONGEST_ADDRESS, body, delimited=worker_delimited)

        if count > LIMIT:
            with pytest.raises(mdp.RefusedBody) as refused:
                mdp.parse(frames)
            event = refused.value.event
            assert (LONGEST_ADDRESS, (b"reply",)) == (event.client_address, event.body)
            return
        event = mdp.parse(frames)
        sent = mdp.client_reply(b"svc", event.body, dialect=dialect, delimited=True)

        assert tuple(body) == mdp.parse_reply(sent, dialect).body

    @pytest.mark.parametrize("count", [LIMIT + 1, LIMIT + 2])
    def test_a_worker_refuses_an_over_long_request_in_a_form_it_can_answer(self, count):
        """A broker that is not ours may hand over more; the worker gets the id to answer with."""
        frames = mdp.broker_request(LONGEST_ADDRESS, [b"req-id", *[b"x"] * (count - 1)])

        with pytest.raises(mdp.RefusedBody) as refused:
            mdp.parse_for_worker(frames)

        assert (LONGEST_ADDRESS, (b"req-id",)) == (
            refused.value.event.client_address,
            refused.value.event.body,
        )

    @pytest.mark.parametrize("count", [LIMIT + 1, LIMIT + 2])
    def test_over_long_partials_and_replies_are_plain_malformed(self, count):
        """Nothing is owed to a PARTIAL, and a reply cannot be answered: dropped and counted."""
        partial = mdp.worker_reply(LONGEST_ADDRESS, [b"p"] * count, final=False)
        reply = mdp.client_reply(b"svc", [b"r"] * count)

        for parse, frames in ((mdp.parse, partial), (mdp.parse_reply, reply)):
            with pytest.raises(mdp.MalformedFrame) as error:
                parse(frames)
            assert not isinstance(error.value, mdp.RefusedBody)
