"""A real HTTP client against a running gateway process and a multiprocess CURVE mesh:
Appendix C's endpoints in JSON and binary form, the job of a long generate, public and
private reads, authorization, limits and the one error body."""

from __future__ import annotations

import signal
import socket
import time

import numpy as np
import pytest

from latentmas_mesh import codec
from latentmas_mesh.agents import AgentRegistry
from latentmas_mesh.gateway.frames import MEDIA_TYPE, join_frames, split_frames
from latentmas_mesh.protocol.align import AlignKVCacheRequest, AlignKVCacheResponse
from latentmas_mesh.protocol.json_edge import parse_json
from tests.gateway.conftest import DEPOSIT, JSON_BODY_BYTES_MAX, MAPS_VERSION, cache_json, error_of
from tests.workers_align.conftest import GEMMA, SMOL, kv_cache, paired_anchors

pytestmark = pytest.mark.slow
API = "/api/latentmas"
GEMMA_SHAPE = [18, 1, 5 * 256]  # the JSON form: [layers, kv_heads, seq * head_dim] (3.5.2)


def binary_body(message, request_id: str = "req-1") -> bytes:
    return b"".join(
        bytes(piece) for piece in join_frames(codec.encode(message, request_id=request_id))
    )


def decoded(response) -> codec.Decoded:
    assert MEDIA_TYPE == response.headers["content-type"]
    return codec.decode(split_frames(response.content))


