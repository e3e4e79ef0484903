"""The gateway's pure edges: statuses of error codes, the binary body form, bounded bodies."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from latentmas_mesh import codec
from latentmas_mesh.errors import (
    ERROR_CLASSES,
    ErrorCode,
    InvalidRequest,
    PayloadTooLarge,
    Unauthorized,
)
from latentmas_mesh.gateway.body import read_limited
from latentmas_mesh.gateway.frames import body_bytes, join_frames, split_frames
from latentmas_mesh.gateway.status import HTTP_STATUS, error_body, status_of
from latentmas_mesh.protocol import KVCache


class TestStatus:
    def test_every_code_has_a_status_and_only_retryable_ones_are_5xx(self):
        """A client can retry every 5xx with the same request id; nothing else is a 5xx."""
        assert set(ErrorCode) == set(HTTP_STATUS)
        server_side = {code for code, status in HTTP_STATUS.items() if status >= 500}
        assert {503, 504} >= {HTTP_STATUS[code] for code in server_side}
        assert {ErrorCode.SERVICE_UNAVAILABLE, ErrorCode.INTERNAL, ErrorCode.TIMEOUT} == server_side

    def test_unauthorized_is_401_without_credentials_and_403_with_them(self):
        error = Unauthorized("no")

        assert (401, 403) == (status_of(error, authenticated=False), status_of(error))

    @pytest.mark.parametrize("code", list(ErrorCode))
    def test_the_error_body_carries_code_message_resolution_details(self, code):
        body = error_body(ERROR_CLASSES[code]("what went wrong", details={"n": 1}))

        assert {"code", "message", "resolution", "details"} == set(body)
        assert (code.value, "what went wrong", {"n": 1}) == (
            body["code"],
            body["message"],
            body["details"],
        )


def kv_frames():
    keys = np.arange(2 * 2 * 3 * 4, dtype=np.float32).reshape(2, 2, 3, 4)
    cache = KVCache(
        source_model="gpt-4",
        keys=keys,
        values=keys + 1,
        metadata={
            "sequence_length": 3,
            "context_description": "x",
            "token_count": 3,
            "generated_at": "2026-12-03T00:00:00Z",
        },
    )
    return codec.encode(cache, request_id="r-1")


class TestFrames:
    def test_the_binary_form_round_trips_the_codec_frames_without_copies(self):
        frames = kv_frames()
        body = b"".join(bytes(piece) for piece in join_frames(frames))

        split = split_frames(body)
        decoded = codec.decode(split)

        assert len(body) == body_bytes(frames)
        assert [bytes(f) for f in frames] == [bytes(f) for f in split]
        assert all(view.obj is memoryview(body).obj or view.obj is body for view in split)
        assert "r-1" == decoded.request_id
        np.testing.assert_array_equal(decoded.message.values, decoded.message.keys + 1)

    @pytest.mark.parametrize(
        "body",
        [b"", b"\x05\x00\x00", (10).to_bytes(8, "little") + b"short"],
        ids=["empty", "cut length", "frame past the end"],
    )
    def test_malformed_bodies_are_invalid_requests(self, body):
        with pytest.raises(InvalidRequest):
            split_frames(body)

    def test_too_many_frames_is_too_large(self):
        body = b"".join(bytes(p) for p in join_frames([b"x"] * 5))

        with pytest.raises(PayloadTooLarge):
            split_frames(body, frames_max=4)


async def chunks_of(parts, consumed):
    for part in parts:
        consumed.append(part)
        yield part


class TestBoundedBody:
    def test_a_declared_length_over_the_limit_is_refused_before_reading(self):
        consumed = []

        with pytest.raises(PayloadTooLarge):
            asyncio.run(read_limited({"content-length": "11"}, chunks_of([b"x"], consumed), 10))
        assert [] == consumed

    def test_an_undeclared_body_is_refused_at_the_chunk_that_passes_the_limit(self):
        consumed = []

        with pytest.raises(PayloadTooLarge):
            asyncio.run(read_limited({}, chunks_of([b"x" * 6, b"x" * 6, b"x" * 6], consumed), 10))
        assert 2 == len(consumed)

    def test_a_body_within_the_limit_is_read_whole(self):
        body = asyncio.run(read_limited({"content-length": "4"}, chunks_of([b"ab", b"cd"], []), 4))

        assert b"abcd" == body

    @pytest.mark.parametrize("chunks", [[b"ab"], [b"ab", b"cde"]], ids=["short", "long"])
    def test_a_body_that_is_not_its_declared_length_is_invalid(self, chunks):
        with pytest.raises(InvalidRequest, match="Content-Length"):
            asyncio.run(read_limited({"content-length": "4"}, chunks_of(chunks, []), 10))

    def test_a_garbled_length_is_invalid(self):
        with pytest.raises(InvalidRequest):
            asyncio.run(read_limited({"content-length": "4x"}, chunks_of([], []), 4))
