"""The worker base: an MDP/0.2 worker loop around one handler; bad input never kills it."""

from __future__ import annotations

import contextlib
import gc
import itertools
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeAlias, assert_never, cast

import numpy as np
import zmq
from pydantic import BaseModel

from latentmas_mesh import codec, mdp, wire
from latentmas_mesh.alignment import Allocator
from latentmas_mesh.errors import InternalError, ProtocolError, Unauthorized
from latentmas_mesh.log import get_logger
from latentmas_mesh.protocol import ErrorBody
from latentmas_mesh.shm import PeerSegments, Scope, SegmentPool
from latentmas_mesh.transport._curve import use_curve
from workers.settings import WorkerSettings
from workers.state import (
    Action,
    Connect,
    Disconnect,
    Heartbeat,
    Limits,
    Reconnect,
    WorkerState,
)

Frame: TypeAlias = bytes | memoryview | zmq.Frame
UNKNOWN_REQUEST_ID = "unknown"
POLL_MS_MAX = 100
"""The loop wakes at least this often, even with nothing due, to see `stop()`."""
_instance_ids = itertools.count()


def now_ms() -> int:
    """The worker's clock: monotonic integer milliseconds (passed into the liveness state)."""
    return time.monotonic_ns() // 1_000_000


def limits_from(settings: WorkerSettings) -> Limits:
    """The liveness intervals a worker's settings ask for."""
    return Limits(
        heartbeat_ms=settings.heartbeat_ms,
        liveness=settings.liveness,
        reconnect_ms_min=settings.reconnect_ms_min,
        reconnect_ms_max=settings.reconnect_ms_max,
        drain_ms_max=settings.drain_ms_max,
    )


@dataclass(frozen=True, slots=True)
class RequestContext:
    """What a handler knows about a request besides its body.

    `identity` is who the request is for: the client's authenticated identity, the Z85 CURVE
    public key that the broker's ZAP handler reported as User-Id (carried in the client address
    frame), or the agent a gateway named in the header's `on_behalf_of` when that key is a
    configured gateway's (`acting_for`; `gateway` then holds the gateway's key). It is None when
    the broker runs without CURVE, or is not ours. Derive who pays from this, never from the
    body. Raw handlers (no decode) always see the peer's own key.
    """

    request_id: str | None
    service: str
    identity: str | None
    client_address: bytes
    gateway: str | None = None
    allocate: Allocator = np.empty
    """Where a handler writes large result arrays: segments lent to the client when its request
    came in shared memory (the reply then carries references, not copies), else np.empty."""

    @property
    def peer(self) -> str | None:
        """The key the request arrived with (the gateway's, for one made on an agent's behalf):
        whom replies are sealed to."""
        return self.gateway or self.identity


def acting_for(
    context: RequestContext, on_behalf_of: str | None, gateway_keys: frozenset[str]
) -> RequestContext:
    """The context for a request whose header names `on_behalf_of` (None: the peer itself).

    Only a configured gateway key may name an agent: the gateway authenticated the agent (its
    bearer token) and is trusted to say who it is. Anyone else naming one is refused, not served
    as itself, so a request meant for one account can never be charged to another. A request
    already acting for an agent is not re-delegated.
    """
    if on_behalf_of is None:
        return context
    if context.gateway is not None or context.identity not in gateway_keys:
        msg = "only a gateway's key may act on behalf of an agent"
        raise Unauthorized(msg, details={"on_behalf_of": on_behalf_of})
    return replace(context, identity=on_behalf_of, gateway=context.identity)


RawHandler: TypeAlias = Callable[[list[zmq.Frame], RequestContext], Sequence[Frame]]
"""Body frames in (zero-copy `zmq.Frame`s), reply body frames out."""
Handler: TypeAlias = Callable[[codec.Decoded, RequestContext], BaseModel]
"""A decoded request in, a reply message out; raise a ProtocolError to answer with an error."""


def error_frames(error: ProtocolError, request_id: str | None) -> list[bytes | memoryview]:
    """The typed error reply (an encoded ErrorBody) for a failed request."""
    body = ErrorBody.from_error(error)
    return codec.encode(body, request_id=request_id or UNKNOWN_REQUEST_ID)


@dataclass(slots=True)
class _Job:
    generation: int
    client_address: bytes
    body: list[zmq.Frame]
    context: RequestContext


