"""The JSON/HTTP edge: Appendix C bodies as written, nested lists checked and converted."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from latentmas_mesh import protocol as p
from latentmas_mesh.errors import ErrorCode, InvalidRequest, PayloadTooLarge
from latentmas_mesh.protocol.json_edge import dump_json, parse_json, to_jsonable
from tests.protocol.factories import kv_cache

GENERATE_REQUEST = """{
  "protocol": "LatentMAS/2.0",
  "source_model": "gpt-4",
  "target_model": "llama-3-70b",
  "method": "orthogonal"
}"""
GENERATE_RESPONSE = """{
  "version": "1.0.0",
  "unified_dimension": 128,
  "quality_metrics": {
    "expected_quality": 0.94,
    "information_retention": 0.96,
    "computational_cost": 32768
  }
}"""
ALIGNMENT_QUALITY = {
    "cosine_similarity": 0.93,
    "euclidean_distance": 0.12,
    "information_retention": 0.95,
    "confidence": 0.91,
}


def kv_json(
    keys: Any, values: Any = None, *, seq: int = 2, **metadata_overrides: Any
) -> dict[str, Any]:
    """A KV cache as JSON-ready data, with the given nested lists for keys and values."""
    return {
        "source_model": "llama-3-8b",
        "keys": keys,
        "values": keys if values is None else values,
        "metadata": {
            "sequence_length": seq,
            "context_description": "doc",
            "token_count": seq,
            "generated_at": "2026-01-25T10:00:00Z",
            **metadata_overrides,
        },
    }


# [layers=1][heads=2][seq=2 × dim=3] as section 3.5.2 writes it
SPEC_KEYS = [[[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], [0.5, 0.25, 0.0, -1.0, -2.0, 1e-3]]]


def parse_error(cls: type[p.WireModel], document: str | dict[str, Any]) -> InvalidRequest:
    raw = document if isinstance(document, str) else json.dumps(document)
    with pytest.raises(InvalidRequest) as raised:
        parse_json(cls, raw)
    return raised.value


class TestAppendixCBodies:
    def test_generate_request_parses_as_written(self):
        """Appendix C.1's generate request body is valid as printed."""
        request = parse_json(p.GenerateWMatrixRequest, GENERATE_REQUEST)

        assert ("gpt-4", "llama-3-70b", "orthogonal") == (
            request.source_model,
            request.target_model,
            request.method,
        )

    def test_generate_response_parses_and_prints_back_as_written(self):
        """Appendix C.1's generate response round-trips to the same JSON, int cost included."""
        response = parse_json(p.GenerateWMatrixResponse, GENERATE_RESPONSE)

        assert json.loads(GENERATE_RESPONSE) == to_jsonable(response)

    def test_align_request_and_response_parse_with_a_kv_cache(self):
        """Appendix C.1's align bodies validate with a real kv_cache in place of `{ ... }`."""
        kv = kv_json(SPEC_KEYS)
        request = {
            "protocol": "LatentMAS/2.0",
            "kv_cache": kv,
            "target_model": "llama-3-70b",
            "w_matrix_version": "1.0.0",
        }
        response = {"aligned_kv_cache": kv, "alignment_quality": ALIGNMENT_QUALITY}

        parsed_request = parse_json(p.AlignKVCacheRequest, json.dumps(request))
        parsed_response = parse_json(p.AlignKVCacheResponse, json.dumps(response))

        assert ((1, 2, 2, 3), 0.93) == (
            parsed_request.kv_cache.keys.shape,
            parsed_response.alignment_quality.cosine_similarity,
        )


class TestKVNestedLists:
    def test_spec_layout_is_split_by_sequence_length(self):
        """[layers][heads][seq × dim] becomes [layers, heads, seq, dim] using metadata."""
        kv = parse_json(p.KVCache, json.dumps(kv_json(SPEC_KEYS)))

        assert [4.0, 5.0, 6.0] == kv.keys[0, 0, 1].tolist()

    def test_four_level_lists_are_accepted_too(self):
        """[layers][heads][seq][dim] needs no splitting."""
        keys = np.arange(12, dtype=np.float32).reshape(1, 2, 2, 3)

        kv = parse_json(p.KVCache, json.dumps(kv_json(keys.tolist())))

        assert np.array_equal(keys, kv.keys)

    def test_json_output_uses_the_spec_layout(self, rng):
        """Dumped keys are [layers][heads][seq × dim] lists and parse back to equal arrays."""
        kv = kv_cache(rng, layers=2, heads=3, seq=4, head_dim=5, dtype="float32")

        document = dump_json(kv)
        rows = json.loads(document)["keys"]

        assert ((2, 3, 20), kv) == (
            (len(rows), len(rows[0]), len(rows[0][0])),
            parse_json(p.KVCache, document),
        )

    @pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
    def test_float_dtype_of_the_edge_is_chosen_by_the_caller(self, dtype):
        """JSON numbers become the dtype the edge is configured for."""
        kv = parse_json(p.KVCache, json.dumps(kv_json(SPEC_KEYS)), float_dtype=dtype)

        assert dtype == p.dtype_name(kv.keys.dtype)

    @pytest.mark.parametrize(
        ("name", "keys", "overrides"),
        [
            ("ragged heads", [[[1.0] * 6, [1.0] * 5]], {}),
            ("ragged layers", [[[1.0] * 6, [1.0] * 6], [[1.0] * 6]], {}),
            ("string number", [[["1.0"] * 6, [1.0] * 6]], {}),
            ("bool", [[[True] * 6, [1.0] * 6]], {}),
            ("null", [[[None] * 6, [1.0] * 6]], {}),
            ("depth 2", [[1.0] * 6], {}),
            ("depth 5", [[[[[1.0]]]]], {}),
            ("lists and numbers mixed", [[[1.0] * 6, 1.0]], {}),
            ("row not divisible by seq", [[[1.0] * 5, [1.0] * 5]], {}),
            ("overflows float32", [[[1e39] * 6, [1.0] * 6]], {}),
            ("seq does not divide rows", SPEC_KEYS, {"sequence_length": 4}),
            ("no sequence length", SPEC_KEYS, {"sequence_length": "two"}),
        ],
    )
    def test_malformed_nested_lists_are_invalid_requests(self, name, keys, overrides):
        """Every malformed KV list is refused as INVALID_REQUEST with the offending field named."""
        error = parse_error(p.KVCache, kv_json(keys, SPEC_KEYS, **overrides))

        assert ErrorCode.INVALID_REQUEST == error.code, name

    def test_nan_literal_is_refused(self):
        """JSON's non-standard NaN token is not accepted at the edge."""
        document = json.dumps(kv_json(SPEC_KEYS)).replace("0.25", "NaN")

        error = parse_error(p.KVCache, document)

        assert ErrorCode.INVALID_REQUEST == error.code


