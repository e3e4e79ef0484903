"""The message models: aliases, immutability, cross-field rules, the error body and the registry."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from latentmas_mesh import codec
from latentmas_mesh import protocol as p
from latentmas_mesh.errors import ERROR_CLASSES, RESOLUTIONS, ErrorCode, InvalidRequest
from latentmas_mesh.protocol.base import validate_message
from tests.protocol.factories import GENERATED_AT, example_messages, kv_cache


def camel_kv(keys: np.ndarray, values: np.ndarray, seq: int) -> dict[str, object]:
    """A KVCache body written with section 3.5.2's camelCase names."""
    return {
        "sourceModel": "gpt-4",
        "keys": keys,
        "values": values,
        "attentionMask": np.ones((1, seq), dtype=np.int8),
        "positionEncodings": np.arange(seq, dtype=np.int32),
        "metadata": {
            "sequenceLength": seq,
            "contextDescription": "ctx",
            "tokenCount": seq,
            "generatedAt": "2026-01-25T12:30:05Z",
        },
    }


class TestAliases:
    def test_kv_cache_accepts_the_spec_camel_case_names(self, rng):
        """Section 3.5.2's camelCase field names validate to the same model as snake_case ones."""
        keys = rng.standard_normal((1, 2, 3, 4)).astype(np.float32)

        kv = p.KVCache.model_validate(camel_kv(keys, keys, 3))

        assert ("gpt-4", 3, "ctx") == (
            kv.source_model,
            kv.metadata.sequence_length,
            kv.metadata.context_description,
        )

    def test_w_matrix_standard_accepts_the_spec_camel_case_names(self, rng):
        """Section 4.3.3's camelCase names are accepted, including nested ones."""
        body = {
            "version": "1.0.0",
            "sourceModel": "gpt-4",
            "targetModel": "llama-3-70b",
            "unifiedDimension": 128,
            "method": "orthogonal",
            "transformationRules": {"orthogonalMatrix": rng.standard_normal((4, 4))},
            "qualityMetrics": {
                "expectedQuality": 0.94,
                "informationRetention": 0.96,
                "computationalCost": 32768,
            },
        }

        w = p.WMatrixStandard.model_validate(body)

        assert (128, 32768, (4, 4)) == (
            w.unified_dimension,
            w.quality_metrics.computational_cost,
            w.transformation_rules.orthogonal_matrix.shape,
        )

    def test_snake_case_is_what_goes_out(self, rng):
        """Dumps use the snake_case names of Appendix C, never the camelCase aliases."""
        dumped = example_messages(rng)["w_matrix_standard"].model_dump()

        assert {"source_model", "unified_dimension", "transformation_rules"} <= set(dumped)


