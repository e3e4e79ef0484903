"""Broker routing as pure transitions: (peer, MDP event, now) in, frames to send out; no socket."""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from latentmas_mesh import mdp
from latentmas_mesh.errors import ErrorCode

# Theory of operation
# -------------------
# Everything that decides where a request goes lives here; `broker/server.py` only moves frames
# between this object and the socket. Time is an argument (integer microseconds), so heartbeat
# expiry, queue expiry and requeues are tested with integer clocks.
#
# A request is `Pending` from the moment it is accepted until exactly one FINAL (the worker's, or
# an error made here) is sent to its client. It is always in exactly one place: a service's queue,
# or a worker's `current`. Every path that removes it from both places sends that one FINAL:
#   worker FINAL .......................... forwarded to the client
#   queue full / draining / unknown mmi ... answered here at once (never enqueued)
#   queued past request_queue_us_max ...... SERVICE_UNAVAILABLE
#   held by a worker past
#     request_in_flight_us_max ............ TIMEOUT, and the worker is told DISCONNECT (no requeue:
#                                           a request that held one worker that long would hold
#                                           the next, and its client may retry with the same id)
#   a body over BODY_FRAMES_MAX (`refuse`) . PAYLOAD_TOO_LARGE (a request: at once; a worker's
#                                           reply: in its place, and the worker is free again)
#   its worker dies, attempts left ........ back to the front of the queue (requeued)
#   its worker dies, no attempts left ..... INTERNAL
#   broker shuts down ..................... SERVICE_UNAVAILABLE
# A FINAL from a worker the broker no longer knows (declared dead, then woke up) is dropped and
# the worker is told DISCONNECT, so a requeued request is never answered twice.
#
# Memory is bounded in bytes too. A request's body counts from acceptance to its FINAL (queued or
# in flight, it is the same buffer); a reply counts from the send until ZeroMQ has released it
# (handed it to the kernel, or dropped the peer's pipe). A request that would take the total past
# `bytes_max` is refused at once (SERVICE_UNAVAILABLE, or PAYLOAD_TOO_LARGE when it alone is
# larger). Replies are counted through ZeroMQ message trackers, which cost about 10 us each, so
# only one reply per `track_every_bytes` of a client's replies is tracked, and covers the bytes
# sent to that client since the previous one: at most `track_every_bytes` per client (for at most
# `untracked_peers_max` clients) go uncounted. A client whose counted unread replies exceed
# `peer_unread_bytes_max` is a slow consumer: its replies are discarded (counted) and its new
# requests refused until it reads.
#
# Both tables are bounded. A service is kept while it has a worker or a queued request (dropped
# by the next tick at the latest) and is created in `_service_for` alone, which refuses one
# beyond `services_max`: a request it refuses is answered SERVICE_UNAVAILABLE, a READY is
# answered DISCONNECT (RFC 18 lets a broker disconnect a worker at any time). A READY from a new
# peer beyond `workers_max` is answered DISCONNECT too. A worker that leaves takes its emptied
# service with it, so a new one fits at once.

Body = tuple[object, ...]
_KIB = 1 << 10
_MIB = 1 << 20


class Send(NamedTuple):
    """Frames to send to one peer through the ROUTER socket (routing id not included in frames).

    No frames: nothing to send (a reply discarded for a slow consumer). With `tracked_bytes`,
    the sender tracks the last frame and calls `replies_read(peer, tracked_bytes)` once ZeroMQ
    has released it (or at once, when the send fails).
    """

    peer: bytes
    frames: list[object]
    tracked_bytes: int = 0


class ErrorReply(Protocol):
    """Builds an error body (codec frames) for a request body; the state never encodes bodies."""

    def __call__(self, code: ErrorCode, message: str, request_body: Body) -> list[object]: ...


class Observer(Protocol):
    """Receives what metrics and logs need; called synchronously from `apply` and `tick`."""

    def request_done(
        self, service: bytes, outcome: str, elapsed_us: int, request_body: Body
    ) -> None: ...

    def requeued(self, service: bytes, request_body: Body) -> None: ...

    def rejected(self, reason: str, peer: bytes) -> None: ...

    def worker_changed(self, change: str, service: bytes, peer: bytes) -> None: ...