class TestOtherArrays:
    def test_vector_request_from_json(self):
        """A v1 vector arrives as a JSON list and becomes a float32 vector."""
        body = {
            "protocol": "LatentMAS/1.0",
            "vector": [0.1, 0.2],
            "source_model": "gpt-4",
            "target_model": "bert",
        }

        request = parse_json(p.AlignVectorRequest, json.dumps(body))

        assert (np.float32, (2,)) == (request.vector.dtype, request.vector.shape)

    @pytest.mark.parametrize(
        ("mask", "expected"),
        [([[1, 0]], ("int64", [[1, 0]])), ([[1, 0.5]], ("float32", [[1.0, 0.5]]))],
        ids=["integers make an int64 mask", "a fraction makes a float mask"],
    )
    def test_mask_dtype_follows_its_json_numbers(self, mask, expected):
        """JSON integers give an int64 mask; a fraction gives a float mask, never truncated."""
        body = kv_json(SPEC_KEYS)
        body["attention_mask"] = mask

        kv = parse_json(p.KVCache, json.dumps(body))

        assert expected == (p.dtype_name(kv.attention_mask.dtype), kv.attention_mask.tolist())

    def test_json_true_in_a_mask_is_refused(self):
        """JSON booleans are not numbers: the spec's mask is number[][]."""
        body = kv_json(SPEC_KEYS)
        body["attention_mask"] = [[True, False]]

        error = parse_error(p.KVCache, body)

        assert ["attention_mask"] == error.details["errors"][0]["loc"]

    @pytest.mark.parametrize(
        ("mask", "expected_dtype"),
        [
            (np.array([[True, False, True, True]]), "int64"),
            (np.array([[0.0, -1e4, 0.0, 0.5]], dtype=np.float32), "float32"),
            (np.array([[1, 0, 1, 1]], dtype=np.int8), "int64"),
        ],
    )
    def test_every_mask_dtype_survives_a_json_round_trip(self, mask, expected_dtype, rng):
        """What the edge prints it parses back: bools as 0/1, floats as floats, ints as ints."""
        kv = kv_cache(rng, seq=4, dtype="float32").model_copy(update={"attention_mask": mask})

        back = parse_json(p.KVCache, dump_json(kv))

        assert (expected_dtype, mask.astype(np.float64).tolist()) == (
            p.dtype_name(back.attention_mask.dtype),
            back.attention_mask.astype(np.float64).tolist(),
        )

    def test_float_positions_survive_a_json_round_trip(self, rng):
        """Positions given as floats come back as floats with the same values."""
        positions = np.array([0.0, 1.0, 2.5], dtype=np.float32)
        kv = kv_cache(rng, dtype="float32").model_copy(update={"position_encodings": positions})

        back = parse_json(p.KVCache, dump_json(kv))

        assert ("float32", [0.0, 1.0, 2.5]) == (
            p.dtype_name(back.position_encodings.dtype),
            back.position_encodings.tolist(),
        )

    def test_json_schema_describes_arrays_as_nested_number_lists(self):
        """The published JSON schema shows keys as number[][][] (the spec's type)."""
        schema = p.KVCache.model_json_schema()

        assert {
            "type": "array",
            "items": {"type": "array", "items": {"type": "array", "items": {"type": "number"}}},
        } == {k: v for k, v in schema["properties"]["keys"].items() if k != "title"}


class TestDocumentLimits:
    def test_oversize_document_is_payload_too_large(self):
        """A body over the edge's byte limit is refused before parsing."""
        with pytest.raises(PayloadTooLarge):
            parse_json(p.GenerateWMatrixRequest, GENERATE_REQUEST, json_bytes_max=10)

    @pytest.mark.parametrize("document", ["{", "[]", "null", "[" * 100_000 + "]" * 100_000, "\xff"])
    def test_broken_documents_are_invalid_requests(self, document):
        """Truncated, wrongly typed and absurdly nested JSON is refused as INVALID_REQUEST."""
        error = parse_error(p.GenerateWMatrixRequest, document)

        assert ErrorCode.INVALID_REQUEST == error.code
