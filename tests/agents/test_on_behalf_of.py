"""On behalf of an agent: the header field that carries it, and the worker's one decision on
whom a request is for (a configured gateway's key may name an agent; nobody else may)."""

from __future__ import annotations

import msgpack
import pytest
from pydantic import ValidationError

from latentmas_mesh import codec
from latentmas_mesh.errors import InvalidRequest, Unauthorized
from latentmas_mesh.protocol.ledger import BalanceRequest
from latentmas_mesh.wire import replies
from latentmas_mesh.wire.header import HEADER_KEYS
from workers.base import RequestContext, acting_for
from workers.settings import WorkerSettings

# Fixed public keys (from zmq.curve_keypair), so that test ids are the same on every run.
AGENT = "ugWi&DYZ+RPo)H/x].n^4RNusVkh>.5byaN3v2Yx"
GATEWAY = "0tQ@(7X[E1E@t<apxteCRboSYufsj]e{}SUH0Xph"
STRANGER = "IS4R+8/D1ljc)w=^T?Wl8Z{]@LL{zf[n*v1lGDi?"


def header_of(frames):
    return msgpack.unpackb(frames[0], raw=False)


def with_header(**changes):
    """The frames of a balance request whose header has `changes` applied."""
    header = header_of(codec.encode(BalanceRequest(), request_id="r-1"))
    header.update(changes)
    return [msgpack.packb(header, use_bin_type=True)]


class TestHeaderField:
    def test_on_behalf_of_round_trips_after_the_request_id(self):
        frames = codec.encode(BalanceRequest(), request_id="r-1", on_behalf_of=AGENT)

        decoded = codec.decode(frames)

        assert ("r-1", AGENT) == (decoded.request_id, decoded.on_behalf_of)
        assert ["version", "type", "request_id", "on_behalf_of", "body", "arrays"] == list(
            header_of(frames)
        )

    def test_without_it_the_header_is_as_it_always_was(self):
        """Callers acting as themselves send the five keys of before: nothing changes for
        them, and they decode with on_behalf_of None."""
        frames = codec.encode(BalanceRequest(), request_id="r-1")

        assert list(HEADER_KEYS) == list(header_of(frames))
        assert None is codec.decode(frames).on_behalf_of

    @pytest.mark.parametrize(
        "bad",
        [None, 7, b"x" * 40, "", AGENT[:-1], AGENT + "A", AGENT[:-1] + " ", AGENT[:-1] + '"'],
        ids=["nil", "int", "bytes", "empty", "short", "long", "space", "quote"],
    )
    def test_a_header_naming_no_agent_id_is_refused(self, bad):
        """Present, on_behalf_of must be a 40-character Z85 key: anything else (nil included)
        is INVALID_REQUEST, and the request id is still peeked for the error reply."""
        frames = with_header(on_behalf_of=bad)

        with pytest.raises(InvalidRequest):
            codec.decode(frames)
        assert "r-1" == replies.request_id_of(frames, header_bytes_max=1 << 16)

    def test_other_extra_header_keys_are_still_refused(self):
        with pytest.raises(InvalidRequest):
            codec.decode(with_header(payer=AGENT))

    @pytest.mark.parametrize("bad", ["", "alice", AGENT + "x"])
    def test_the_encoder_refuses_to_write_a_bad_agent_id(self, bad):
        with pytest.raises(ValueError, match="on_behalf_of"):
            codec.encode(BalanceRequest(), request_id="r-1", on_behalf_of=bad)


def context(identity):
    return RequestContext("r-1", "svc", identity, b"address")


class TestActingFor:
    def test_a_gateway_key_acting_for_an_agent_makes_the_agent_the_identity(self):
        """identity becomes the agent; the gateway stays known as the peer (replies are sealed
        to it)."""
        acting = acting_for(context(GATEWAY), AGENT, frozenset({GATEWAY}))

        assert (AGENT, GATEWAY, GATEWAY) == (acting.identity, acting.gateway, acting.peer)

    def test_without_on_behalf_of_the_peer_is_itself(self):
        for identity in (GATEWAY, STRANGER, None):
            assert context(identity) == acting_for(context(identity), None, frozenset({GATEWAY}))
            assert identity == context(identity).peer

    @pytest.mark.parametrize(
        ("identity", "gateways"),
        [(STRANGER, {GATEWAY}), (None, {GATEWAY}), (GATEWAY, set()), (AGENT, {GATEWAY})],
        ids=["client-key", "no-curve", "gateway-not-configured", "agent-key"],
    )
    def test_anyone_but_a_configured_gateway_naming_an_agent_is_refused(self, identity, gateways):
        """A client key, an unauthenticated peer (no CURVE), or a gateway the worker was not
        told of: UNAUTHORIZED, never served as itself."""
        with pytest.raises(Unauthorized):
            acting_for(context(identity), STRANGER, frozenset(gateways))

    def test_a_request_already_on_behalf_of_an_agent_is_not_delegated_again(self):
        acting = acting_for(context(GATEWAY), AGENT, frozenset({GATEWAY, AGENT}))

        with pytest.raises(Unauthorized):
            acting_for(acting, STRANGER, frozenset({GATEWAY, AGENT}))


class TestGatewayKeysSetting:
    def test_workers_read_gateway_keys_from_the_environment(self, monkeypatch):
        monkeypatch.setenv("LATENTMAS_GATEWAY_KEYS", f'["{GATEWAY}"]')

        assert frozenset({GATEWAY}) == WorkerSettings().gateway_keys

    def test_a_key_that_is_not_a_z85_public_key_stops_the_worker(self, monkeypatch):
        """A typo would refuse every gateway call silently: it fails at start instead."""
        monkeypatch.setenv("LATENTMAS_GATEWAY_KEYS", '["gateway.key"]')

        with pytest.raises(ValidationError, match="gateway keys"):
            WorkerSettings()
