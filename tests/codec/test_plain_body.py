"""Bodies of array-free headers take the copy-free walk, which refuses what the full walk does."""

from __future__ import annotations

import struct
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from latentmas_mesh import codec
from latentmas_mesh.errors import ErrorCode, InvalidRequest, ProtocolError
from latentmas_mesh.protocol.ledger import LedgerEventsRequest, SettleEvent, StatementRequest

SHALLOW = codec.CodecLimits(depth_max=3)


def nested(depth: int) -> object:
    node: object = 1
    for _ in range(depth):
        node = [node]
    return node


def outcome(walk: Any, body: dict[str, Any], limits: codec.CodecLimits) -> str | None:
    """None if `walk` accepts the body, else the name of the error it raises."""
    try:
        walk(body, limits)
    except ProtocolError as error:
        return type(error).__name__
    return None


def full_walk(body: dict[str, Any], limits: codec.CodecLimits) -> object:
    return codec._resolve(body, [], [], 0, limits)


def unpacked(value: object) -> dict[str, Any]:
    """`{"x": value}` as the decoder's unpacker reads it (array references as placeholders)."""
    packed = msgpack.packb({"x": value}, use_bin_type=True)
    body = codec._unpack_header(memoryview(packed), codec.DEFAULT_LIMITS)
    assert isinstance(body, dict)
    return body


def body_frames(type_name: str, body: object) -> list[bytes]:
    header = {"version": 1, "type": type_name, "request_id": "r", "body": body, "arrays": []}
    return [msgpack.packb(header, use_bin_type=True)]


leaves = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=4)
    | st.binary(max_size=4)
    | st.builds(msgpack.ExtType, st.just(codec.ARRAY_REF_EXT), st.just(struct.pack(">I", 0)))
    | st.builds(msgpack.Timestamp, st.integers(0, 10))
)
values = st.recursive(
    leaves,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=3) | st.binary(max_size=2), inner, max_size=4)
    ),
    max_leaves=24,
)


class TestPlainBody:
    @settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(value=values, shallow=st.booleans())
    def test_copy_free_walk_accepts_and_refuses_exactly_what_the_full_walk_does(
        self, value, shallow
    ):
        """For any unpacked body, both walks agree: both accept it, or both raise InvalidRequest."""
        limits = SHALLOW if shallow else codec.DEFAULT_LIMITS
        body = unpacked(value)

        expected = outcome(full_walk, body, limits)
        actual = outcome(codec._check_plain, body, limits)

        assert expected == actual

    @pytest.mark.parametrize("depth_max", [1, 3, 32])
    def test_depth_limit_is_exact(self, depth_max):
        """A leaf at depth `depth_max` passes and one level more is refused, as in the full walk."""
        limits = codec.CodecLimits(depth_max=depth_max)
        deepest = {"x": nested(depth_max - 1)}  # body 0, "x" 1, lists 1..depth_max-1, leaf max
        too_deep = {"x": nested(depth_max)}

        results = [
            outcome(walk, body, limits)
            for walk in (full_walk, codec._check_plain)
            for body in (deepest, too_deep)
        ]

        assert [None, "InvalidRequest", None, "InvalidRequest"] == results

    @pytest.mark.parametrize(
        "bad",
        [
            msgpack.Timestamp(0),
            msgpack.ExtType(codec.ARRAY_REF_EXT, struct.pack(">I", 0)),
            {b"bytes-key": 1},
            nested(40),
        ],
        ids=["timestamp", "array reference without arrays", "bytes key", "nested 40 deep"],
    )
    def test_array_free_message_with_a_hostile_body_is_invalid(self, bad):
        """Through decode, an array-free message carrying a forbidden body value is refused."""
        frames = body_frames("ledger.statement_request", {"account": bad})

        with pytest.raises(InvalidRequest) as raised:
            codec.decode(frames)

        assert ErrorCode.INVALID_REQUEST == raised.value.code

    def test_array_free_messages_round_trip(self):
        """A ledger batch and a query decode back equal to what was encoded."""
        batch = LedgerEventsRequest(
            events=tuple(
                SettleEvent(event_id=f"e{i}", creator="c", validators=("v",), amount_units=1 + i)
                for i in range(50)
            )
        )
        query = StatementRequest(account="agent:a", after_entry_id=3, limit=7)

        decoded = [codec.decode(codec.encode(m, request_id="r")).message for m in (batch, query)]

        assert [batch, query] == decoded