class TestAppendixC:
    def test_generate_answers_appendix_c_body_with_measured_quality(self, site):
        """POST w-matrix/generate: 200 with exactly version, unified_dimension and
        quality_metrics; the same again is the stored map, the same version."""
        request = {
            "protocol": "LatentMAS/2.0", "source_model": SMOL, "target_model": GEMMA,
            "method": "orthogonal",
        }  # fmt: skip
        with site.client("alice") as alice:
            first = alice.post(f"{API}/w-matrix/generate", json=request)
            again = alice.post(f"{API}/w-matrix/generate", json=request)

        assert (200, 200) == (first.status_code, again.status_code), first.text
        body = first.json()
        assert {"version", "unified_dimension", "quality_metrics"} == set(body)
        assert {"expected_quality", "information_retention", "computational_cost"} == set(
            body["quality_metrics"]
        )
        assert 16 == body["unified_dimension"]
        assert body == again.json()

    def test_the_specs_own_example_says_what_is_missing(self, site):
        """gpt-4 -> llama-3-70b: MODEL_NOT_SUPPORTED (404) naming the closed model's reason,
        never an invented matrix."""
        request = {
            "protocol": "LatentMAS/2.0", "source_model": "gpt-4", "target_model": "llama-3-70b",
            "method": "orthogonal",
        }  # fmt: skip
        with site.client("alice") as alice:
            response = alice.post(f"{API}/w-matrix/generate", json=request)

        assert (404, "MODEL_NOT_SUPPORTED") == error_of(response)
        assert response.json()["details"]["open_weights"] is False

    def test_align_kv_cache_in_json_with_camel_case_inside_the_cache(self, site, rng):
        """POST kv-cache/align with the spec's nested lists; 3.5.2's camelCase names inside
        kv_cache are accepted; the answer is Appendix C's aligned_kv_cache and quality."""
        cache = cache_json(kv_cache(SMOL, rng))
        cache["sourceModel"] = cache.pop("source_model")
        request = {"protocol": "LatentMAS/2.0", "kv_cache": cache, "target_model": GEMMA,
                   "w_matrix_version": MAPS_VERSION}  # fmt: skip
        with site.client("alice") as alice:
            response = alice.post(f"{API}/kv-cache/align", json=request)

        assert 200 == response.status_code, response.text
        body = response.json()
        assert {"aligned_kv_cache", "alignment_quality"} <= set(body)
        assert GEMMA_SHAPE == list(np.asarray(body["aligned_kv_cache"]["keys"]).shape)
        assert {"cosine_similarity", "euclidean_distance", "information_retention",
                "confidence"} == set(body["alignment_quality"])  # fmt: skip

    def test_the_binary_form_carries_the_same_exchange(self, site, rng):
        """The same request as codec frames: a binary answer (the worker's own frames) equal
        to the JSON answer's numbers."""
        cache = kv_cache(SMOL, rng)
        message = AlignKVCacheRequest(kv_cache=cache, target_model=GEMMA)
        with site.client("alice") as alice:
            binary = alice.post(
                f"{API}/kv-cache/align", content=binary_body(message),
                headers={"content-type": MEDIA_TYPE},
            )  # fmt: skip
            as_json = alice.post(
                f"{API}/kv-cache/align", json=cache_json(message),
                headers={"accept": "application/json"},
            )  # fmt: skip

        assert (200, 200) == (binary.status_code, as_json.status_code), binary.text
        reply = decoded(binary).message
        parsed = parse_json(AlignKVCacheResponse, as_json.content)
        assert isinstance(reply, AlignKVCacheResponse)
        np.testing.assert_allclose(
            reply.aligned_kv_cache.keys, parsed.aligned_kv_cache.keys, rtol=1e-6
        )
        assert reply.alignment_quality == parsed.alignment_quality

    def test_a_binary_request_may_ask_for_json_and_json_for_binary(self, site, rng):
        message = AlignKVCacheRequest(kv_cache=kv_cache(SMOL, rng), target_model=GEMMA)
        with site.client("alice") as alice:
            as_json = alice.post(
                f"{API}/kv-cache/align", content=binary_body(message),
                headers={"content-type": MEDIA_TYPE, "accept": "application/json"},
            )  # fmt: skip
            as_binary = alice.post(
                f"{API}/kv-cache/align", json=cache_json(message), headers={"accept": MEDIA_TYPE}
            )

        assert "application/json" == as_json.headers["content-type"]
        assert isinstance(decoded(as_binary).message, AlignKVCacheResponse)

    def test_min_quality_above_the_maps_is_refused_with_the_measured_figure(self, site, rng):
        request = {"kv_cache": cache_json(kv_cache(SMOL, rng)), "target_model": GEMMA,
                   "min_quality": 0.99}  # fmt: skip
        with site.client("alice") as alice:
            response = alice.post(f"{API}/kv-cache/align", json=request)

        assert (422, "QUALITY_BELOW_THRESHOLD") == error_of(response)
        assert "0.8" in response.text

    def test_memory_exchange_and_v1_vectors(self, site, rng):
        """3.5.3 EXCHANGE_MEMORY and v1 align_vector through the same gateway."""
        x, _ = paired_anchors(rng)
        exchange = {"kv_source": cache_json(kv_cache(SMOL, rng)), "source_model": SMOL,
                    "target_model": GEMMA}  # fmt: skip
        vectors = {"protocol": "LatentMAS/1.0", "vector": x[0].tolist(), "source_model": SMOL,
                   "target_model": GEMMA}  # fmt: skip
        with site.client("alice") as alice:
            exchanged = alice.post(f"{API}/memory/exchange", json=exchange)
            aligned = alice.post(f"{API}/v1/vectors/align", json=vectors)

        assert 200 == exchanged.status_code, exchanged.text
        assert GEMMA_SHAPE == list(np.asarray(exchanged.json()["kv_aligned"]["keys"]).shape)
        assert 200 == aligned.status_code, aligned.text
        assert 32 == len(aligned.json()["aligned_vector"])

    def test_missing_maps_name_the_fallback(self, site, rng):
        request = {"kv_cache": cache_json(kv_cache(GEMMA, rng)), "target_model": SMOL}
        with site.client("alice") as alice:
            response = alice.post(f"{API}/kv-cache/align", json=request)

        assert (404, "W_MATRIX_NOT_FOUND") == error_of(response)
        assert "fallback" in response.json()["details"]

    def test_an_idempotency_key_makes_a_retry_the_same_exchange(self, site, rng):
        """Same key, same agent: one mesh request id; another agent's same key: another id."""
        request = {"kv_cache": cache_json(kv_cache(SMOL, rng, seq=2)), "target_model": GEMMA}
        key = {"idempotency-key": "exchange-42"}
        with site.client("alice", **key) as alice, site.client("bob", **key) as bob:
            ids = [
                client.post(f"{API}/kv-cache/align", json=request).headers["x-request-id"]
                for client in (alice, alice, bob)
            ]

        assert ids[0] == ids[1] != ids[2]


