"""Hostile frames get the exact typed error, and nothing but a ProtocolError ever escapes decode."""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from latentmas_mesh import codec
from latentmas_mesh.errors import ErrorCode, InvalidRequest, ProtocolError
from tests.codec.hostile import (
    CORPUS,
    Case,
    bool_mask_frames,
    poisoned,
    set_in,
    valid_frames,
    with_header,
)

PEER_ERRORS = {ErrorCode.INVALID_REQUEST, ErrorCode.PAYLOAD_TOO_LARGE}


def decode_error(
    frames: Any, limits: codec.CodecLimits = codec.DEFAULT_LIMITS, *, check_finite: bool = True
) -> ProtocolError:
    """The ProtocolError decode raises for `frames`; fails the test if it returns or raises else."""
    with pytest.raises(ProtocolError) as raised:
        codec.decode(frames, limits=limits, check_finite=check_finite)
    return raised.value


class TestHostileCorpus:
    @pytest.mark.parametrize("case", CORPUS, ids=lambda case: case.name)
    def test_hostile_input_gets_its_exact_error_code(self, case: Case):
        """Each corpus entry is refused with the code written next to it."""
        error = decode_error(case.build(), case.limits)

        assert case.code == error.code

    @pytest.mark.parametrize("case", CORPUS, ids=lambda case: case.name)
    def test_request_id_of_never_raises_on_hostile_input(self, case: Case):
        """The best-effort request id is a str or None for every hostile input."""
        found = codec.request_id_of(case.build())

        assert found is None or isinstance(found, str)

    def test_corpus_baseline_decodes(self):
        """The valid message the corpus mutates decodes, so each refusal is due to its mutation."""
        decoded = codec.decode(valid_frames())

        assert "req-hostile" == decoded.request_id

    def test_schema_error_details_name_the_field(self):
        """A pydantic failure is summarised in details with the failing field's location."""
        error = decode_error(with_header(set_in(["body", "source_model"], 42)))

        assert ["source_model"] == error.details["errors"][0]["loc"]

    def test_unknown_type_details_do_not_echo_huge_input(self):
        """An error message stays short even when the peer sent a long unknown type name."""
        error = decode_error(with_header(set_in(["type"], "x" * 100_000)))

        assert (ErrorCode.INVALID_REQUEST, True) == (error.code, len(error.message) < 300)

    def test_bool_frame_of_zeros_and_ones_decodes(self):
        """The baseline of the bool-byte cases: bytes 0 and 1 are a valid bool mask."""
        decoded = codec.decode(bool_mask_frames(1))

        assert [[True, True, False]] == decoded.message.attention_mask.tolist()

    def test_nan_is_accepted_when_the_check_is_off(self):
        """check_finite=False lets non-finite values through (for messages that allow them)."""
        decoded = codec.decode(poisoned("float16", np.nan), check_finite=False)

        assert bool(np.isnan(decoded.message.keys).any())

    def test_request_id_of_reads_a_header_within_the_callers_limits(self):
        """A header over the default bound but within the caller's is still read for its id."""
        frames = with_header(set_in(["body", "metadata", "context_description"], "d" * 300_000))
        limits = codec.CodecLimits(header_bytes_max=1 << 20)

        assert (None, "req-hostile") == (
            codec.request_id_of(frames),
            codec.request_id_of(frames, limits=limits),
        )

    def test_request_id_of_reads_an_otherwise_invalid_message(self):
        """An error reply can be addressed even when the body fails validation."""
        frames = with_header(set_in(["body", "source_model"], 42))

        assert "req-hostile" == codec.request_id_of(frames)


frame_bytes = st.binary(max_size=256)


def peer_error_code(frames: list[bytes]) -> ErrorCode | None:
    """The code decode raises for `frames`, or None when they decode; other exceptions escape."""
    try:
        codec.decode(frames)
    except ProtocolError as error:
        return error.code
    return None


class TestFuzz:
    @settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(frames=st.lists(frame_bytes, max_size=6))
    def test_arbitrary_frames_raise_only_peer_errors(self, frames):
        """Random byte frames are refused as INVALID_REQUEST or PAYLOAD_TOO_LARGE, never a crash."""
        assert peer_error_code(frames) in PEER_ERRORS | {None}
        assert codec.request_id_of(frames) is None

    @settings(max_examples=300, deadline=None)
    @given(data=st.data())
    def test_mutated_valid_header_raises_only_peer_errors(self, data):
        """Flipping, cutting or inserting header bytes of a valid message never escapes typing."""
        frames = valid_frames()
        header = bytearray(frames[0])
        for _ in range(data.draw(st.integers(1, 4))):
            position = data.draw(st.integers(0, len(header) - 1))
            action = data.draw(st.sampled_from(["flip", "cut", "insert"]))
            if action == "flip":
                header[position] ^= data.draw(st.integers(1, 255))
            elif action == "cut":
                del header[position:]
                if not header:
                    header.append(0xC1)
            else:
                header[position:position] = data.draw(st.binary(min_size=1, max_size=8))
        assert peer_error_code([bytes(header), *frames[1:]]) in PEER_ERRORS | {None}

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        value=st.recursive(
            st.none()
            | st.booleans()
            | st.integers(-(2**64), 2**64 - 1)
            | st.floats()
            | st.text(max_size=8)
            | st.binary(max_size=8),
            lambda inner: (
                st.lists(inner, max_size=4)
                | st.dictionaries(st.text(max_size=4), inner, max_size=4)
            ),
            max_leaves=20,
        ),
        path=st.sampled_from(
            [
                ["body", "keys"],
                ["body", "metadata"],
                ["body", "metadata", "sequence_length"],
                ["body", "attention_mask"],
                ["arrays", 0],
                ["arrays", 0, "shape"],
                ["arrays", 1, "dtype"],
                ["body"],
                ["type"],
                ["version"],
            ]
        ),
    )
    def test_structured_header_fuzz_raises_only_peer_errors(self, value, path):
        """Any msgpack value planted anywhere in a valid header is refused with a peer error."""
        try:
            frames = with_header(set_in(path, value))
        except (OverflowError, ValueError, TypeError):
            return  # msgpack cannot pack the value (e.g. an int beyond 64 bits): not a message
        assert peer_error_code(frames) in PEER_ERRORS | {None}

    def test_unexpected_failure_is_reported_as_internal_not_raw(self, monkeypatch):
        """If a bug raises inside decode, the caller still receives a ProtocolError (INTERNAL)."""

        def broken(*args, **kwargs):
            raise KeyError("bug")

        monkeypatch.setattr(codec, "_read_header", broken)

        error = decode_error(valid_frames())

        assert ErrorCode.INTERNAL == error.code


def test_msgpack_int_keys_are_refused_by_the_unpacker():
    """strict_map_key: a map keyed by ints never reaches the body walker."""
    with pytest.raises(InvalidRequest):
        codec.decode([msgpack.packb({"version": 1, 2: 3})])


def test_limits_follow_the_process_settings():
    """CodecLimits.from_settings takes the byte bounds from MeshSettings (LATENTMAS_* env)."""
    from latentmas_mesh.settings import MeshSettings

    limits = codec.CodecLimits.from_settings(MeshSettings(message_bytes_max=100), ndim_max=4)

    with pytest.raises(ProtocolError) as raised:
        codec.decode(valid_frames(), limits=limits)

    assert (ErrorCode.PAYLOAD_TOO_LARGE, 4) == (raised.value.code, limits.ndim_max)