class RawWorker:
    """An MDP/0.2 worker for one service, handling one request at a time with `handler`.

    The loop sends READY, answers heartbeats, reconnects on a new socket with exponential backoff
    when the broker falls silent or says DISCONNECT, and turns every exception of the handler into
    a typed error reply. With `handler_thread` (the default) the handler runs on its own thread so
    heartbeats go on during long work; its reply comes back over an inproc pipe, zero-copy. When
    to do what is decided by `workers.state.WorkerState`; this class only moves frames.
    """

    def __init__(
        self,
        service: str,
        handler: RawHandler,
        settings: WorkerSettings | None = None,
        *,
        context: zmq.Context[zmq.Socket[bytes]] | None = None,
    ) -> None:
        self.service = service
        self.settings = settings or WorkerSettings()
        self._service_bytes = service.encode("ascii")
        self._handler = handler
        self._context = context or zmq.Context.instance()
        self._delimited = self.settings.dialect == "majortomo"
        self._handler_thread = self.settings.handler_thread
        self._log = get_logger("worker").bind(service=service)
        self._stop = threading.Event()
        self._socket: zmq.Socket[bytes] | None = None
        self._generation = 0
        self._state = WorkerState(limits_from(self.settings))
        self.handled = 0
        self.connections = 0
        self.ready = threading.Event()

    # ------------------------------------------------------------------------------ lifecycle

    def stop(self) -> None:
        """Finish the request in hand (within drain_ms_max), send DISCONNECT, return from run."""
        self._stop.set()

    def run(self) -> None:
        """Serve until `stop()`; never raises for anything a peer sends."""
        jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        pipe = self._context.socket(zmq.PAIR)
        address = f"inproc://latentmas-worker-{id(self)}-{next(_instance_ids)}"
        pipe.bind(address)
        thread = None
        if self._handler_thread:
            thread = threading.Thread(
                target=self._handler_loop, args=(jobs, address), name="handler", daemon=True
            )
            thread.start()
        gc.freeze()  # what start-up allocated is permanent: collections skip it (no latency spikes)
        try:
            self._loop(jobs, pipe)
        finally:
            self._close(send_disconnect=True)
            jobs.put(None)
            if thread is not None:
                thread.join(timeout=self.settings.drain_ms_max / 1000)
            pipe.close(linger=0)
            self._log.info("worker_stopped", handled=self.handled)

    def _loop(self, jobs: queue.SimpleQueue[_Job | None], pipe: zmq.Socket[bytes]) -> None:
        """Ask the state what is due, do it, wait for a message, hand it on; until drained."""
        now = now_ms()
        while True:
            if self._stop.is_set():
                self._state.drain(now)
            if self._act(self._state.tick(now), now):
                return
            if self._socket is not None and not self._handler_thread:
                frames = self._receive_inline(self._socket)
                now = now_ms()  # after the wait: the time this message arrived
                if frames is not None:
                    self._on_message(frames, jobs, now)
                continue
            sockets = [pipe] if self._socket is None else [pipe, self._socket]
            ready = wire.readable(sockets, self._poll_ms(now))
            now = now_ms()  # after the wait: the time these messages arrived
            if pipe in ready:
                self._on_result(pipe, now)
            if self._socket is not None and self._socket in ready:
                self._on_broker(jobs, now)

    def _act(self, action: Action | None, now: int) -> bool:
        """Do what the state decided; True when the drain is over and the loop must end."""
        match action:
            case None:
                return False
            case Heartbeat():
                self._send(mdp.heartbeat(delimited=self._delimited))
            case Connect():
                self._connect()
            case Reconnect(reason=reason, delay_ms=delay_ms):
                self._close(send_disconnect=False)
                self._log.info("worker_reconnecting", reason=reason.value, delay_ms=delay_ms)
            case Disconnect():
                self._close(send_disconnect=True)
                return True
            case _:
                assert_never(action)
        return False

    def _receive_inline(self, socket: zmq.Socket[bytes]) -> list[Any] | None:
        """Inline handlers have no pipe to watch: one blocking receive, bounded by RCVTIMEO."""
        try:
            return wire.recv_frames(socket, copied=wire.WORKER_ENVELOPE_FRAMES)
        except zmq.Again:
            return None

    def _poll_ms(self, now: int) -> int:
        """Wait until the state's next deadline, and at most POLL_MS_MAX (to see stop())."""
        wake = now + POLL_MS_MAX
        deadline = self._state.next_deadline_ms()
        if deadline is not None:
            wake = min(wake, deadline)
        return max(0, wake - now + 1)

    # ----------------------------------------------------------------------------- connection

    def _connect(self) -> None:
        socket = self._context.socket(zmq.DEALER)
        socket.setsockopt(zmq.LINGER, 1_000)
        socket.setsockopt(zmq.RCVTIMEO, max(1, min(100, self.settings.heartbeat_ms // 4)))
        use_curve(socket, self.settings.curve_secret_key_file, self.settings.curve_server_key_file)
        socket.connect(self.settings.connect)
        self._socket = socket
        self._generation += 1
        self.connections += 1
        self._send(mdp.worker_ready(self._service_bytes, delimited=self._delimited))
        self._log.info("worker_ready", connect=self.settings.connect, generation=self._generation)
        self.ready.set()

    def _close(self, *, send_disconnect: bool) -> None:
        socket, self._socket = self._socket, None
        if socket is None:
            return
        if send_disconnect:
            with contextlib.suppress(zmq.ZMQError):  # a broker that is gone needs no goodbye
                socket.send_multipart(mdp.disconnect(delimited=self._delimited), zmq.NOBLOCK)
        socket.close(linger=100 if send_disconnect else 0)

    def _send(self, frames: Sequence[Frame]) -> None:
        if self._socket is None:
            return
        try:
            wire.send_frames(self._socket, frames, wire.NOBLOCK)
        except zmq.Again:
            self._log.warning("worker_send_dropped", reason="broker queue full")

    # -------------------------------------------------------------------------------- requests

    def _on_broker(self, jobs: queue.SimpleQueue[_Job | None], now: int) -> None:
        """The socket polled readable: take one message (the next poll finds any other)."""
        socket = self._socket
        assert socket is not None  # polled only while connected
        try:
            frames = wire.recv_frames(socket, wire.NOBLOCK, copied=wire.WORKER_ENVELOPE_FRAMES)
        except zmq.Again:
            return
        self._on_message(frames, jobs, now)

    def _on_message(
        self, frames: list[Any], jobs: queue.SimpleQueue[_Job | None], now: int
    ) -> None:
        try:
            event = mdp.parse_for_worker(frames)
        except mdp.RefusedBody as refused:  # a request we cannot take is answered, not dropped
            self._state.broker_message(now)
            self._refuse(refused, now)
            return
        except mdp.MalformedFrame as error:
            self._log.warning("worker_dropped_frame", reason=error.reason)
            return
        self._state.broker_message(now)
        if isinstance(event, mdp.BrokerRequest):
            self._on_request(event, jobs, now)
        elif isinstance(event, mdp.BrokerDisconnect):
            self._act(self._state.broker_disconnected(now), now)

    def _on_request(
        self,
        event: mdp.BrokerRequest[zmq.Frame],
        jobs: queue.SimpleQueue[_Job | None],
        now: int,
    ) -> None:
        refusal = self._state.accept_request()
        if refusal is not None:
            # RFC 18: workers handle at most one request at a time; a broker breaking that gets
            # nothing from us, and its client's retry (same id) will find a free worker.
            self._log.warning("worker_dropped_request", reason=refusal.value)
            return
        address = mdp.unpack_client_address(event.client_address)
        context = RequestContext(None, self.service, address.identity, event.client_address)
        body = list(event.body)
        if self._handler_thread:
            jobs.put(_Job(self._generation, event.client_address, body, context))
        else:
            self._reply(event.client_address, self.call(body, context), now)
            self._state.request_done(now)

    def _refuse(self, refused: mdp.RefusedBody, now: int) -> None:
        """Answer a REQUEST whose body the framing refused with its typed error (no handler).

        Silence would leave the broker holding the request against this worker until its
        deadline; the error goes back at once, with the request id from the first body frame.
        """
        event = refused.event
        assert isinstance(event, mdp.BrokerRequest)  # parse_for_worker refuses only REQUESTs
        refusal = self._state.accept_request()
        if refusal is not None:
            self._log.warning("worker_dropped_request", reason=refusal.value)
            return
        request_id = codec.request_id_of(cast(list[Frame], list(event.body)))  # what we received
        self._log.info("request_refused", request_id=request_id, reason=refused.reason)
        address = mdp.unpack_client_address(event.client_address)
        context = RequestContext(request_id, self.service, address.identity, event.client_address)
        self._reply(event.client_address, self.refusal(refused.to_error(), context), now)
        self._state.request_done(now)

    def refusal(self, error: ProtocolError, context: RequestContext) -> Sequence[Frame]:
        """The reply to a request refused before any handler saw it; a subclass that seals its
        replies (the ledger) seals this one too."""
        return error_frames(error, context.request_id)

    def _handler_loop(self, jobs: queue.SimpleQueue[_Job | None], address: str) -> None:
        pipe = self._context.socket(zmq.PAIR)
        pipe.connect(address)
        try:
            while (job := jobs.get()) is not None:
                reply = self.call(job.body, job.context)
                header = [job.generation.to_bytes(8, "little"), job.client_address]
                pipe.send_multipart([*header, *reply], copy=False)
        finally:
            pipe.close(linger=0)

    def _on_result(self, pipe: zmq.Socket[bytes], now: int) -> None:
        frames = pipe.recv_multipart(copy=False)
        self._state.request_done(now)
        if int.from_bytes(frames[0].bytes, "little") != self._generation:
            self._log.info("worker_reply_abandoned", reason="connection replaced meanwhile")
            return
        self._reply(frames[1].bytes, frames[2:], now)

    def _reply(self, client_address: bytes, body: Sequence[Frame], now: int) -> None:
        self.handled += 1
        try:
            self._send(mdp.worker_reply(client_address, body, delimited=self._delimited))
        except TypeError:  # the handler returned something that is not frames: a bug, not a crash
            self._log.exception("handler_returned_non_frames")
            internal = InternalError(f"the {self.service} handler returned no frames")
            self._send(
                mdp.worker_reply(
                    client_address, error_frames(internal, None), delimited=self._delimited
                )
            )
        self._state.sent(now)  # a reply implies a heartbeat (RFC 18)

    def call(self, body: list[zmq.Frame], context: RequestContext) -> Sequence[Frame]:
        """Run the handler; any exception becomes a typed error reply, never a crash."""
        try:
            return self._handler(body, context)
        except ProtocolError as error:
            request_id = context.request_id or codec.request_id_of(body)
            self._log.info(
                "request_failed",
                request_id=request_id,
                code=error.code.value,
                message=error.message,
            )
            return error_frames(error, request_id)
        except Exception as error:  # a handler bug must not kill the worker
            request_id = context.request_id or codec.request_id_of(body)
            self._log.exception("handler_crashed", request_id=request_id)
            internal = InternalError(
                f"the {self.service} handler failed: {type(error).__name__}",
                details={"exception": type(error).__name__},
            )
            return error_frames(internal, request_id)


class Worker(RawWorker):
    """A worker whose handler takes a decoded message and returns a message (the usual kind).

    `Worker("latentmas.ledger", handle, settings)` with
    `def handle(request: Decoded, context: RequestContext) -> BaseModel`. Decoding errors and
    ProtocolErrors raised by `handle` reach the client as typed errors; one structlog event per
    request carries its id, service, outcome and elapsed time. Who the request is for is decided
    here, once for every service, before `handle` runs (`acting_for`, LATENTMAS_GATEWAY_KEYS).
    """

    def __init__(
        self,
        service: str,
        handler: Handler,
        settings: WorkerSettings | None = None,
        *,
        context: zmq.Context[zmq.Socket[bytes]] | None = None,
    ) -> None:
        super().__init__(service, self._handle_frames, settings, context=context)
        self.handler = handler
        self._limits = codec.CodecLimits.from_settings(self.settings)
        self._gateway_keys = self.settings.gateway_keys
        self._pool: SegmentPool | None = None
        self._peers: PeerSegments | None = None
        directory = self.settings.shared_memory_dir
        if directory is not None:
            bytes_max = self.settings.shared_memory_bytes_max
            self._pool = SegmentPool(
                directory,
                bytes_max=bytes_max,
                array_bytes_min=self.settings.shared_memory_array_bytes_min,
            )
            self._peers = PeerSegments(directory, mapped_bytes_max=bytes_max)

    def run(self) -> None:
        try:
            super().run()
        finally:
            if self._pool is not None:
                self._pool.close()

    def _handle_frames(self, body: list[zmq.Frame], context: RequestContext) -> Sequence[Frame]:
        started = time.perf_counter()
        outcome = "ok"
        scope: Scope | None = None
        try:
            reader = None if self._peers is None else self._peers.reader(release=False)
            decoded = codec.decode(
                body,
                limits=self._limits,
                check_finite=self.settings.check_finite,
                segments=reader,
            )
            context = replace(context, request_id=decoded.request_id)
            context = acting_for(context, decoded.on_behalf_of, self._gateway_keys)
            if reader is not None and reader.owner and self._pool is not None:
                # the client mapped its request here: lend it the reply's memory too
                scope = self._pool.scope(lessee=reader.owner)
                context = replace(context, allocate=scope.allocate)
            reply = self.handler(decoded, context)
            frames = codec.encode(reply, request_id=decoded.request_id, segments=scope)
            if scope is not None:
                scope.end(lent=True)  # what the frames reference stays the client's to read
                scope = None
            return frames
        except ProtocolError as error:
            outcome = error.code.value
            raise
        except Exception:
            outcome = "INTERNAL"
            raise
        finally:
            if scope is not None:  # nothing was sent that references it
                scope.end(lent=False)
            self._log.info(
                "request",
                request_id=context.request_id or codec.request_id_of(body),
                outcome=outcome,
                elapsed_ms=round((time.perf_counter() - started) * 1000, 3),
            )


__all__ = [
    "UNKNOWN_REQUEST_ID",
    "Handler",
    "RawHandler",
    "RawWorker",
    "RequestContext",
    "Worker",
    "acting_for",
    "error_frames",
    "limits_from",
    "now_ms",
]
