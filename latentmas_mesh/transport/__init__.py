"""The client transport of the SDK: sync and asyncio MDP/0.2 clients with timeouts and retries."""

from latentmas_mesh.transport._async import AsyncTransport
from latentmas_mesh.transport._calls import new_request_id
from latentmas_mesh.transport._curve import create_key_pair, public_key_of, use_curve
from latentmas_mesh.transport._settings import TransportSettings
from latentmas_mesh.transport._sync import PartialCallback, Transport

__all__ = [
    "AsyncTransport",
    "PartialCallback",
    "Transport",
    "TransportSettings",
    "create_key_pair",
    "new_request_id",
    "public_key_of",
    "use_curve",
]
