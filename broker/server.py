"""The broker's one socket loop: poll, receive, parse, apply, send; timers at its own pace."""

from __future__ import annotations

import dataclasses
import errno
import gc
import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIServer

import zmq
from zmq.auth.thread import ThreadAuthenticator

from broker import security
from broker.http import start_http
from broker.metrics import BrokerMetrics
from broker.replies import Replies
from broker.state import BrokerState, ErrorReply, Send
from latentmas_mesh import mdp
from latentmas_mesh.errors import ErrorCode
from latentmas_mesh.log import get_logger
from latentmas_mesh.wire import recv_frames, send_routed

if TYPE_CHECKING:  # the settings model is pydantic, which the routing code never needs
    from broker.settings import BrokerSettings

POLL_MS_MAX = 100
"""A receive waits at most this long, so timers and a stop request are seen promptly."""
GAUGE_EVERY_US = 500_000
LINGER_MS = 1_000
"""On close, how long queued DISCONNECTs and replies may still be delivered."""
LOOP_SILENT_US_MAX = 5_000_000
"""/healthz answers 503 when the loop (which wakes at least every POLL_MS_MAX) has not run an
iteration for this long: the broker is stuck, and a liveness probe should restart it."""


def now_us() -> int:
    """The broker's clock: monotonic integer microseconds (passed into the routing state)."""
    return time.monotonic_ns() // 1000


