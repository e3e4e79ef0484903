"""Every message type survives encode then decode unchanged, over bytes and over ZeroMQ."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from latentmas_mesh import codec
from latentmas_mesh import protocol as p
from tests.protocol.factories import KV_DTYPES, MESSAGE_STRATEGIES, example_messages, kv_caches

OUR_TYPES = sorted(MESSAGE_STRATEGIES)


class TestRoundTrip:
    def test_every_registered_type_of_this_area_has_a_strategy(self):
        """The round-trip suite covers each message type the protocol package defines itself."""
        ours = {
            name
            for name, cls in p.MESSAGE_TYPES.items()
            if cls.__module__.rsplit(".", 1)[-1] in {"kv", "wmatrix", "align", "v1", "errors"}
        }

        assert ours == set(OUR_TYPES)

    @pytest.mark.parametrize("type_name", OUR_TYPES)
    def test_example_message_round_trips(self, type_name, rng):
        """A decoded example equals the message that was encoded, with its type and request id."""
        message = example_messages(rng)[type_name]

        decoded = codec.decode(codec.encode(message, request_id="req-1"))

        assert (message, "req-1", type_name) == (
            decoded.message,
            decoded.request_id,
            decoded.type_name,
        )

    @pytest.mark.parametrize("type_name", OUR_TYPES)
    @settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(data=st.data())
    def test_generated_message_round_trips(self, type_name, data):
        """Any valid message of any type decodes to an equal message."""
        message = data.draw(MESSAGE_STRATEGIES[type_name])

        decoded = codec.decode(codec.encode(message, request_id="r"))

        assert message == decoded.message

    @pytest.mark.parametrize("dtype", sorted(KV_DTYPES))
    @settings(max_examples=20, deadline=None)
    @given(data=st.data())
    def test_kv_cache_of_every_dtype_round_trips_bit_exact(self, dtype, data):
        """Keys and values come back with the same dtype and the same bytes."""
        kv = data.draw(kv_caches(dtype=dtype))

        decoded = codec.decode(codec.encode(kv, request_id="r")).message

        assert (kv.keys.dtype, kv.keys.tobytes(), kv.values.tobytes()) == (
            decoded.keys.dtype,
            decoded.keys.tobytes(),
            decoded.values.tobytes(),
        )

    @pytest.mark.parametrize("dtype", sorted(p.DTYPES))
    def test_array_of_every_wire_dtype_round_trips(self, dtype, rng):
        """Each wire dtype name maps to one numpy dtype and back, bytes unchanged."""
        mask = rng.integers(0, 2, size=(2, 3)).astype(p.DTYPES[dtype])
        message = p.KVCache.model_validate(
            {**example_messages(rng)["kv_cache"].model_dump(), "attention_mask": mask}
        )

        decoded = codec.decode(codec.encode(message, request_id="r")).message

        assert (p.DTYPES[dtype], mask.tobytes()) == (
            decoded.attention_mask.dtype,
            decoded.attention_mask.tobytes(),
        )


class TestZeroCopy:
    def test_encode_sends_the_arrays_own_memory(self, rng):
        """Encoding a C-contiguous array makes no copy: the frame is a view of the array."""
        kv = example_messages(rng)["kv_cache"]

        frames = codec.encode(kv, request_id="r")

        assert np.shares_memory(np.frombuffer(frames[1], dtype=np.uint8), kv.keys)

    def test_non_contiguous_array_is_made_contiguous(self, rng):
        """A transposed array travels as its C-order copy, and decodes equal to the original."""
        keys = np.asfortranarray(rng.standard_normal((2, 2, 3, 4)).astype(np.float32))
        kv = example_messages(rng)["kv_cache"].model_copy(
            update={"keys": keys, "values": keys.astype(np.float16).astype(np.float32)}
        )

        decoded = codec.decode(codec.encode(kv, request_id="r")).message

        assert (True, True) == (np.array_equal(keys, decoded.keys), decoded.keys.flags.c_contiguous)

    @pytest.mark.parametrize("endpoint", ["inproc://codec-zero-copy", "tcp://127.0.0.1:*"])
    def test_decoded_arrays_are_views_on_received_zmq_frames(self, endpoint, rng, zmq_pair):
        """Received with copy=False, each decoded array shares memory with its own zmq.Frame."""
        kv = kv_cache_big(rng)
        sender, receiver = zmq_pair(endpoint)
        sender.send_multipart(codec.encode(kv, request_id="r"), copy=False)
        frames = receiver.recv_multipart(copy=False)

        decoded = codec.decode(frames).message

        assert (True, True, False, True) == (
            np.shares_memory(decoded.keys, np.frombuffer(frames[1].buffer, dtype=np.uint8)),
            np.shares_memory(decoded.values, np.frombuffer(frames[2].buffer, dtype=np.uint8)),
            decoded.keys.flags.writeable,
            decoded == kv,
        )


def kv_cache_big(rng: np.random.Generator) -> p.KVCache:
    """Large enough (1 MiB per array) that libzmq keeps the frame as its own buffer."""
    from tests.protocol.factories import kv_cache

    return kv_cache(rng, layers=4, heads=2, seq=256, head_dim=256, dtype="float16")
