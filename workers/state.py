"""Worker liveness as pure transitions: (event, now_ms) in, what the loop must do out; no socket."""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import TypeAlias

# Theory of operation
# -------------------
# Everything that decides *when* a worker talks to its broker lives here: when a heartbeat is due,
# when the broker counts as dead, how long to wait before reconnecting, and when a drain is over.
# `workers/base.py` owns the sockets, reads the clock once per loop iteration and passes it in as
# integer milliseconds, so every rule below is tested with integer clocks (tests/workers).
#
# The worker is connected or not, busy (holding one request) or not, draining or not:
#   not connected, not busy, not draining, reconnect time reached ... Connect
#   connected, not busy, `liveness` intervals with no broker traffic  Reconnect (broker silent)
#   connected, a heartbeat interval since the last command sent ...... Heartbeat
#   draining and not busy, or draining past drain_ms_max ............. Disconnect (and stop)
# `tick` returns the most urgent of these, or None; the loop does it and the state assumes it done.
# While busy the broker is never declared dead: some brokers (majortomo) do not heartbeat a busy
# worker, and the reply we are working on is worth more than an early reconnect.


@dataclass(frozen=True, slots=True)
class Limits:
    """Every interval of a worker's liveness, in integer milliseconds and counts."""

    heartbeat_ms: int = 2_500
    """RFC 18: heartbeats at 'regular and agreed-upon intervals' (the broker's value, too)."""
    liveness: int = 3
    """RFC 18: a peer is 'disconnected' after 'some multiple of that interval (usually 3-5)'."""
    reconnect_ms_min: int = 100
    """The first reconnect delay (before jitter); broker traffic brings the backoff back here."""
    reconnect_ms_max: int = 5_000
    """The backoff ceiling: a broker that stays away is retried this often, not less."""
    drain_ms_max: int = 10_000
    """How long the request in hand may run on after a drain starts."""


@dataclass(frozen=True, slots=True)
class Connect:
    """Open a new socket and send READY (the state counts both as done)."""


class ReconnectReason(Enum):
    """Why a connection is dropped; the value is what the log says."""

    BROKER_SILENT = "broker silent"
    BROKER_DISCONNECT = "broker said DISCONNECT"


@dataclass(frozen=True, slots=True)
class Reconnect:
    """Close the socket without a goodbye; a Connect follows after `delay_ms`."""

    reason: ReconnectReason
    delay_ms: int


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Send HEARTBEAT: nothing else has gone to the broker for a heartbeat interval."""


@dataclass(frozen=True, slots=True)
class Disconnect:
    """The drain is over: send DISCONNECT (when connected), close the socket and stop."""


Action: TypeAlias = Connect | Reconnect | Heartbeat | Disconnect
CONNECT = Connect()
HEARTBEAT = Heartbeat()
DISCONNECT = Disconnect()


class Refusal(Enum):
    """Why a request from the broker is dropped; the value is what the log says."""

    BUSY = "already busy"
    """RFC 18: one request at a time. The broker's client retries and finds a free worker."""
    DRAINING = "draining"
    """After the drain starts nothing new is taken; the broker requeues it on our DISCONNECT."""


