"""The broker's error replies, built without pydantic, are what the codec writes and reads."""

from __future__ import annotations

import msgpack
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from broker.replies import UNKNOWN_REQUEST_ID, Replies
from latentmas_mesh import codec
from latentmas_mesh.errors import ERROR_CLASSES, ErrorCode
from latentmas_mesh.protocol import ErrorBody, type_name_of
from latentmas_mesh.protocol.errors import ERROR_MESSAGE_CHARS_MAX
from latentmas_mesh.wire import replies
from latentmas_mesh.wire.header import HEADER_KEYS

HEADER_BYTES_MAX = codec.DEFAULT_LIMITS.header_bytes_max


def request_body(request_id: str) -> list[bytes]:
    """A request as a client sends it: a registered message with `request_id` in its header."""
    message = ErrorBody.from_error(ERROR_CLASSES[ErrorCode.TIMEOUT]("x"))
    return [bytes(frame) for frame in codec.encode(message, request_id=request_id)]


class TestErrorReply:
    @pytest.mark.parametrize("code", list(ErrorCode))
    def test_decodes_to_the_error_body_of_its_code(self, code: ErrorCode):
        """codec.decode reads each code's reply as ErrorBody.from_error, with the request's id."""
        frames = replies.error_reply(code, "the broker says no", "req-7")

        decoded = codec.decode(frames)

        expected = ErrorBody.from_error(ERROR_CLASSES[code]("the broker says no"))
        assert ("req-7", expected) == (decoded.request_id, decoded.message)

    @pytest.mark.parametrize("code", list(ErrorCode))
    def test_bytes_are_the_codecs_own(self, code: ErrorCode):
        """The frames equal codec.encode's, byte for byte, so no reader can tell them apart."""
        error = ERROR_CLASSES[code]("queue full")

        expected = codec.encode(ErrorBody.from_error(error), request_id="req-8")

        assert [bytes(f) for f in expected] == replies.error_reply(code, "queue full", "req-8")

    def test_a_long_message_is_cut_as_from_error_cuts_it(self):
        """An over-long message is shortened to the schema's bound, never refused by the reader."""
        message = "m" * (ERROR_MESSAGE_CHARS_MAX + 10)

        decoded = codec.decode(replies.error_reply(ErrorCode.INTERNAL, message, "req-9"))

        assert ErrorBody.from_error(ERROR_CLASSES[ErrorCode.INTERNAL](message)) == decoded.message

    def test_constants_agree_with_the_schemas(self):
        """The names wire.replies writes without pydantic are the ones the protocol registers."""
        assert (type_name_of(ErrorBody), ERROR_MESSAGE_CHARS_MAX) == (
            replies.ERROR_TYPE_NAME,
            replies.ERROR_MESSAGE_CHARS_MAX,
        )

    def test_header_keys_are_written_in_order(self):
        """The header map's keys come in the order wire.header documents."""
        header = msgpack.unpackb(replies.error_reply(ErrorCode.TIMEOUT, "t", "r")[0])

        assert HEADER_KEYS == tuple(header)

    @pytest.mark.parametrize("request_id", ["", "r" * 129])
    def test_a_request_id_the_codec_would_refuse_is_a_bug(self, request_id: str):
        """The caller passes a valid id (or UNKNOWN_REQUEST_ID); anything else raises at once."""
        with pytest.raises(ValueError, match="request_id"):
            replies.error_reply(ErrorCode.TIMEOUT, "t", request_id)


class TestBrokerReplies:
    def test_reply_carries_the_request_id(self):
        """The broker's reply to a codec request is addressed by that request's id."""
        body = tuple(request_body("req-42"))

        decoded = codec.decode(Replies(HEADER_BYTES_MAX).error_reply(ErrorCode.TIMEOUT, "t", body))

        assert "req-42" == decoded.request_id

    def test_raw_request_is_answered_as_unknown(self):
        """A request without a codec header still gets a decodable reply."""
        frames = Replies(HEADER_BYTES_MAX).error_reply(ErrorCode.TIMEOUT, "t", (b"raw",))

        assert UNKNOWN_REQUEST_ID == codec.decode(frames).request_id

    def test_peek_honours_the_header_bound(self):
        """A header over the broker's bound is not read, as its decoder would not read it."""
        body = tuple(request_body("req-big"))
        size = len(body[0])

        assert (None, "req-big") == (
            Replies(size - 1).request_id_of(body),
            Replies(size).request_id_of(body),
        )


def frame_like() -> st.SearchStrategy[object]:
    """Byte frames, msgpack maps with odd request ids, and things that are not frames at all."""
    request_ids = st.one_of(
        st.none(),
        st.integers(-(2**63), 2**64 - 1),
        st.text(max_size=200),
        st.binary(max_size=8),
        st.lists(st.text()),
    )
    headers = st.dictionaries(
        st.sampled_from([*HEADER_KEYS, "other"]), request_ids, max_size=6
    ).map(msgpack.packb)
    return st.one_of(
        st.binary(max_size=256),
        headers,
        headers.map(lambda packed: packed[: len(packed) // 2]),
        headers.map(zmq.Frame),
        headers.map(memoryview),
        st.integers(),
        st.text(max_size=16),
        st.none(),
    )


class TestRequestIdOf:
    @settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        frames=st.one_of(
            st.lists(frame_like(), max_size=4),
            st.lists(frame_like(), max_size=4).map(tuple),
            frame_like(),
        ),
        header_bytes_max=st.integers(min_value=0, max_value=1 << 20),
    )
    def test_never_raises_on_garbage(self, frames: object, header_bytes_max: int):
        """Anything at all gives a str of 1..128 characters or None, never an exception."""
        found = replies.request_id_of(frames, header_bytes_max=header_bytes_max)

        assert found is None or (isinstance(found, str) and 0 < len(found) <= 128)

    def test_reads_a_zero_copy_frame(self):
        """A body as the broker receives it (zmq.Frame) is read without copying."""
        frames = [zmq.Frame(request_body("req-frame")[0])]

        assert "req-frame" == replies.request_id_of(frames, header_bytes_max=HEADER_BYTES_MAX)

    def test_codec_peek_is_the_wire_peek(self):
        """codec.request_id_of reads what wire.replies reads, within the codec's limits."""
        frames = request_body("req-same")

        found = (codec.request_id_of(frames), replies.request_id_of(frames, header_bytes_max=1))

        assert ("req-same", None) == found