class TestModelRules:
    def test_messages_are_frozen(self, rng):
        """Assigning to a field of a message fails: messages are values."""
        kv = kv_cache(rng)

        with pytest.raises(ValidationError):
            kv.source_model = "other"  # type: ignore[misc]  # frozen: this must fail

    def test_unknown_fields_are_refused(self):
        """extra="forbid": a misspelt field is an error, not silently dropped."""
        with pytest.raises(InvalidRequest) as raised:
            validate_message(
                p.GenerateWMatrixRequest,
                {"source_model": "a", "target_model": "b", "method": "learned", "colour": 1},
            )

        assert ["colour"] == raised.value.details["errors"][0]["loc"]

    def test_wrong_protocol_version_is_refused(self):
        """A v2 request naming another protocol version does not validate."""
        body = {"protocol": "LatentMAS/3.0", "source_model": "a", "target_model": "b"}

        with pytest.raises(InvalidRequest):
            validate_message(p.GenerateWMatrixRequest, {**body, "method": "hybrid"})

    def test_v1_align_vector_carries_the_v1_protocol(self, rng):
        """align_vector requests say LatentMAS/1.0, as the v1 API did."""
        request = p.AlignVectorRequest(
            vector=rng.standard_normal(4).astype(np.float32), source_model="a", target_model="b"
        )

        assert "LatentMAS/1.0" == request.protocol

    def test_paid_requests_take_an_optional_ledger_reservation(self, rng):
        """Without reservation_id a request is the spec's body; with one it names a ledger event."""
        vector = rng.standard_normal(4).astype(np.float32)
        plain = p.AlignVectorRequest(vector=vector, source_model="a", target_model="b")
        paid = validate_message(
            p.ExchangeMemoryRequest,
            {"kv_source": kv_cache(rng), "source_model": "a", "target_model": "b",
             "reservationId": "res-1.a_B"},
        )  # fmt: skip

        assert (None, "res-1.a_B") == (plain.reservation_id, paid.reservation_id)

    @pytest.mark.parametrize("reservation_id", ["", "ledger:id", "x" * 129, "sp ace"])
    def test_reservation_id_outside_the_ledgers_event_ids_is_refused(self, reservation_id, rng):
        """A reservation id must be a ledger event id: 1..128 of [A-Za-z0-9._-]."""
        vector = rng.standard_normal(4).astype(np.float32)

        with pytest.raises(ValidationError):
            p.AlignVectorRequest(
                vector=vector, source_model="a", target_model="b", reservation_id=reservation_id
            )

    @pytest.mark.parametrize("payload", [{}, {"both": True}])
    def test_v1_align_vector_needs_exactly_one_payload(self, payload, rng):
        """Neither or both of vector and vectors is refused."""
        extra = (
            {
                "vector": np.ones(4, dtype=np.float32),
                "vectors": np.ones((2, 4), dtype=np.float32),
            }
            if payload
            else {}
        )

        with pytest.raises(ValidationError):
            p.AlignVectorRequest(source_model="a", target_model="b", **extra)

    @pytest.mark.parametrize(
        ("change", "expected_loc"),
        [
            ({"values_shape": (2, 2, 4, 4)}, []),
            ({"values_dtype": np.float32}, []),
            ({"sequence_length": 4}, []),
            ({"keys_shape": (2, 2, 3)}, ["keys"]),
            ({"keys_dtype": np.int32}, ["keys"]),
            ({"mask_shape": (1, 4)}, []),
        ],
    )
    def test_inconsistent_kv_cache_is_refused(self, change, expected_loc, rng):
        """keys/values/metadata must agree on rank, dtype, [layers, heads, seq] and seq length."""
        keys = rng.standard_normal(change.get("keys_shape", (2, 2, 3, 4))).astype(
            change.get("keys_dtype", np.float16)
        )
        values = rng.standard_normal(change.get("values_shape", (2, 2, 3, 4))).astype(
            change.get("values_dtype", np.float16)
        )
        body = {
            "source_model": "m",
            "keys": keys,
            "values": values,
            "attention_mask": np.ones(change.get("mask_shape", (1, 3)), dtype=np.int64),
            "metadata": {
                "sequence_length": change.get("sequence_length", 3),
                "context_description": "",
                "token_count": 3,
                "generated_at": GENERATED_AT,
            },
        }

        with pytest.raises(InvalidRequest) as raised:
            validate_message(p.KVCache, body)

        assert expected_loc == raised.value.details["errors"][0]["loc"]

    @pytest.mark.parametrize(
        ("field", "value"), [("cosine_similarity", True), ("confidence", "0.9")]
    )
    def test_quality_figures_refuse_bools_and_numeric_strings(self, field, value):
        """A metric is a number: True or "0.9" is a wrong type, not coerced to 1.0 or 0.9."""
        figures = {
            "cosine_similarity": 0.93,
            "euclidean_distance": 0.12,
            "information_retention": 0.95,
            "confidence": 0.91,
        }

        with pytest.raises(InvalidRequest) as raised:
            validate_message(p.AlignmentQuality, {**figures, field: value})

        assert [field] == raised.value.details["errors"][0]["loc"]

    def test_whole_number_is_accepted_where_a_float_belongs(self):
        """JSON writes 1.0 as 1, so an int is a valid value for a float metric."""
        figures = {
            "cosine_similarity": 1,
            "euclidean_distance": 0,
            "information_retention": 1,
            "confidence": 1,
        }

        quality = validate_message(p.AlignmentQuality, figures)

        assert (1.0, float) == (quality.cosine_similarity, type(quality.cosine_similarity))

    def test_values_may_be_narrower_than_keys(self, rng):
        """value_dim may differ from head_dim (architectures with distinct key/value widths)."""
        keys = rng.standard_normal((1, 1, 2, 8)).astype(np.float32)
        values = rng.standard_normal((1, 1, 2, 4)).astype(np.float32)

        kv = p.KVCache(
            source_model="m",
            keys=keys,
            values=values,
            metadata=p.KVCacheMetadata(
                sequence_length=2, context_description="", token_count=2, generated_at=GENERATED_AT
            ),
        )

        assert (8, 4) == (kv.head_dim, kv.values.shape[3])

    def test_lists_are_refused_outside_the_json_edge(self):
        """The binary path takes numpy arrays only; nested lists are a JSON-edge convenience."""
        with pytest.raises(InvalidRequest):
            validate_message(
                p.AlignVectorRequest,
                {"vector": [1.0, 2.0], "source_model": "a", "target_model": "b"},
            )

    def test_messages_compare_arrays_by_value(self, rng):
        """Messages with equal arrays in different buffers are equal; a changed element is not."""
        kv = kv_cache(rng)
        same = p.KVCache.model_validate({**kv.model_dump(), "keys": kv.keys.copy()})
        changed_keys = kv.keys.copy()
        changed_keys[0, 0, 0, 0] += 1
        different = p.KVCache.model_validate({**kv.model_dump(), "keys": changed_keys})

        assert (True, False) == (kv == same, kv == different)