class NullObserver:
    """Observes nothing (the default, and what the benchmark's hot path costs without metrics)."""

    def request_done(
        self, service: bytes, outcome: str, elapsed_us: int, request_body: Body
    ) -> None:
        """Ignore a finished request."""

    def requeued(self, service: bytes, request_body: Body) -> None:
        """Ignore a requeue."""

    def rejected(self, reason: str, peer: bytes) -> None:
        """Ignore a rejected message."""

    def worker_changed(self, change: str, service: bytes, peer: bytes) -> None:
        """Ignore a worker joining or leaving."""


@dataclass(frozen=True, slots=True)
class Limits:
    """Every bound and interval of the routing state, in integer microseconds and counts."""

    heartbeat_us: int = 2_500_000
    """RFC 18: heartbeats at 'regular and agreed-upon intervals' (2.5 s, the zguide's value)."""
    liveness: int = 3
    """RFC 18: a peer is 'disconnected' after 'some multiple of that interval (usually 3-5)'."""
    service_queue_depth_max: int = 1024
    """Queued (not yet dispatched) requests per service; one more is refused at once."""
    request_queue_us_max: int = 30_000_000
    """RFC 18: queued requests 'SHOULD expire ... after a reasonable and configurable time'."""
    requeue_max: int = 2
    """How many times a request whose worker died is handed to another worker."""
    services_max: int = 1024
    """Distinct service names held at once, however they arrive (a request or a worker's READY):
    rogue peers cannot grow the table without bound."""
    workers_max: int = 4096
    """Registered workers at once; a READY from one more peer is refused with DISCONNECT."""
    request_in_flight_us_max: int = 300_000_000
    """How long one worker may hold a request. Heartbeats prove the worker's process is alive,
    not that its handler will ever answer: past this the client gets TIMEOUT and the worker is
    recycled, so a request that hangs a handler cannot take the worker (and its service) away
    for good."""
    bytes_max: int = 512 * _MIB
    """Request bodies held (queued and in flight) plus counted unread replies; a request that
    would pass it is refused at once."""
    peer_unread_bytes_max: int = 128 * _MIB
    """Counted unread replies of one client beyond which it is a slow consumer."""
    track_every_bytes: int = 16 * _KIB
    """A client's replies are tracked once per this many bytes (see the theory of operation)."""
    untracked_peers_max: int = 1024
    """Clients whose untracked reply bytes are remembered; when full, the table is cleared
    (those bytes were never counted, so nothing is lost but a later tracker's coverage)."""
    worker_services: Mapping[str, frozenset[bytes]] | None = None
    """The services each ZAP User-Id (a worker's CURVE key) may register for; a READY for any
    other service is answered DISCONNECT. None lets any peer the socket admits serve anything."""


@dataclass(slots=True)
class Pending:
    """One accepted request until its one FINAL is sent."""

    client: bytes
    service: bytes
    body: Body
    dialect: mdp.Dialect
    delimited: bool
    identity: str | None
    accepted_us: int
    attempts: int = 0
    size: int = 0
    """Body bytes counted against the budget (0 until admitted)."""


@dataclass(slots=True)
class WorkerRecord:
    """A registered worker: its service, framing, liveness and the request it holds."""

    peer: bytes
    service: bytes
    delimited: bool
    expires_us: int
    heartbeat_due_us: int
    current: Pending | None = None
    address: bytes = b""
    deadline_us: int = 0
    """When `current` is overdue (set at hand-over; meaningless while idle)."""


@dataclass(slots=True)
class Service:
    """Requests waiting for a service and its workers, idle ones in least-recently-used order."""

    name: bytes
    queue: deque[Pending] = field(default_factory=deque)
    idle: OrderedDict[bytes, WorkerRecord] = field(default_factory=OrderedDict)
    worker_count: int = 0


@dataclass(frozen=True, slots=True)
class ServiceStats:
    """A service's numbers for the metrics gauges (the autoscaler scales on `queued`)."""

    queued: int
    idle_workers: int
    busy_workers: int


OUTCOME_OK = "ok"
SERVICE_AVAILABLE = b"200"
SERVICE_MISSING = b"404"
MMI_NOT_IMPLEMENTED = b"501"


