"""The SDK without a mesh: what each call sends, how replies are checked, inputs and identity."""

from __future__ import annotations

import socket
import time

import numpy as np
import pytest

from latentmas_mesh.client import MeshKeys, calls
from latentmas_mesh.client._connection import acting_agent, transport_settings
from latentmas_mesh.errors import InvalidRequest, QualityBelowThreshold, Timeout, Unauthorized
from latentmas_mesh.protocol.align import AlignKVCacheResponse, ExchangeMemoryResponse
from latentmas_mesh.protocol.quality import AlignmentQuality
from latentmas_mesh.protocol.registry import ModelsReply
from latentmas_mesh.transport import create_key_pair, public_key_of
from tests.client.conftest import open_client
from tests.workers_align.conftest import GEMMA, SMOL, kv_cache

POOR = AlignmentQuality(
    cosine_similarity=0.5, euclidean_distance=0.9, information_retention=0.5, confidence=0.4
)


class TestWhatIsSent:
    def test_align_vector_is_a_v1_request_and_takes_plain_numbers(self):
        """The v1 call travels in a LatentMAS/1.0 envelope; a list becomes a float32 vector."""
        call = calls.align_vector([0.5, 1.5], "gpt-4", "bert", reservation_id=None)

        assert ("latentmas.align", "LatentMAS/1.0") == (call.service, call.message.protocol)
        assert np.float32 == call.message.vector.dtype

    def test_min_quality_and_version_travel_in_the_request(self, rng):
        """align_kv_cache's keywords are the request's fields (LatentMAS/2.0 envelope)."""
        call = calls.align_kv_cache(
            kv_cache(SMOL, rng), SMOL, GEMMA, w_matrix_version="1.2.0", min_quality=0.9,
            reservation_id="res-1",
        )  # fmt: skip

        assert ("LatentMAS/2.0", "1.2.0", 0.9, "res-1") == (
            call.message.protocol, call.message.w_matrix_version, call.message.min_quality,
            call.message.reservation_id,
        )  # fmt: skip

    def test_bad_arguments_are_invalid_requests_before_sending(self, rng):
        """A min_quality outside 0..1 is refused by the schema, typed, before any socket."""
        with pytest.raises(InvalidRequest):
            calls.align_kv_cache(
                kv_cache(SMOL, rng), SMOL, GEMMA, w_matrix_version=None, min_quality=1.5,
                reservation_id=None,
            )  # fmt: skip


class TestRepliesAreChecked:
    def test_a_reply_below_min_quality_is_refused_by_the_client_too(self, rng):
        """Had a worker ignored min_quality, the SDK would still refuse its cache, with the
        figures: an aligned cache is never silently below what was asked."""
        cache = kv_cache(SMOL, rng)
        call = calls.exchange_memory(
            cache, SMOL, GEMMA, w_matrix_version=None, min_quality=0.9, reservation_id=None
        )

        with pytest.raises(QualityBelowThreshold) as raised:
            call.read(ExchangeMemoryResponse(kv_aligned=cache, quality=POOR))

        assert (0.9, 0.5) == (
            raised.value.details["min_quality"],
            raised.value.details["measured"]["information_retention"],
        )

    def test_a_reply_of_another_type_is_refused(self, rng):
        """A service answering the wrong message is an error, never a result."""
        call = calls.align_kv_cache(
            kv_cache(SMOL, rng), SMOL, GEMMA, w_matrix_version=None, min_quality=None,
            reservation_id=None,
        )  # fmt: skip

        with pytest.raises(InvalidRequest, match="expected AlignKVCacheResponse"):
            call.read(ModelsReply(models=(), next_offset=None))

    def test_a_registry_page_that_does_not_move_forward_is_refused(self):
        """A next_offset not past the page's own offset would loop: refused."""
        call = calls.models_page(None, offset=64)

        with pytest.raises(InvalidRequest):
            call.read(ModelsReply(models=(), next_offset=64))

    def test_a_registry_runs_out_of_pages_at_the_bound(self):
        """models() reads at most MODEL_PAGES_MAX pages."""
        page = calls.ModelsPage(models=(), next=calls.models_page(None, offset=1))

        with pytest.raises(InvalidRequest):
            calls.following(page, calls.MODEL_PAGES_MAX)
        assert page.next is calls.following(page, calls.MODEL_PAGES_MAX - 1)

    def test_a_served_reply_comes_back_as_is(self, rng):
        """At or above min_quality the reply is the result, untouched."""
        cache = kv_cache(GEMMA, rng)
        call = calls.align_kv_cache(
            kv_cache(SMOL, rng), SMOL, GEMMA, w_matrix_version=None, min_quality=0.5,
            reservation_id=None,
        )  # fmt: skip
        reply = AlignKVCacheResponse(aligned_kv_cache=cache, alignment_quality=POOR)

        assert reply is call.read(reply)


