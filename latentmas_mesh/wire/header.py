"""The codec header's fixed format, in one place the codec and the broker both import.

Kept free of pydantic and numpy so that the broker can write and peek at headers without the
message schemas. Layout, version 1 (frame 0, a msgpack map, keys in this order):
  {"version": 1, "type": <registered type name>, "request_id": <str>,
   ["on_behalf_of": <agent id: a Z85 CURVE public key; optional, a gateway's only>,]
   "body": <the message's fields; each array replaced by ext type 1 holding its index>,
   "arrays": [{"dtype": <wire dtype name>, "shape": [<int>, ...], "frame": <1 + index>}, ...]}
Frames 1..n: each array's bytes, C order, little-endian, nothing else.
"""

from __future__ import annotations

from typing import Final

CODEC_VERSION: Final = 1
ARRAY_REF_EXT: Final = 1
"""msgpack ext type code of an array reference: its data is a 4-byte big-endian index."""
ARRAY_REF_BYTES: Final = 4
HEADER_KEYS: Final = ("version", "type", "request_id", "body", "arrays")
"""The header map's keys, in the order encoders write them."""
ON_BEHALF_OF_KEY: Final = "on_behalf_of"
"""The one optional header key, written after `request_id` when present: the agent a gateway
acts for. It rides in the header, not the body, so no message schema can carry a payer; workers
take it only from a configured gateway key (workers/base.py)."""
AGENT_ID_CHARS: Final = 40
"""An agent id is a CURVE public key in Z85: 32 bytes as 40 characters (what ZAP reports)."""
Z85_ALPHABET: Final = frozenset(
    "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#"
)
ARRAY_KEYS: Final = ("dtype", "shape", "frame")
"""The keys of one array descriptor."""
REQUEST_ID_CHARS_MAX: Final = 128
"""Longest request id an encoder writes and a decoder accepts by default."""
CONTAINER_LEN_MAX: Final = 1 << 16
"""Entries of one msgpack map or list a header may hold by default."""

__all__ = [
    "AGENT_ID_CHARS",
    "ARRAY_KEYS",
    "ARRAY_REF_BYTES",
    "ARRAY_REF_EXT",
    "CODEC_VERSION",
    "CONTAINER_LEN_MAX",
    "HEADER_KEYS",
    "ON_BEHALF_OF_KEY",
    "REQUEST_ID_CHARS_MAX",
    "Z85_ALPHABET",
]