class BrokerState:
    """The routing table of one broker; `apply` and `tick` return the frames to send."""

    def __init__(
        self,
        limits: Limits | None = None,
        *,
        error_reply: ErrorReply,
        observer: Observer | None = None,
    ) -> None:
        self.limits = limits or Limits()
        self._error_reply = error_reply
        self._observer: Observer = observer or NullObserver()
        self._services: dict[bytes, Service] = {}
        self._workers: dict[bytes, WorkerRecord] = {}
        self._pending_bytes = 0
        self._unread: dict[bytes, int] = {}  # counted reply bytes ZeroMQ has not released
        self._unread_bytes = 0
        self._untracked: dict[bytes, int] = {}  # reply bytes sent since a client's last tracker
        self._draining = False
        self._expiry_us = self.limits.heartbeat_us * self.limits.liveness
        self._heartbeat_us = self.limits.heartbeat_us
        self._handlers: dict[type, Callable[..., list[Send]]] = {
            mdp.ClientRequest: self._on_request,
            mdp.WorkerReady: self._on_ready,
            mdp.WorkerFinal: self._on_final,
            mdp.WorkerPartial: self._on_partial,
            mdp.WorkerHeartbeat: self._on_heartbeat,
            mdp.WorkerDisconnect: self._on_disconnect,
        }

    # ----------------------------------------------------------------------------- public API

    def apply(
        self,
        peer: bytes,
        event: mdp.BrokerEvent[object],
        now_us: int,
        identity: str | None = None,
    ) -> list[Send]:
        """One event from `peer` (its ZAP User-Id in `identity`); returns what to send."""
        handler = self._handlers[type(event)]
        return handler(peer, event, now_us, identity)

    def tick(self, now_us: int) -> list[Send]:
        """Heartbeat workers that are due, drop dead ones (requeueing), time out overdue requests,
        expire queued ones."""
        out: list[Send] = []
        expired = [w for w in self._workers.values() if w.expires_us <= now_us]
        for worker in expired:
            self._observer.worker_changed("expired", worker.service, worker.peer)
            out.append(Send(worker.peer, list(mdp.disconnect(delimited=worker.delimited))))
            out.extend(self._remove_worker(worker, now_us))
        overdue = [
            w for w in self._workers.values() if w.current is not None and w.deadline_us <= now_us
        ]
        for worker in overdue:
            out.extend(self._time_out(worker, now_us))
        for worker in self._workers.values():
            if worker.heartbeat_due_us <= now_us:
                out.append(Send(worker.peer, list(mdp.heartbeat(delimited=worker.delimited))))
                worker.heartbeat_due_us = now_us + self.limits.heartbeat_us
        if self._draining:
            out.extend(self._fail_orphans(now_us))
        for service in list(self._services.values()):
            out.extend(self._expire_queued(service, now_us))
            if not service.queue and not service.worker_count:
                del self._services[service.name]
        return out

    def refuse(
        self,
        peer: bytes,
        refused: mdp.RefusedBody,
        now_us: int,
        identity: str | None = None,
    ) -> list[Send]:
        """A REQUEST or FINAL whose body the framing refused: its request still gets one FINAL.

        `refused.event` holds the message with its body cut to the first frame, enough for the
        error reply's request id. A client's request is answered with the refusal's code at
        once; a worker's reply is replaced by that error, and the worker is free again.
        """
        event = refused.event
        if isinstance(event, mdp.ClientRequest):
            pending = Pending(
                peer, event.service, event.body, event.dialect, event.delimited, identity, now_us
            )
            return [self._fail(pending, refused.code, now_us, refused.message)]
        if not isinstance(event, mdp.WorkerFinal):
            raise TypeError(f"a broker never receives {type(event).__name__}")
        worker = self._replying_worker(peer, event.client_address, event.delimited, now_us)
        if isinstance(worker, list):
            return worker
        assert worker.current is not None  # _replying_worker checked it
        body = self._error_reply(refused.code, refused.message, worker.current.body)
        return self._finish(worker, body, refused.code.value, now_us)

    def forget_worker(self, peer: bytes, now_us: int) -> list[Send]:
        """The socket says `peer` is unreachable: drop it as if it had disconnected."""
        worker = self._workers.get(peer)
        if worker is None:
            return []
        self._observer.worker_changed("unreachable", worker.service, peer)
        return self._remove_worker(worker, now_us)

    def drain(self, now_us: int) -> list[Send]:
        """Stop accepting requests; queued and in-flight ones still run to their FINAL.

        Requests queued for a service that has no worker cannot finish: they are answered
        SERVICE_UNAVAILABLE now rather than at the drain deadline.
        """
        self._draining = True
        return self._fail_orphans(now_us)

    def _fail_orphans(self, now_us: int) -> list[Send]:
        out: list[Send] = []
        for service in self._services.values():
            while service.queue and not service.worker_count:
                out.append(
                    self._fail(
                        service.queue.popleft(),
                        ErrorCode.SERVICE_UNAVAILABLE,
                        now_us,
                        "the broker is shutting down and no worker is left",
                    )
                )
        return out

    @property
    def in_flight(self) -> int:
        """Requests accepted and not yet answered (queued plus held by workers)."""
        queued = sum(len(s.queue) for s in self._services.values())
        return queued + sum(1 for w in self._workers.values() if w.current is not None)

    def shutdown(self, now_us: int) -> list[Send]:
        """Answer every unfinished request SERVICE_UNAVAILABLE and DISCONNECT every worker."""
        self._draining = True
        out: list[Send] = []
        for worker in list(self._workers.values()):
            if worker.current is not None:
                out.append(
                    self._fail(
                        worker.current,
                        ErrorCode.SERVICE_UNAVAILABLE,
                        now_us,
                        "the broker shut down before the worker answered",
                    )
                )
                worker.current = None
            out.append(Send(worker.peer, list(mdp.disconnect(delimited=worker.delimited))))
            self._observer.worker_changed("disconnected", worker.service, worker.peer)
        for service in self._services.values():
            while service.queue:
                out.append(
                    self._fail(
                        service.queue.popleft(),
                        ErrorCode.SERVICE_UNAVAILABLE,
                        now_us,
                        "the broker shut down before a worker was free",
                    )
                )
        self._workers.clear()
        self._services.clear()
        return out

    def next_deadline_us(self) -> int | None:
        """The earliest time `tick` has work to do; None with no workers and no requests."""
        times = [min(w.expires_us, w.heartbeat_due_us) for w in self._workers.values()]
        times.extend(w.deadline_us for w in self._workers.values() if w.current is not None)
        times.extend(
            s.queue[0].accepted_us + self.limits.request_queue_us_max
            for s in self._services.values()
            if s.queue
        )
        return min(times) if times else None

    def stats(self) -> dict[bytes, ServiceStats]:
        """Per-service queue depth and worker counts."""
        return {
            name: ServiceStats(len(s.queue), len(s.idle), s.worker_count - len(s.idle))
            for name, s in self._services.items()
        }

    def is_worker(self, peer: bytes) -> bool:
        """Whether `peer` is a registered worker."""
        return peer in self._workers

    @property
    def held_bytes(self) -> int:
        """What counts against `bytes_max`: held request bodies plus counted unread replies."""
        return self._pending_bytes + self._unread_bytes

    def replies_read(self, peer: bytes, tracked_bytes: int) -> None:
        """ZeroMQ released a tracked reply to `peer`: its bytes no longer count."""
        left = self._unread.get(peer, 0) - tracked_bytes
        self._unread_bytes -= tracked_bytes
        if left > 0:
            self._unread[peer] = left
        else:
            self._unread.pop(peer, None)

    # ------------------------------------------------------------------------- client events

    def _on_request(
        self, peer: bytes, event: mdp.ClientRequest[object], now_us: int, identity: str | None
    ) -> list[Send]:
        pending = Pending(
            peer, event.service, event.body, event.dialect, event.delimited, identity, now_us
        )
        if event.is_mmi:
            return [self._mmi(pending, now_us)]
        service = None if self._draining else self._service_for(event.service)
        if service is None:
            reason = (
                "the broker is shutting down"
                if self._draining
                else "the broker holds its maximum number of services"
            )
            return [self._fail(pending, ErrorCode.SERVICE_UNAVAILABLE, now_us, reason)]
        if len(service.queue) >= self.limits.service_queue_depth_max:
            return [
                self._fail(
                    pending,
                    ErrorCode.SERVICE_UNAVAILABLE,
                    now_us,
                    f"the queue of {event.service.decode()} is full",
                )
            ]
        refusal = self._admit(pending)
        if refusal is not None:
            return [refusal]
        if service.idle and not service.queue:  # the usual case: straight to a waiting worker
            return [self._hand_over(service, pending, now_us)]
        service.queue.append(pending)
        return self._dispatch(service, now_us)

    def _admit(self, pending: Pending) -> Send | None:
        """Count `pending`'s body against the byte budget, or the refusal to send instead."""
        size = sum(map(mdp.frame_size, pending.body))
        limits = self.limits
        code, message = ErrorCode.SERVICE_UNAVAILABLE, ""
        if size > limits.bytes_max:
            code = ErrorCode.PAYLOAD_TOO_LARGE
            message = f"a request of {size} bytes exceeds the broker's {limits.bytes_max}"
        elif self._unread.get(pending.client, 0) > limits.peer_unread_bytes_max:
            message = "this client has not read its earlier replies"
        elif self._pending_bytes + self._unread_bytes + size > limits.bytes_max:
            message = (
                f"the broker holds {self.held_bytes} of its {limits.bytes_max} bytes; retry later"
            )
        if message:
            return self._fail(pending, code, pending.accepted_us, message)
        pending.size = size
        self._pending_bytes += size
        return None

    def _mmi(self, pending: Pending, now_us: int) -> Send:
        """The MMI extension: `mmi.service` answers 200 when the named service has workers."""
        if pending.service == mdp.MMI_SERVICE:
            service = self._services.get(_service_name(pending.body[0]))
            code = SERVICE_AVAILABLE if service and service.worker_count else SERVICE_MISSING
        else:
            code = MMI_NOT_IMPLEMENTED
        self._observer.request_done(pending.service, OUTCOME_OK, now_us - pending.accepted_us, ())
        return self._to_client(pending, (code,))

    # ------------------------------------------------------------------------- worker events

    def _on_ready(
        self, peer: bytes, event: mdp.WorkerReady, now_us: int, identity: str | None
    ) -> list[Send]:
        allowed = self.limits.worker_services
        if allowed is not None and event.service not in allowed.get(identity or "", ()):
            # A key made for one service cannot serve another (a ledger impostor would be handed
            # clients' settlements); RFC 18 lets the broker disconnect a worker at any time.
            return self._refuse(peer, "unauthorized_service", event.delimited)
        known = self._workers.get(peer)
        if known is not None or event.service.startswith(mdp.MMI_PREFIX):
            # RFC 18: "The worker MUST NOT send a further READY"; the broker "MUST respond to any
            # valid but unexpected command by sending DISCONNECT".
            return self._unexpected(peer, known, event.delimited, now_us)
        if len(self._workers) >= self.limits.workers_max:
            return self._refuse(peer, "workers_max_reached", event.delimited)
        service = self._service_for(event.service)
        if service is None:
            return self._refuse(peer, "services_max_reached", event.delimited)
        worker = WorkerRecord(
            peer,
            event.service,
            event.delimited,
            now_us + self._expiry_us,
            now_us + self.limits.heartbeat_us,
        )
        self._workers[peer] = worker
        service.worker_count += 1
        service.idle[peer] = worker
        self._observer.worker_changed("ready", event.service, peer)
        return self._dispatch(service, now_us)

    def _on_final(
        self, peer: bytes, event: mdp.WorkerFinal[object], now_us: int, identity: str | None
    ) -> list[Send]:
        worker = self._replying_worker(peer, event.client_address, event.delimited, now_us)
        if isinstance(worker, list):
            return worker
        return self._finish(worker, event.body, OUTCOME_OK, now_us)

    def _finish(
        self, worker: WorkerRecord, body: Sequence[object], outcome: str, now_us: int
    ) -> list[Send]:
        """`body` is the FINAL of the request `worker` holds: send it, free the worker."""
        pending = worker.current
        assert pending is not None  # _replying_worker checked it
        worker.expires_us = now_us + self._expiry_us
        worker.current = None
        self._pending_bytes -= pending.size
        service = self._services[worker.service]
        service.idle[worker.peer] = worker
        self._observer.request_done(
            pending.service, outcome, now_us - pending.accepted_us, pending.body
        )
        reply = self._to_client(pending, body)
        if service.queue:
            return [reply, *self._dispatch(service, now_us)]
        return [reply]

    def _on_partial(
        self, peer: bytes, event: mdp.WorkerPartial[object], now_us: int, identity: str | None
    ) -> list[Send]:
        worker = self._replying_worker(peer, event.client_address, event.delimited, now_us)
        if isinstance(worker, list):
            return worker
        assert worker.current is not None  # _replying_worker checked it
        worker.expires_us = now_us + self._expiry_us
        return [self._to_client(worker.current, event.body, final=False)]

    def _replying_worker(
        self, peer: bytes, client_address: bytes, delimited: bool, now_us: int
    ) -> WorkerRecord | list[Send]:
        """The worker a PARTIAL or FINAL comes from, or what to send instead when it is stale."""
        worker = self._workers.get(peer)
        if worker is None:
            # A worker we dropped (expired, then woke up) answers late: its request was requeued.
            self._observer.rejected("reply_from_unknown_worker", peer)
            return [Send(peer, list(mdp.disconnect(delimited=delimited)))]
        if worker.current is None or client_address != worker.address:
            return self._unexpected(peer, worker, delimited, now_us)
        return worker

    def _on_heartbeat(
        self, peer: bytes, event: mdp.WorkerHeartbeat, now_us: int, identity: str | None
    ) -> list[Send]:
        worker = self._workers.get(peer)
        if worker is None:
            # The broker restarted, or dropped this worker: DISCONNECT makes it register again.
            return [Send(peer, list(mdp.disconnect(delimited=event.delimited)))]
        worker.expires_us = now_us + self._expiry_us
        return []

    def _on_disconnect(
        self, peer: bytes, event: mdp.WorkerDisconnect, now_us: int, identity: str | None
    ) -> list[Send]:
        worker = self._workers.get(peer)
        if worker is None:
            return []
        self._observer.worker_changed("disconnected", worker.service, peer)
        return self._remove_worker(worker, now_us)

    # ------------------------------------------------------------------------------- helpers

    def _service_for(self, name: bytes) -> Service | None:
        """The service named `name`, created if there is room; None beyond `services_max`.

        The only place a service is created, so the table cannot outgrow its bound.
        """
        service = self._services.get(name)
        if service is None and len(self._services) < self.limits.services_max:
            service = self._services[name] = Service(name)
        return service

    def _refuse(self, peer: bytes, reason: str, delimited: bool) -> list[Send]:
        """A READY the tables have no room for: counted, and the worker told DISCONNECT."""
        self._observer.rejected(reason, peer)
        return [Send(peer, list(mdp.disconnect(delimited=delimited)))]

    def _dispatch(self, service: Service, now_us: int) -> list[Send]:
        """Hand queued requests to idle workers, least recently used first."""
        out: list[Send] = []
        while service.queue and service.idle:
            out.append(self._hand_over(service, service.queue.popleft(), now_us))
        return out

    def _hand_over(self, service: Service, pending: Pending, now_us: int) -> Send:
        """Give `pending` to the service's least recently used idle worker (there is one)."""
        _, worker = service.idle.popitem(last=False)
        pending.attempts += 1
        worker.current = pending
        worker.address = mdp.pack_client_address(pending.client, pending.identity)
        worker.heartbeat_due_us = now_us + self._heartbeat_us
        worker.deadline_us = now_us + self.limits.request_in_flight_us_max
        frames = mdp.broker_request(worker.address, pending.body, delimited=worker.delimited)
        return Send(worker.peer, frames)

    def _remove_worker(self, worker: WorkerRecord, now_us: int) -> list[Send]:
        """Forget a worker; requeue its request at the front, or fail it when out of attempts."""
        del self._workers[worker.peer]
        service = self._services[worker.service]
        service.worker_count -= 1
        service.idle.pop(worker.peer, None)
        pending, worker.current = worker.current, None
        if pending is None:
            if not service.worker_count and not service.queue:
                del self._services[service.name]  # room for another service at once
            return []
        if pending.attempts > self.limits.requeue_max:
            return [
                self._fail(
                    pending,
                    ErrorCode.INTERNAL,
                    now_us,
                    f"{pending.attempts} workers died holding this request",
                )
            ]
        self._observer.requeued(pending.service, pending.body)
        service.queue.appendleft(pending)
        return self._dispatch(service, now_us)

    def _time_out(self, worker: WorkerRecord, now_us: int) -> list[Send]:
        """Answer the request `worker` held too long with TIMEOUT; recycle the worker."""
        pending, worker.current = worker.current, None
        assert pending is not None  # tick picks only busy workers
        self._observer.worker_changed("overdue", worker.service, worker.peer)
        limit_ms = self.limits.request_in_flight_us_max // 1000
        return [
            self._fail(
                pending,
                ErrorCode.TIMEOUT,
                now_us,
                f"a worker of {worker.service.decode(errors='replace')} held the request for "
                f"{limit_ms} ms without answering",
            ),
            Send(worker.peer, list(mdp.disconnect(delimited=worker.delimited))),
            *self._remove_worker(worker, now_us),
        ]

    def _unexpected(
        self, peer: bytes, worker: WorkerRecord | None, delimited: bool, now_us: int
    ) -> list[Send]:
        """RFC 18: a valid but unexpected command gets DISCONNECT and nothing more."""
        self._observer.rejected("unexpected_command", peer)
        out = [Send(peer, list(mdp.disconnect(delimited=delimited)))]
        if worker is not None:
            out.extend(self._remove_worker(worker, now_us))
        return out

    def _expire_queued(self, service: Service, now_us: int) -> list[Send]:
        out: list[Send] = []
        limit_us = self.limits.request_queue_us_max
        while service.queue and service.queue[0].accepted_us + limit_us <= now_us:
            pending = service.queue.popleft()
            out.append(
                self._fail(
                    pending,
                    ErrorCode.SERVICE_UNAVAILABLE,
                    now_us,
                    f"no worker of {service.name.decode()} took the request in "
                    f"{limit_us // 1000} ms",
                )
            )
        return out

    def _fail(self, pending: Pending, code: ErrorCode, now_us: int, message: str) -> Send:
        """The one FINAL of a request the broker answers itself, as a typed error body."""
        self._pending_bytes -= pending.size
        self._observer.request_done(
            pending.service, code.value, now_us - pending.accepted_us, pending.body
        )
        return self._to_client(pending, tuple(self._error_reply(code, message, pending.body)))

    def _to_client(self, pending: Pending, body: Sequence[object], *, final: bool = True) -> Send:
        """A reply to the client of `pending`: counted, tracked when due, or discarded when the
        client is a slow consumer."""
        client = pending.client
        unread = self._unread.get(client, 0)
        if unread > self.limits.peer_unread_bytes_max:
            self._observer.rejected("slow_consumer", client)
            return Send(client, [])
        frames = mdp.client_reply(
            pending.service,
            body,
            final=final,
            dialect=pending.dialect,
            delimited=pending.delimited,
        )
        untracked = self._untracked.pop(client, 0) + sum(map(mdp.frame_size, body))
        if untracked < self.limits.track_every_bytes:
            if len(self._untracked) >= self.limits.untracked_peers_max:
                self._untracked.clear()
            self._untracked[client] = untracked
            return Send(client, frames)
        self._unread[client] = unread + untracked
        self._unread_bytes += untracked
        return Send(client, frames, untracked)


def _service_name(frame: object) -> bytes:
    """The service an `mmi.service` request asks about; an oversized name matches nothing."""
    try:
        return mdp.frame_bytes(frame, mdp.SERVICE_NAME_BYTES_MAX, "service")
    except mdp.MalformedFrame:
        return b""


__all__ = [
    "BrokerState",
    "ErrorReply",
    "Limits",
    "NullObserver",
    "Observer",
    "Pending",
    "Send",
    "ServiceStats",
]