class TestCacheInputs:
    def test_a_cache_naming_another_model_is_refused(self, rng):
        """A KVCache of gemma-3 passed as smollm2's is the caller's mistake, not relabelled."""
        with pytest.raises(InvalidRequest, match="source_model"):
            calls.align_kv_cache(
                kv_cache(GEMMA, rng), SMOL, GEMMA, w_matrix_version=None, min_quality=None,
                reservation_id=None,
            )  # fmt: skip

    def test_a_pair_of_the_wrong_rank_and_other_objects_are_refused(self, rng):
        """Keys must be [layers, kv_heads, seq, head_dim]; a dict is no cache at all."""
        flat = rng.standard_normal((5, 64)).astype(np.float32)
        for given in ((flat, flat), {"keys": flat}):
            with pytest.raises(InvalidRequest):
                calls.align_kv_cache(
                    given, SMOL, GEMMA, w_matrix_version=None, min_quality=None,
                    reservation_id=None,
                )  # fmt: skip

    def test_a_pair_becomes_a_cache_without_a_copy(self, rng):
        """The pair's arrays are the message's arrays; seq comes from their third axis."""
        cache = kv_cache(SMOL, rng, seq=7)

        call = calls.align_kv_cache(
            (cache.keys, cache.values), SMOL, GEMMA, w_matrix_version=None, min_quality=None,
            reservation_id=None,
        )  # fmt: skip

        assert call.message.kv_cache.keys is cache.keys
        assert 7 == call.message.kv_cache.metadata.sequence_length


class TestConnection:
    def test_retries_cover_the_whole_deadline(self):
        """Attempts of attempt_timeout_ms follow each other until the deadline, not a count."""
        settings = transport_settings("tcp://127.0.0.1:1", None, timeout_ms=9_500,
                                      attempt_timeout_ms=1_000)  # fmt: skip

        assert (1_000, 10) == (settings.attempt_timeout_ms, settings.retries_max)

    def test_keys_name_the_agent_and_another_agent_is_refused(self, tmp_path):
        """The agent is the secret key's public key; naming someone else (on-behalf-of, a
        gateway's call) is refused rather than charged to these keys' agent."""
        _, secret = create_key_pair(tmp_path, "alice")
        broker, _ = create_key_pair(tmp_path, "broker")
        keys = MeshKeys(secret_key_file=secret, broker_key_file=broker)
        settings = transport_settings("tcp://127.0.0.1:1", keys, timeout_ms=1_000,
                                      attempt_timeout_ms=None)  # fmt: skip

        assert public_key_of(secret) == acting_agent(None, settings)
        assert public_key_of(secret) == acting_agent(public_key_of(secret), settings)
        with pytest.raises(Unauthorized):
            acting_agent(public_key_of(broker), settings)

    @pytest.mark.parametrize("flavour", ["sync", "asyncio"])
    def test_no_broker_is_a_timeout_at_the_callers_deadline(self, flavour, rng):
        """Nothing listening: Timeout after the deadline, naming the request id to retry."""
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        client = open_client(flavour, f"tcp://127.0.0.1:{port}", timeout_ms=400,
                             attempt_timeout_ms=100)  # fmt: skip
        started = time.monotonic()
        try:
            with pytest.raises(Timeout) as raised:
                client.exchange_memory(kv_cache(SMOL, rng), SMOL, SMOL, request_id="retry-me")
        finally:
            client.close()

        assert 0.35 < time.monotonic() - started < 2.0
        assert "retry-me" == raised.value.details["request_id"]
        assert raised.value.details["attempts"] >= 4
