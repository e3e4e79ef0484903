"""The client transport of the SDK: sync and asyncio MDP/0.2 clients with timeouts and retries,
CURVE keys, and the seals that let a client verify who wrote a reply."""

from latentmas_mesh.transport._async import AsyncTransport
from latentmas_mesh.transport._calls import decode_reply, encode_call, new_request_id
from latentmas_mesh.transport._curve import (
    create_key_pair,
    list_worker_key,
    public_key_of,
    use_curve,
    worker_key_folder,
)
from latentmas_mesh.transport._seal import (
    ReplySealer,
    ReplyVerifier,
    UnverifiedReply,
    is_sealed,
    trusted_keys,
)
from latentmas_mesh.transport._settings import TransportSettings
from latentmas_mesh.transport._sync import PartialCallback, Transport

__all__ = [
    "AsyncTransport",
    "PartialCallback",
    "ReplySealer",
    "ReplyVerifier",
    "Transport",
    "TransportSettings",
    "UnverifiedReply",
    "create_key_pair",
    "decode_reply",
    "encode_call",
    "is_sealed",
    "list_worker_key",
    "new_request_id",
    "public_key_of",
    "trusted_keys",
    "use_curve",
    "worker_key_folder",
]