class TestJobs:
    def test_a_generate_that_outlasts_the_wait_is_a_job(self, site):
        """With no wait allowed the generate answers 202 and Location; the job answers 202
        while running, then 200 with Appendix C's body; another agent cannot see it."""
        request = {"source_model": SMOL, "target_model": GEMMA, "method": "learned"}
        mesh = site.mesh.mesh
        process, url = mesh.spawn_gateway({**mesh.env, "LATENTMAS_JOB_WAIT_MS": "0"})
        try:
            with site.client("alice") as alice, site.client("bob") as bob:
                alice.base_url = bob.base_url = url
                started = alice.post(f"{API}/w-matrix/generate", json=request)
                location = started.headers["location"]
                answer = _poll(alice, location)
                strangers = bob.get(location)
        finally:
            mesh.kill(process, signal.SIGTERM)

        assert 202 == started.status_code, started.text
        assert location.startswith(f"{API}/jobs/")
        assert {"version", "unified_dimension", "quality_metrics"} == set(answer.json())
        assert (404, "NOT_FOUND") == error_of(strangers)


def _poll(client, location, tries: int = 200):
    for _ in range(tries):
        response = client.get(location)
        if response.status_code != 202:
            return response
        time.sleep(0.05)
    raise AssertionError("the job did not finish")


class TestReads:
    def test_models_are_public_and_come_from_the_mesh(self, site):
        with site.client() as anyone:
            models = anyone.get(f"{API}/models")
            one = anyone.get(f"{API}/models/GPT-4")
            unknown = anyone.get(f"{API}/models/gpt-5-imaginary")
            docs = anyone.get("/openapi.json")

        assert 200 == models.status_code
        assert len(models.json()["models"]) >= 60
        assert "gpt-4" == one.json()["model"]["name"]
        assert (404, "MODEL_NOT_SUPPORTED") == error_of(unknown)
        assert f"{API}/kv-cache/align" in docs.json()["paths"]

    def test_stored_versions_need_an_agent(self, site):
        with site.client() as anyone, site.client("alice") as alice:
            refused = anyone.get(f"{API}/w-matrix/{SMOL}/{GEMMA}")
            listed = alice.get(f"{API}/w-matrix/{SMOL}/{GEMMA}")

        assert (401, "UNAUTHORIZED") == error_of(refused)
        assert "Bearer" == refused.headers["www-authenticate"]
        assert [MAPS_VERSION] == [m["version"] for m in listed.json()["kv_maps"]]

    def test_health_and_metrics(self, site):
        with site.client() as anyone:
            health = anyone.get("/healthz")
            metrics = anyone.get("/metrics")

        assert {"latentmas.align": True, "latentmas.wmatrix": True, "latentmas.ledger": True,
                "latentmas.market": True} == health.json()["services"]  # fmt: skip
        assert 'route="/healthz"' in metrics.text


