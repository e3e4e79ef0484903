"""Reply seals: only the trusted worker's key, for this client, request id and body, opens one."""

from __future__ import annotations

import pytest
import zmq
from hypothesis import given, settings
from hypothesis import strategies as st

from latentmas_mesh import codec
from latentmas_mesh.errors import InsufficientFunds, ServiceUnavailable, Unauthorized
from latentmas_mesh.protocol import ErrorBody
from latentmas_mesh.protocol.ledger import BalanceReply, BalanceRequest
from latentmas_mesh.settlement.ledger_client import reply_verifier
from latentmas_mesh.settlement.outbox import RETRYABLE_CODES
from latentmas_mesh.transport import (
    ReplySealer,
    ReplyVerifier,
    TransportSettings,
    UnverifiedReply,
    create_key_pair,
    is_sealed,
    public_key_of,
    trusted_keys,
)

BODY = [b"header", b"array-0", b""]


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    """Key pairs: the trusted `worker`, an `impostor` worker, the `client` and `other` client."""
    root = tmp_path_factory.mktemp("seal-keys")
    return {name: create_key_pair(root, name) for name in ("worker", "impostor", "client", "other")}


def identity(keys, name):
    return public_key_of(keys[name][0])


def sealed(keys, request_id="r-1", body=BODY, *, by="worker", to="client"):
    return ReplySealer(keys[by][1]).seal(identity(keys, to), request_id, body)


def verifier(keys, *, client="client", trusted=("worker",)):
    return ReplyVerifier(keys[client][1], [identity(keys, name) for name in trusted])


def reason_of(keys, frames, request_id="r-1", **options):
    with pytest.raises(UnverifiedReply) as refused:
        verifier(keys, **options).open(request_id, frames)
    return refused.value.details["reason"]


class TestSealAndOpen:
    def test_a_sealed_reply_opens_to_exactly_its_body(self, keys):
        """One trailing frame is added; opening it gives the frames back, bytes for bytes."""
        frames = sealed(keys)

        opened = verifier(keys).open("r-1", frames)

        assert (len(BODY) + 1, True) == (len(frames), is_sealed(frames))
        assert BODY == [bytes(frame) for frame in opened]

    def test_received_zmq_frames_and_memoryviews_seal_as_their_bytes(self, keys):
        """What is sealed is the bytes, whatever object carries them."""
        frames = sealed(keys, body=[memoryview(b"header"), zmq.Frame(b"array-0"), b""])
        received = [zmq.Frame(bytes(frame)) for frame in frames]

        opened = verifier(keys).open("r-1", received)

        assert BODY == [frame.bytes for frame in opened]

    def test_a_reply_without_a_seal_is_refused(self, keys):
        """Missing seal: refused, even though the body itself is fine."""
        assert "missing" == reason_of(keys, list(BODY))

    def test_a_seal_by_a_key_the_client_does_not_trust_is_refused(self, keys):
        """A valid seal, by the impostor's key: refused, and the key is named."""
        frames = sealed(keys, by="impostor")

        with pytest.raises(UnverifiedReply) as refused:
            verifier(keys).open("r-1", frames)

        assert ("untrusted_key", identity(keys, "impostor")) == (
            refused.value.details["reason"],
            refused.value.details["key"],
        )

    def test_a_reply_sealed_to_another_client_does_not_open(self, keys):
        """Sealed for `other`: the MAC key is not the one `client` shares with the worker."""
        assert "mismatch" == reason_of(keys, sealed(keys, to="other"))

    def test_a_tampered_body_frame_is_refused(self, keys):
        """One changed byte in the body breaks the seal."""
        frames = sealed(keys)
        frames[1] = b"array-1"

        assert "mismatch" == reason_of(keys, frames)

    def test_another_request_id_is_refused(self, keys):
        """A reply sealed for request r-1 is no answer to r-2 (no replay across requests)."""
        assert "mismatch" == reason_of(keys, sealed(keys), request_id="r-2")

    def test_moving_bytes_across_frame_boundaries_is_refused(self, keys):
        """Frames are length-prefixed inside the MAC: [ab, c] does not read as [a, bc]."""
        *_, seal = sealed(keys, body=[b"ab", b"c"])

        assert "mismatch" == reason_of(keys, [b"a", b"bc", seal])

    def test_a_dropped_frame_is_refused(self, keys):
        """The frame count is in the MAC: removing an empty trailing frame is noticed."""
        frames = sealed(keys)
        del frames[2]

        assert "mismatch" == reason_of(keys, frames)

    @settings(max_examples=60, deadline=None)
    @given(data=st.data())
    def test_any_flipped_byte_anywhere_is_refused(self, keys, data):
        """Flip one bit of any byte of any frame (the seal's included): never accepted."""
        frames = [bytearray(frame) for frame in sealed(keys)]
        index = data.draw(st.sampled_from([i for i, f in enumerate(frames) if f]))
        position = data.draw(st.integers(0, len(frames[index]) - 1))
        frames[index][position] ^= 1 << data.draw(st.integers(0, 7))

        with pytest.raises(UnverifiedReply):
            verifier(keys).open("r-1", [bytes(frame) for frame in frames])

    def test_nothing_is_sealed_for_a_client_without_a_key(self, keys):
        """No CURVE identity (None) or no key in it: the body goes out as it is."""
        sealer = ReplySealer(keys["worker"][1])

        replies = [sealer.seal(who, "r-1", BODY) for who in (None, "not-a-key", "~" * 40)]

        assert [BODY, BODY, BODY] == replies

    def test_the_sealer_keeps_a_bounded_number_of_peer_keys(self, keys):
        """With room for one peer, alternating clients still get valid seals."""
        sealer = ReplySealer(keys["worker"][1], peers_max=1)
        order = ["client", "other", "client"]

        frames = [sealer.seal(identity(keys, name), "r-1", BODY) for name in order]

        for name, reply in zip(order, frames, strict=True):
            assert BODY == verifier(keys, client=name).open("r-1", reply)