class Broker:
    """An MDP/0.2 broker on one ROUTER socket, which may bind several endpoints.

    `bind()` then `run()` (blocks until `stop()` and the drain finish), or `serve_forever()` for
    both. `stop()` is safe from any thread or a signal handler: it begins the graceful shutdown
    (stop accepting, let in-flight requests finish within `drain_ms_max`, DISCONNECT workers).
    """

    def __init__(
        self,
        settings: BrokerSettings | None = None,
        *,
        context: zmq.Context[zmq.Socket[bytes]] | None = None,
        error_reply: ErrorReply | None = None,
    ) -> None:
        if settings is None:  # pydantic is loaded only when the settings are built here
            from broker.settings import BrokerSettings

            settings = BrokerSettings()
        self.settings = settings
        self._context = context or zmq.Context.instance()
        self._log = get_logger("broker")
        replies = Replies(settings.header_bytes_max)
        self.metrics = BrokerMetrics(
            request_id_of=replies.request_id_of,
            log_requests=self.settings.log_level == "debug",
        )
        limits = self.settings.limits()
        self._worker_keys: dict[str, frozenset[bytes]] = {}
        self._curve = self.settings.curve_secret_key_file is not None
        if self._curve:
            self._worker_keys = security.load_worker_keys(self.settings.curve_worker_keys_dir)
            limits = dataclasses.replace(limits, worker_services=self._worker_keys)
        self.state = BrokerState(
            limits, error_reply=error_reply or replies.error_reply, observer=self.metrics
        )
        self._socket: zmq.Socket[bytes] | None = None
        self._authenticator: ThreadAuthenticator | None = None
        self._client_keys: security.ClientKeys | None = None
        self._http: WSGIServer | None = None
        self._last_loop_us = now_us()  # set by every loop iteration; read by /healthz
        # Tracked replies per client, oldest first (ZeroMQ releases one peer's messages in order).
        self._trackers: dict[bytes, deque[tuple[zmq.MessageTracker, int]]] = {}
        self._stop = threading.Event()
        self.endpoints: list[str] = []
        self.metrics_port: int | None = None
        self.ready = threading.Event()

    # ------------------------------------------------------------------------------ lifecycle

    def bind(self) -> list[str]:
        """Create the socket, bind every endpoint, start metrics; returns the bound endpoints.

        Wildcard ports (`tcp://127.0.0.1:*`) are resolved, so callers learn the real address.
        """
        socket = self._context.socket(zmq.ROUTER)
        socket.setsockopt(zmq.ROUTER_MANDATORY, 1)  # an unreachable peer raises, not vanishes
        socket.setsockopt(zmq.MAXMSGSIZE, self.settings.frame_bytes_max)
        socket.setsockopt(zmq.SNDHWM, self.settings.socket_hwm_max)
        socket.setsockopt(zmq.RCVHWM, self.settings.socket_hwm_max)
        socket.setsockopt(zmq.LINGER, LINGER_MS)
        if self.settings.curve_secret_key_file is not None:
            self._client_keys = security.ClientKeys(
                self.settings.curve_client_keys_dir, frozenset(self._worker_keys)
            )
            self._authenticator = security.serve_curve(
                socket, self._context, self.settings.curve_secret_key_file,
                self._client_keys.allowed,
            )  # fmt: skip
        self._socket = socket
        for endpoint in self.settings.bind:
            socket.bind(endpoint)
            last = socket.getsockopt(zmq.LAST_ENDPOINT)
            self.endpoints.append(last.decode() if isinstance(last, bytes) else str(last))
        if self.settings.metrics_port is not None:
            self._http, self.metrics_port = start_http(
                self.settings.metrics_host,
                self.settings.metrics_port,
                self.metrics.registry,
                healthy=lambda: now_us() - self._last_loop_us < LOOP_SILENT_US_MAX,
            )
        self._log.info(
            "listening", endpoints=self.endpoints, metrics_port=self.metrics_port, curve=self._curve
        )
        return self.endpoints

    def serve_forever(self) -> None:
        """Bind and run until stopped."""
        self.bind()
        self.run()

    def stop(self) -> None:
        """Begin the graceful shutdown (thread- and signal-safe: it only sets an event)."""
        self._stop.set()

    def close(self) -> None:
        """Release the socket, the authenticator and the metrics server (idempotent)."""
        if self._socket is not None:
            self._socket.close(linger=LINGER_MS)
            self._socket = None
        if self._authenticator is not None:
            self._authenticator.stop()
            self._authenticator = None
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None

    # ----------------------------------------------------------------------------------- loop

    def run(self) -> None:
        """The loop: until stopped and drained. A bad frame is counted and dropped, never fatal.

        One blocking receive per message, bounded by RCVTIMEO so that timers and a stop request
        are looked at within a tick even when nothing arrives.
        """
        socket = self._socket
        if socket is None:
            raise RuntimeError("call bind() before run()")
        tick_us = max(1_000, self.state.limits.heartbeat_us // 4)
        socket.setsockopt(zmq.RCVTIMEO, max(1, min(POLL_MS_MAX, tick_us // 1000)))
        next_tick_us = next_gauge_us = 0
        drain_deadline_us: int | None = None
        curve = self._curve
        gc.freeze()  # what start-up allocated is permanent: collections skip it (no latency spikes)
        self.ready.set()
        now = now_us()
        try:
            while True:
                self._last_loop_us = now
                if self._stop.is_set():
                    if drain_deadline_us is None:
                        self._send(self.state.drain(now), now)
                        drain_deadline_us = now + self.settings.drain_ms_max * 1000
                        self._log.info("draining", in_flight=self.state.in_flight)
                    if self.state.in_flight == 0 or now >= drain_deadline_us:
                        self._send(self.state.shutdown(now), now)
                        break
                if now >= next_tick_us:
                    if self._client_keys is not None:
                        self._client_keys.refresh()
                    self._send(self.state.tick(now), now)
                    self.metrics.requests.publish()
                    next_tick_us = now + tick_us
                    if now >= next_gauge_us:
                        self.metrics.update_gauges(self.state.stats())
                        self.metrics.held_bytes.set(self.state.held_bytes)
                        next_gauge_us = now + GAUGE_EVERY_US
                if self._trackers:
                    self._release_read()
                try:
                    frames = recv_frames(socket, first_as_frame=curve)
                except zmq.Again:
                    now = now_us()
                    continue
                now = now_us()  # after the wait: the time this message arrived
                try:
                    self._handle(frames, now)
                except Exception:  # a bug must cost one message, never the broker
                    self._log.exception("message_failed")
                    self.metrics.rejected_frame("internal_error", b"")
        finally:
            self._log.info("stopped")
            self.close()

    def _handle(self, frames: list[Any], now: int) -> None:
        """One message from a peer: parse the envelope, apply it, send what follows.

        `frames` holds the routing id and envelope as bytes and the body as zmq.Frames
        (`wire.recv_frames`), which are forwarded as they are: the body is never copied. With
        CURVE the routing id arrives as a Frame, whose metadata names the authenticated peer.
        """
        identity = None
        if self._curve:
            identity = security.user_id(frames[0])
            frames[0] = frames[0].bytes
        peer: bytes = frames[0]
        try:
            event = mdp.parse(frames[1:])
        except mdp.RefusedBody as refused:  # owed an answer: the request gets a typed error
            self.metrics.rejected_frame(refused.reason, peer, refused.message)
            self._send(self.state.refuse(peer, refused, now, identity), now)
            return
        except mdp.MalformedFrame as error:
            self.metrics.rejected_frame(error.reason, peer, error.message)
            return
        if identity is not None and self._client_keys and not self._client_keys.admits(identity):
            self._refuse_withdrawn(peer, event, identity, now)
            return
        self._send(self.state.apply(peer, event, now, identity), now)

    def _refuse_withdrawn(
        self, peer: bytes, event: mdp.BrokerEvent[Any], identity: str, now: int
    ) -> None:
        """A message under a key withdrawn since its connection was admitted (a revoked
        agent): a request is answered UNAUTHORIZED, anything else dropped."""
        message = "this key was withdrawn from the broker's allow list (revoked)"
        self.metrics.rejected_frame("key_withdrawn", peer, message)
        if isinstance(event, mdp.ClientRequest):
            refused = mdp.RefusedBody("key_withdrawn", message, event, code=ErrorCode.UNAUTHORIZED)
            self._send(self.state.refuse(peer, refused, now, identity), now)

    def _send(self, sends: Sequence[Send], now: int) -> None:
        """Send each message; a full or vanished peer loses it; a vanished worker is dropped.

        A send with `tracked_bytes` goes out with its last frame tracked; once ZeroMQ releases
        it, `_release_read` tells the state those reply bytes no longer count.
        """
        socket = self._socket
        assert socket is not None  # the loop owns the socket while it runs
        for peer, frames, tracked_bytes in sends:
            if not frames:  # discarded by the state (a slow consumer's reply)
                continue
            message, tracker = frames, None
            if tracked_bytes:
                last = zmq.Frame(_buffer_of(frames[-1]), copy=False, track=True)
                message, tracker = [*frames[:-1], last], last.tracker
            try:
                send_routed(socket, peer, message)
            except zmq.ZMQError as error:
                if tracked_bytes:
                    self.state.replies_read(peer, tracked_bytes)  # never queued: nothing unread
                self._send_failed(peer, error, now)
                continue
            if tracker is not None:
                self._trackers.setdefault(peer, deque()).append((tracker, tracked_bytes))

    def _send_failed(self, peer: bytes, error: zmq.ZMQError, now: int) -> None:
        """Count a lost send; a peer the socket cannot reach is dropped if it is a worker."""
        if isinstance(error, zmq.Again):
            self.metrics.rejected_frame("peer_queue_full", peer)
        elif error.errno != errno.EHOSTUNREACH:
            self.metrics.rejected_frame("send_failed", peer, str(error))
        else:
            self.metrics.rejected_frame("peer_unreachable", peer)
            self._send(self.state.forget_worker(peer, now), now)

    def _release_read(self) -> None:
        """Report every tracked reply ZeroMQ has released (each peer's, oldest first)."""
        emptied = []
        for peer, trackers in self._trackers.items():
            while trackers and trackers[0][0].done:
                self.state.replies_read(peer, trackers.popleft()[1])
            if not trackers:
                emptied.append(peer)
        for peer in emptied:
            del self._trackers[peer]


def _buffer_of(frame: object) -> bytes | memoryview:
    """A frame's bytes without a copy (a zmq.Frame's own buffer keeps the frame alive)."""
    if isinstance(frame, bytes | memoryview):
        return frame
    if isinstance(frame, zmq.Frame):
        return frame.buffer
    return memoryview(frame)  # type: ignore[arg-type]  # any other buffer a handler returned


__all__ = ["Broker", "now_us"]