class WorkerState:
    """The liveness of one worker's conversation with its broker; `tick` says what is due."""

    def __init__(
        self, limits: Limits | None = None, *, random_fraction: Callable[[], float] = random.random
    ) -> None:
        """`random_fraction` returns a number in [0, 1] that jitters each reconnect delay."""
        self.limits = limits or Limits()
        self._random_fraction = random_fraction
        self._expiry_ms = self.limits.heartbeat_ms * self.limits.liveness
        self._connected = False
        self._busy = False
        self._reconnect_at_ms: int | None = None  # None: connect at the first tick
        self._backoff_ms = self.limits.reconnect_ms_min
        self._expires_ms = 0
        self._heartbeat_due_ms = 0
        self._drain_deadline_ms: int | None = None

    # ----------------------------------------------------------------------------------- time

    def tick(self, now_ms: int) -> Action | None:
        """The one thing due at `now_ms`, most urgent first; None when nothing is."""
        if self._drain_deadline_ms is not None and (
            not self._busy or now_ms >= self._drain_deadline_ms
        ):
            self._connected = False
            return DISCONNECT
        if self._connected:
            if not self._busy and now_ms >= self._expires_ms:
                # RFC 18: "If the worker detects that the broker has disconnected, it SHOULD
                # restart a new conversation."
                return self._drop(ReconnectReason.BROKER_SILENT, now_ms)
            if now_ms >= self._heartbeat_due_ms:
                self.sent(now_ms)
                return HEARTBEAT
            return None
        if self._can_connect(now_ms):
            self._connected = True
            self._expires_ms = now_ms + self._expiry_ms
            self.sent(now_ms)  # READY
            return CONNECT
        return None

    def next_deadline_ms(self) -> int | None:
        """The earliest time `tick` may have something to do; None when only an event can."""
        times: list[int] = []
        if self._drain_deadline_ms is not None:
            times.append(self._drain_deadline_ms)
        if self._connected:
            times.append(self._heartbeat_due_ms)
            if not self._busy:
                times.append(self._expires_ms)
        elif not self._busy and self._drain_deadline_ms is None:
            times.append(0 if self._reconnect_at_ms is None else self._reconnect_at_ms)
        return min(times) if times else None

    # --------------------------------------------------------------------------------- events

    def sent(self, now_ms: int) -> None:
        """A command went to the broker: it implies a heartbeat, so the next one is postponed."""
        self._heartbeat_due_ms = now_ms + self.limits.heartbeat_ms

    def broker_message(self, now_ms: int) -> None:
        """A well-formed command came from the broker: it is alive, and a reconnect worked."""
        self._expires_ms = now_ms + self._expiry_ms
        self._backoff_ms = self.limits.reconnect_ms_min

    def broker_disconnected(self, now_ms: int) -> Reconnect:
        """The broker said DISCONNECT: drop the connection and start a new one after a while."""
        return self._drop(ReconnectReason.BROKER_DISCONNECT, now_ms)

    def accept_request(self) -> Refusal | None:
        """A REQUEST came: None when this worker takes it (and is busy), else why it is dropped."""
        if self._busy:
            return Refusal.BUSY
        if self._drain_deadline_ms is not None:
            return Refusal.DRAINING
        self._busy = True
        return None

    def request_done(self, now_ms: int) -> None:
        """The request in hand is answered (or abandoned); the broker gets a fresh liveness window.

        While busy the broker was not watched; one that kept quiet meanwhile (majortomo's does)
        is not declared dead the moment the work ends.
        """
        self._busy = False
        self._expires_ms = now_ms + self._expiry_ms

    def drain(self, now_ms: int) -> None:
        """Stop taking requests; the one in hand has `drain_ms_max` to finish. Idempotent."""
        if self._drain_deadline_ms is None:
            self._drain_deadline_ms = now_ms + self.limits.drain_ms_max

    @property
    def connected(self) -> bool:
        """Whether the loop should hold a socket (after Connect, until Reconnect or Disconnect)."""
        return self._connected

    @property
    def busy(self) -> bool:
        """Whether a request is in hand (accepted, not yet done)."""
        return self._busy

    @property
    def draining(self) -> bool:
        """Whether a drain has started (it never stops)."""
        return self._drain_deadline_ms is not None

    # -------------------------------------------------------------------------------- helpers

    def _can_connect(self, now_ms: int) -> bool:
        """A new conversation waits for the backoff, for the request in hand, and never drains."""
        if self._busy or self._drain_deadline_ms is not None:
            return False
        return self._reconnect_at_ms is None or now_ms >= self._reconnect_at_ms

    def _drop(self, reason: ReconnectReason, now_ms: int) -> Reconnect:
        """Forget the connection; the next one waits a jittered, doubling delay (capped)."""
        fraction = min(1.0, max(0.0, self._random_fraction()))
        delay_ms = max(1, math.ceil(self._backoff_ms * (0.5 + 0.5 * fraction)))
        self._connected = False
        self._reconnect_at_ms = now_ms + delay_ms
        self._backoff_ms = min(self._backoff_ms * 2, self.limits.reconnect_ms_max)
        return Reconnect(reason, delay_ms)


__all__ = [
    "CONNECT",
    "DISCONNECT",
    "HEARTBEAT",
    "Action",
    "Connect",
    "Disconnect",
    "Heartbeat",
    "Limits",
    "Reconnect",
    "ReconnectReason",
    "Refusal",
    "WorkerState",
]