class TestKeys:
    def test_trusted_keys_are_the_public_key_files_of_a_directory(self, tmp_path):
        """`*.key` files only: a `.key_secret` beside them adds nothing."""
        public, _ = create_key_pair(tmp_path, "ledger-1")

        assert frozenset({public_key_of(public)}) == trusted_keys(tmp_path)

    @pytest.mark.parametrize("made", [False, True], ids=["missing", "empty"])
    def test_no_trusted_keys_is_unauthorized(self, tmp_path, made):
        """A missing or empty directory trusts nobody: refused, not an open door."""
        if made:
            (tmp_path / "ledgers").mkdir()

        with pytest.raises(Unauthorized):
            trusted_keys(tmp_path / "ledgers")

    def test_a_verifier_with_no_trusted_key_is_unauthorized(self, keys):
        with pytest.raises(Unauthorized):
            ReplyVerifier(keys["client"][1], [])

    def test_a_key_file_whose_public_key_is_not_its_secrets_is_unauthorized(self, keys, tmp_path):
        """A `.key_secret` edited to carry another public key is refused at start."""
        secret = keys["worker"][1].read_text()
        other = public_key_of(keys["other"][0])
        mixed = tmp_path / "mixed.key_secret"
        mixed.write_text(secret.replace(public_key_of(keys["worker"][1]), other))

        with pytest.raises(Unauthorized, match="does not belong"):
            ReplySealer(mixed)


class CannedTransport:
    """Answers every request with `frames`, as a Transport's request() would."""

    def __init__(self, frames):
        self.frames, self.settings = frames, TransportSettings()

    def request(self, service, body, *, timeout_ms=None, request_id=None):
        self.request_id = codec.request_id_of(body)
        return self.frames(self.request_id) if callable(self.frames) else self.frames


def error_frames(error):
    return codec.encode(ErrorBody.from_error(error), request_id="r")


class TestVerifiedCall:
    def call(self, keys, frames):
        strict = ReplyVerifier(
            keys["client"][1], [identity(keys, "worker")], unsealed_codes=RETRYABLE_CODES
        )
        return strict.call(CannedTransport(frames), "svc", BalanceRequest(), timeout_ms=None)

    def test_a_sealed_reply_decodes(self, keys):
        reply = BalanceReply(account="agent:x", balance_units=5, currency="credit")
        sealer = ReplySealer(keys["worker"][1])

        def answer(request_id):
            frames = codec.encode(reply, request_id=request_id)
            return sealer.seal(identity(keys, "client"), request_id, frames)

        assert reply == self.call(keys, answer).message

    def test_a_sealed_error_is_raised_as_itself(self, keys):
        sealer = ReplySealer(keys["worker"][1])

        def answer(request_id):
            frames = error_frames(InsufficientFunds("no"))
            return sealer.seal(identity(keys, "client"), request_id, frames)

        with pytest.raises(InsufficientFunds):
            self.call(keys, answer)

    def test_the_brokers_own_unsealed_not_answered_error_passes(self, keys):
        """SERVICE_UNAVAILABLE settles nothing (a dropped reply would do as much): raised."""
        with pytest.raises(ServiceUnavailable):
            self.call(keys, error_frames(ServiceUnavailable("queue full")))

    def test_an_unsealed_final_error_is_refused(self, keys):
        """INSUFFICIENT_FUNDS is a final answer: unsealed, it is an UnverifiedReply."""
        with pytest.raises(UnverifiedReply):
            self.call(keys, error_frames(InsufficientFunds("no")))

    def test_unsealed_garbage_is_refused(self, keys):
        with pytest.raises(UnverifiedReply):
            self.call(keys, [b"\xc1not msgpack"])


class TestLedgerClientVerifier:
    def test_a_plaintext_transport_has_no_verifier(self):
        """Without CURVE there are no keys: the SDK cannot verify, and says so by None."""
        assert reply_verifier(TransportSettings()) is None

    def test_curve_without_ledger_keys_is_unauthorized(self, keys):
        settings = TransportSettings(
            curve_secret_key_file=keys["client"][1], curve_server_key_file=keys["worker"][0]
        )

        with pytest.raises(Unauthorized, match="LATENTMAS_LEDGER_KEYS_DIR"):
            reply_verifier(settings)