class TestAuthorization:
    def test_each_agent_reads_its_own_account_only(self, site):
        """Alice reads her balance and statement; her token cannot read bob's (403); bob,
        never funded, has 0 units."""
        bobs = f"agent:{site.agent_id('bob')}"
        with site.client("alice") as alice, site.client("bob") as bob:
            balance = alice.get(f"{API}/ledger/balance")
            statement = alice.get(f"{API}/ledger/statement")
            peek_balance = alice.get(f"{API}/ledger/balance", params={"account": bobs})
            peek_statement = alice.get(f"{API}/ledger/statement", params={"account": bobs})
            bob_balance = bob.get(f"{API}/ledger/balance")

        assert 500 <= balance.json()["balance_units"]
        assert statement.json()["entries"]
        assert (403, "UNAUTHORIZED") == error_of(peek_balance)
        assert (403, "UNAUTHORIZED") == error_of(peek_statement)
        assert 0 == bob_balance.json()["balance_units"]

    def test_only_operators_deposit_and_a_deposit_is_idempotent_by_id(self, site):
        body = {"event_id": "gift-bob-0001", "agent_id": site.agent_id("bob"), "amount_units": 7}
        with site.client("alice") as alice, site.client("ops") as ops, site.client("bob") as bob:
            refused = alice.post(DEPOSIT, json=body)
            first = ops.post(DEPOSIT, json=body)
            again = ops.post(DEPOSIT, json=body)
            reused = ops.post(DEPOSIT, json={**body, "amount_units": 8})
            balance = bob.get(f"{API}/ledger/balance").json()["balance_units"]

        assert (403, "UNAUTHORIZED") == error_of(refused)
        assert (False, True) == (first.json()["replayed"], again.json()["replayed"])
        assert (409, "CONFLICT") == error_of(reused)
        assert 7 == balance

    def test_a_revoked_token_stops_at_once(self, site):
        with AgentRegistry(site.state_dir) as registry:
            carol = registry.add("carol")
            with site.client() as anyone:
                headers = {"authorization": f"Bearer {carol.token}"}
                before = anyone.get(f"{API}/ledger/balance", headers=headers)
                registry.revoke("carol")
                after = anyone.get(f"{API}/ledger/balance", headers=headers)

        assert 200 == before.status_code, before.text
        assert (401, "UNAUTHORIZED") == error_of(after)

    @pytest.mark.parametrize("header", ["Bearer lmt_nope", "Basic abc", "Bearer", "lmt_x"])
    def test_bad_credentials_are_401(self, site, header):
        with site.client(authorization=header) as anyone:
            assert (401, "UNAUTHORIZED") == error_of(anyone.get(f"{API}/ledger/balance"))


class TestBadInput:
    def test_a_declared_length_over_the_limit_is_refused_before_reading(self, site):
        """A Content-Length past the limit is answered 413 with nothing of the body sent."""
        host, port = site.url.removeprefix("http://").split(":")
        token = site.agents["alice"].token
        head = (
            f"POST {API}/kv-cache/align HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {JSON_BODY_BYTES_MAX + 1}\r\n\r\n"
        )
        with socket.create_connection((host, int(port)), timeout=30) as connection:
            connection.sendall(head.encode())
            answer = _read_answer(connection)

        assert answer.startswith("HTTP/1.1 413"), answer[:200]
        assert '"code":"PAYLOAD_TOO_LARGE"' in answer

    def test_a_chunked_body_over_the_limit_is_cut_off(self, site):
        def chunks():
            for _ in range(JSON_BODY_BYTES_MAX // (1 << 20) + 2):
                yield b" " * (1 << 20)

        with site.client("alice") as alice:
            response = alice.post(
                f"{API}/kv-cache/align", content=chunks(),
                headers={"content-type": "application/json"},
            )  # fmt: skip

        assert (413, "PAYLOAD_TOO_LARGE") == error_of(response)

    @pytest.mark.parametrize(
        ("content", "content_type", "expected"),
        [
            (b"not json", "application/json", (400, "INVALID_REQUEST")),
            (b'{"target_model": "gemma-3-270m"}', "application/json", (400, "INVALID_REQUEST")),
            (b"<xml/>", "application/xml", (400, "INVALID_REQUEST")),
            (b"\x01\x00\x00\x00\x00\x00\x00\x00", MEDIA_TYPE, (400, "INVALID_REQUEST")),
        ],
    )
    def test_malformed_bodies_get_the_error_body(self, site, content, content_type, expected):
        with site.client("alice") as alice:
            response = alice.post(
                f"{API}/kv-cache/align", content=content, headers={"content-type": content_type}
            )

        assert expected == error_of(response)

    def test_unknown_paths_and_methods(self, site):
        with site.client() as anyone:
            missing = anyone.get("/api/latentmas/nothing-here")
            wrong_method = anyone.delete(f"{API}/models")

        assert (404, "NOT_FOUND") == error_of(missing)
        assert (405, "INVALID_REQUEST") == error_of(wrong_method)


def _read_answer(connection: socket.socket) -> str:
    """One HTTP answer, head and body: a server may send them in separate segments."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = connection.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                   if line.lower().startswith(b"content-length:")), 0)  # fmt: skip
    while len(body) < length:
        chunk = connection.recv(65536)
        if not chunk:
            break
        body += chunk
    return (head + b"\r\n\r\n" + body).decode(errors="replace")
