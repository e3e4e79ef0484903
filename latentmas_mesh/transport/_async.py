"""The asyncio client transport: concurrent requests, one DEALER socket each, retried safely."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any

import numpy as np
import numpy.typing as npt
import zmq
import zmq.asyncio
from pydantic import BaseModel

from latentmas_mesh import codec
from latentmas_mesh.transport import _calls
from latentmas_mesh.transport._curve import use_curve
from latentmas_mesh.transport._settings import TransportSettings
from latentmas_mesh.transport._shared import SharedArrays

ATTEMPT_S_MIN = 0.005
"""Less time than this left is not worth another attempt: the call has timed out."""


class AsyncTransport:
    """The asyncio twin of `Transport`: same calls, awaitable, and safe to use concurrently.

    Each in-flight request holds its own socket from a small pool (at most `sockets_max`), so
    replies never need matching: MDP's client dialog is one request at a time per socket. A socket
    whose attempt timed out is closed, never returned to the pool.
    """

    def __init__(
        self,
        settings: TransportSettings | None = None,
        *,
        context: zmq.Context[zmq.Socket[bytes]] | None = None,
    ) -> None:
        self.settings = settings or TransportSettings()
        base = context or zmq.Context.instance()
        self._context = zmq.asyncio.Context.shadow(base.underlying)
        self._idle: list[zmq.asyncio.Socket] = []
        self._slots = asyncio.Semaphore(self.settings.sockets_max)
        self._dialect = _calls.dialect_of(self.settings)
        self._shared = SharedArrays.from_settings(self.settings)
        self.attempts_total = 0

    async def __aenter__(self) -> AsyncTransport:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the idle sockets (in-flight ones close when their call ends) and remove this
        client's segments (arrays already returned stay valid)."""
        while self._idle:
            self._idle.pop().close(linger=0)
        if self._shared is not None:
            self._shared.close()

    async def call(
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
                body = await self.request(
                    service, frames, timeout_ms=timeout_ms, request_id=request_id
                )
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

    async def service_available(self, service: str, *, timeout_ms: int | None = None) -> bool:
        """MMI `mmi.service`: whether the broker has a worker for `service` now."""
        body = await self.request("mmi.service", [service.encode("ascii")], timeout_ms=timeout_ms)
        return _calls.mmi_found(body)

    async def request(
        self,
        service: str,
        body: Sequence[_calls.Frame],
        *,
        timeout_ms: int | None = None,
        request_id: str | None = None,
    ) -> list[zmq.Frame]:
        """Raw frames in, the FINAL's body frames out (zero-copy); raises Timeout."""
        frames = _calls.request_frames(service, body, self.settings)
        total_ms = timeout_ms or self.settings.request_timeout_ms
        started = time.monotonic()
        deadline = started + total_ms / 1000
        attempts = 0
        async with self._slots:
            while attempts <= self.settings.retries_max:
                remaining_s = deadline - time.monotonic()
                if remaining_s < ATTEMPT_S_MIN:
                    break
                attempts += 1
                self.attempts_total += 1
                wait_s = min(remaining_s, self.settings.attempt_timeout_ms / 1000)
                reply = await self._attempt(service, frames, wait_s)
                if reply is not None:
                    return reply
        waited_ms = round((time.monotonic() - started) * 1000)
        raise _calls.timeout_error(service, request_id, attempts, waited_ms)

    async def _attempt(
        self, service: str, frames: Sequence[_calls.Frame], wait_s: float
    ) -> list[zmq.Frame] | None:
        socket = self._idle.pop() if self._idle else self._open_socket()
        try:
            await socket.send_multipart(frames, copy=False)
            deadline = time.monotonic() + wait_s
            while (left_s := deadline - time.monotonic()) > 0:
                received = await asyncio.wait_for(socket.recv_multipart(copy=False), left_s)
                reply = _calls.read_reply(received, service.encode("ascii"), self._dialect)
                if reply is not None and reply.final:
                    self._idle.append(socket)
                    return list(reply.body)
                if reply is not None:
                    deadline = time.monotonic() + wait_s
        except TimeoutError:
            pass
        except BaseException:
            socket.close(linger=0)
            raise
        socket.close(linger=0)  # RFC 18: a silent attempt's socket is closed; retry on a new one
        return None

    def _open_socket(self) -> zmq.asyncio.Socket:
        socket = self._context.socket(zmq.DEALER)
        socket.setsockopt(zmq.LINGER, 0)
        use_curve(socket, self.settings.curve_secret_key_file, self.settings.curve_server_key_file)
        socket.connect(self.settings.broker_url)
        return socket


__all__ = ["AsyncTransport"]