class TestErrorBody:
    @pytest.mark.parametrize("code", sorted(ErrorCode))
    def test_error_body_round_trips_every_code_to_its_exception(self, code):
        """from_error then to_exception gives back the same class, message and details."""
        original = ERROR_CLASSES[code]("what went wrong", details={"field": "keys"})

        body = p.ErrorBody.from_error(original)
        rebuilt = codec.decode(codec.encode(body, request_id="r")).message.to_exception()

        assert (type(original), "what went wrong", {"field": "keys"}, RESOLUTIONS[code]) == (
            type(rebuilt),
            rebuilt.message,
            rebuilt.details,
            body.resolution,
        )

    def test_error_body_matches_the_exception_wire_shape(self):
        """ErrorBody dumps exactly what ProtocolError.to_wire() produces."""
        error = ERROR_CLASSES[ErrorCode.W_MATRIX_NOT_FOUND]("no map for gpt-4 -> phi-2")

        assert error.to_wire() == p.ErrorBody.from_error(error).model_dump(mode="json")

    def test_spec_resolution_text_travels_with_spec_codes(self):
        """Appendix C.2's resolutions arrive with its four codes."""
        resolutions = {
            code: p.ErrorBody.from_error(ERROR_CLASSES[code]("x")).resolution
            for code in (
                ErrorCode.W_MATRIX_NOT_FOUND,
                ErrorCode.DIMENSION_MISMATCH,
                ErrorCode.QUALITY_BELOW_THRESHOLD,
                ErrorCode.MODEL_NOT_SUPPORTED,
            )
        }

        assert [
            "Use fallback method",
            "Regenerate W-Matrix",
            "Try different method",
            "Request model addition",
        ] == list(resolutions.values())


class TestRegistry:
    def test_a_new_message_type_is_one_model_and_one_decorator(self, rng):
        """Registering a model makes it encodable and decodable with no other change."""

        @p.register_message("test.ping")
        class Ping(p.WireModel):
            sequence: int
            payload: p.FloatVector

        try:
            ping = Ping(sequence=7, payload=rng.standard_normal(3).astype(np.float32))
            decoded = codec.decode(codec.encode(ping, request_id="r"))
        finally:
            del p.MESSAGE_TYPES["test.ping"]

        assert ("test.ping", ping) == (decoded.type_name, decoded.message)

    def test_a_type_name_cannot_be_taken_twice(self):
        """A second class under a registered name is refused: names are published API."""

        with pytest.raises(ValueError, match="already"):

            @p.register_message("kv_cache")
            class Impostor(p.WireModel):
                x: int

    def test_unregistered_model_cannot_be_encoded(self):
        """Encoding a model that was never registered is the sender's bug: TypeError."""

        class Loose(p.WireModel):
            x: int

        with pytest.raises(TypeError):
            codec.encode(Loose(x=1), request_id="r")

    def test_type_names_are_stable(self):
        """The published names of this area's message types (changing one breaks peers)."""
        expected = {
            "kv_cache",
            "w_matrix_standard",
            "generate_w_matrix_request",
            "generate_w_matrix_response",
            "align_kv_cache_request",
            "align_kv_cache_response",
            "exchange_memory_request",
            "exchange_memory_response",
            "align_vector_request",
            "align_vector_response",
            "error",
        }

        assert expected <= set(p.MESSAGE_TYPES)


def test_every_module_with_messages_is_registered_explicitly():
    """A protocol module defining messages is in MESSAGE_MODULES (no import side effects)."""
    import pathlib

    from latentmas_mesh import protocol

    folder = pathlib.Path(protocol.__file__).parent
    defining = {
        path.stem for path in folder.glob("*.py") if "@register_message(" in path.read_text()
    }
    listed = {module.__name__.rsplit(".", 1)[-1] for module in protocol.MESSAGE_MODULES}
    assert defining <= listed
    assert {"align", "ledger", "kv"} <= defining
