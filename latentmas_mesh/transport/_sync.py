"""The synchronous client transport: one request at a time on a DEALER socket, retried safely."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

import numpy as np
import numpy.typing as npt
import zmq
from pydantic import BaseModel

from latentmas_mesh import codec, mdp, wire
from latentmas_mesh.transport import _calls
from latentmas_mesh.transport._curve import use_curve
from latentmas_mesh.transport._settings import TransportSettings
from latentmas_mesh.transport._shared import SharedArrays

ATTEMPT_S_MIN = 0.005
"""Less time than this left is not worth another attempt: the call has timed out."""

PartialCallback = Callable[[list[zmq.Frame]], None]


class Transport:
    """A blocking MDP/0.2 client of the broker, for the SDK and for scripts.

    Each attempt waits `attempt_timeout_ms` for the FINAL; silence closes the socket and the same
    frames (so the same request id) are sent on a new one, as RFC 18 recommends, until
    `retries_max` resends or the call's deadline. A late reply to an abandoned socket is never
    seen, so each call returns exactly one FINAL. Not thread-safe: one Transport per thread.
    """

    def __init__(
        self,
        settings: TransportSettings | None = None,
        *,
        context: zmq.Context[zmq.Socket[bytes]] | None = None,
    ) -> None:
        self.settings = settings or TransportSettings()
        self._context = context or zmq.Context.instance()
        self._socket: zmq.Socket[bytes] | None = None
        self._dialect = _calls.dialect_of(self.settings)
        self._attempt_s = self.settings.attempt_timeout_ms / 1000
        self._names: dict[str, bytes] = {}
        self._receive_timeout_ms = -1
        self._shared = SharedArrays.from_settings(self.settings)
        self.attempts_total = 0

    def __enter__(self) -> Transport:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the socket (a later call opens a new one) and remove this client's segments
        (arrays already returned stay valid)."""
        self._drop_socket()
        if self._shared is not None:
            self._shared.close()

    # ------------------------------------------------------------------------------- calls

    def call(
        self,
        service: str,
        message: BaseModel,
        *,
        request_id: str | None = None,
        timeout_ms: int | None = None,
        on_behalf_of: str | None = None,
    ) -> codec.Decoded:
        """Send a message, return the decoded reply; an error reply raises its typed error.

        `on_behalf_of` (an agent id) is for a gateway acting for an agent: workers take it only
        from a key in their LATENTMAS_GATEWAY_KEYS and answer anyone else UNAUTHORIZED.
        """
        plan = _calls.call_plan(
            self._shared, self.settings, service=service, message=message,
            request_id=request_id, on_behalf_of=on_behalf_of,
        )  # fmt: skip
        try:
            request_id, frames = next(plan)
            while True:
                body = self.request(service, frames, timeout_ms=timeout_ms, request_id=request_id)
                request_id, frames = plan.send(body)
        except StopIteration as done:
            decoded: codec.Decoded = done.value
            return decoded
        finally:
            plan.close()

    @property
    def shared_memory(self) -> SharedArrays | None:
        """This client's segments and mapped replies (None: shared memory is off)."""
        return self._shared

    def empty(self, shape: tuple[int, ...], dtype: npt.DTypeLike) -> npt.NDArray[Any]:
        """An array to fill and send: with shared memory on, it lies in a segment of this
        client's, so a call carries it to a worker on this host without any copy."""
        if self._shared is None:
            return np.empty(shape, dtype)
        return self._shared.pool.empty(shape, dtype)

    def service_available(self, service: str, *, timeout_ms: int | None = None) -> bool:
        """MMI `mmi.service`: whether the broker has a worker for `service` now."""
        return _calls.mmi_found(
            self.request("mmi.service", [service.encode("ascii")], timeout_ms=timeout_ms)
        )

    def request(
        self,
        service: str,
        body: Sequence[_calls.Frame],
        *,
        timeout_ms: int | None = None,
        request_id: str | None = None,
        on_partial: PartialCallback | None = None,
    ) -> list[zmq.Frame]:
        """Raw frames in, the FINAL's body frames out (zero-copy); raises Timeout.

        `request_id` only labels the Timeout error: the id travels inside `body`.
        """
        name = self._names.get(service) or self._name(service)
        frames = mdp.client_request(name, body, dialect=self._dialect)
        started = time.monotonic()
        deadline = started + (timeout_ms or self.settings.request_timeout_ms) / 1000
        attempts = 0
        while attempts <= self.settings.retries_max:
            remaining_s = deadline - time.monotonic()
            if remaining_s < ATTEMPT_S_MIN:
                break
            attempts += 1
            self.attempts_total += 1
            wait_s = min(remaining_s, self._attempt_s)
            reply = self._attempt(name, frames, wait_s, on_partial)
            if reply is not None:
                return reply
            self._drop_socket()  # RFC 18: close the socket, open a new one, resend
        waited_ms = round((time.monotonic() - started) * 1000)
        raise _calls.timeout_error(service, request_id, attempts, waited_ms)

    # ---------------------------------------------------------------------------- internals

    def _name(self, service: str) -> bytes:
        name = self._names[service] = service.encode("ascii")
        return name

    def _attempt(
        self,
        service: bytes,
        frames: Sequence[_calls.Frame],
        wait_s: float,
        on_partial: PartialCallback | None,
    ) -> list[zmq.Frame] | None:
        """Send once, then block for the FINAL (RCVTIMEO bounds each receive); None on silence."""
        socket = self._socket or self._open_socket()
        try:
            wire.send_frames(socket, frames)
            deadline = time.monotonic() + wait_s
            while (left_ms := math.ceil((deadline - time.monotonic()) * 1000)) > 0:
                if left_ms != self._receive_timeout_ms:
                    socket.setsockopt(zmq.RCVTIMEO, left_ms)
                    self._receive_timeout_ms = left_ms
                try:
                    received = wire.recv_frames(socket, copied=wire.DEALER_ENVELOPE_FRAMES)
                except zmq.Again:
                    return None
                reply = _calls.read_reply(received, service, self._dialect)
                if reply is None:
                    continue
                if reply.final:
                    return list(reply.body)
                if on_partial is not None:
                    on_partial(list(reply.body))
                deadline = time.monotonic() + wait_s  # a PARTIAL shows the request is alive
            return None
        except BaseException:
            self._drop_socket()  # a reply may still be on its way: never reuse this socket
            raise

    def _open_socket(self) -> zmq.Socket[bytes]:
        socket = self._context.socket(zmq.DEALER)
        socket.setsockopt(zmq.LINGER, 0)
        use_curve(socket, self.settings.curve_secret_key_file, self.settings.curve_server_key_file)
        socket.connect(self.settings.broker_url)
        self._socket = socket
        self._receive_timeout_ms = -1
        return socket

    def _drop_socket(self) -> None:
        socket, self._socket = self._socket, None
        if socket is not None:
            socket.close(linger=0)


__all__ = ["PartialCallback", "Transport"]
