"""transport.wire: the C envelope path and the pure-Python path move the same frames, alike."""

from __future__ import annotations

import errno
import shutil
import signal
import socket
import threading
import time

import numpy as np
import pytest
import zmq

from latentmas_mesh import wire

BIG = 200_000  # above the C path's small-frame bound: such frames always go through pyzmq


@pytest.fixture(params=["c", "python"])
def path(request, monkeypatch):
    """Run the test on the C envelope path and on the pure-Python path."""
    if request.param == "c" and not wire.ENVELOPE_IN_C:
        pytest.skip("the C envelope module is not built in this environment")
    monkeypatch.setattr(wire, "ENVELOPE_IN_C", request.param == "c")
    return request.param


@pytest.fixture
def pair():
    """A ROUTER and a DEALER (routing id b'D') connected over TCP on loopback."""
    context = zmq.Context()
    router = context.socket(zmq.ROUTER)
    router.setsockopt(zmq.ROUTER_MANDATORY, 1)
    port = router.bind_to_random_port("tcp://127.0.0.1")
    dealer = context.socket(zmq.DEALER)
    dealer.setsockopt(zmq.IDENTITY, b"D")
    dealer.connect(f"tcp://127.0.0.1:{port}")
    dealer.send(b"hello")
    assert [b"D", b"hello"] == router.recv_multipart()
    yield router, dealer
    context.destroy(linger=0)


def test_c_envelope_is_built_where_a_compiler_exists():
    """With a C compiler at install time the fast path is in use (the benchmarks measure it)."""
    if shutil.which("cc") is None:
        pytest.skip("no C compiler here: the pure-Python path is the one in use")

    assert wire.ENVELOPE_IN_C


def test_received_envelope_is_bytes_and_body_is_zero_copy_frames(path, pair):
    """The first `copied` frames come back as bytes, the rest as zmq.Frames with the content."""
    router, dealer = pair
    body = np.arange(BIG, dtype=np.uint8)
    dealer.send_multipart([b"MDPC02", b"\x01", b"svc", body, b"tail"], copy=False)

    frames = wire.recv_frames(router)

    assert [b"D", b"MDPC02", b"\x01", b"svc"] == frames[:4]
    assert all(type(frame) is bytes for frame in frames[:4])
    assert all(isinstance(frame, zmq.Frame) for frame in frames[4:])
    assert body.tobytes() == frames[4].bytes
    assert b"tail" == frames[5].bytes


def test_short_message_stops_at_its_last_frame(path, pair):
    """A message with fewer frames than `copied` is returned whole, all bytes."""
    router, dealer = pair
    dealer.send(b"only")

    assert [b"D", b"only"] == wire.recv_frames(router)


def test_routed_send_delivers_every_frame_in_order(path, pair):
    """Small bytes, a large buffer, a Frame and an empty frame arrive unchanged and in order."""
    router, dealer = pair
    big = bytes(range(256)) * (BIG // 256)
    frames = [b"MDPC02", b"\x03", b"", big, zmq.Frame(b"frame"), memoryview(b"view"), b"last"]

    wire.send_routed(router, b"D", frames)

    received = dealer.recv_multipart()
    assert [b"MDPC02", b"\x03", b"", big, b"frame", b"view", b"last"] == received


def test_send_frames_with_a_single_frame(path, pair):
    """A one-frame message is its own last frame."""
    router, dealer = pair

    wire.send_frames(dealer, [b"one"])

    assert [b"D", b"one"] == wire.recv_frames(router)


def test_nothing_waiting_raises_again(path, pair):
    """A non-blocking receive on an empty socket raises zmq.Again, as pyzmq does."""
    router, _ = pair

    with pytest.raises(zmq.Again):
        wire.recv_frames(router, wire.NOBLOCK)


def test_receive_timeout_raises_again(path, pair):
    """RCVTIMEO bounds a blocking receive and then raises zmq.Again."""
    router, _ = pair
    router.setsockopt(zmq.RCVTIMEO, 30)
    started = time.monotonic()

    with pytest.raises(zmq.Again):
        wire.recv_frames(router)

    assert 0.02 <= time.monotonic() - started < 2.0


def test_unknown_peer_raises_host_unreachable(path, pair):
    """ROUTER_MANDATORY's error for a vanished peer reaches the caller as pyzmq's ZMQError."""
    router, _ = pair

    with pytest.raises(zmq.ZMQError) as caught:
        wire.send_routed(router, b"nobody", [b"MDPC02", b"\x03", b"svc", b"body"])

    assert errno.EHOSTUNREACH == caught.value.errno


def test_closed_socket_raises_zmq_error(path, pair):
    """A closed socket is a ZMQError, never a crash (pyzmq clears its handle on close)."""
    router, _ = pair
    router.close(linger=0)

    with pytest.raises(zmq.ZMQError):
        wire.recv_frames(router, wire.NOBLOCK)
    with pytest.raises(zmq.ZMQError):
        wire.send_routed(router, b"D", [b"a", b"b"])


class Interrupted(Exception):
    """Raised by the test's signal handler."""


def test_signal_handler_exception_interrupts_a_blocking_receive(path, pair):
    """A Python signal handler runs during the wait, and its exception ends the receive."""
    router, _ = pair
    router.setsockopt(zmq.RCVTIMEO, 5_000)

    def handler(signum, frame):
        raise Interrupted

    previous = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, 0.05)
    started = time.monotonic()
    try:
        with pytest.raises(Interrupted):
            wire.recv_frames(router)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)

    assert time.monotonic() - started < 2.0


def test_quiet_signal_handler_lets_the_receive_go_on(path, pair):
    """A handler that returns normally does not end the wait: the message still arrives."""
    router, dealer = pair
    router.setsockopt(zmq.RCVTIMEO, 5_000)
    seen = []
    previous = signal.signal(signal.SIGALRM, lambda signum, frame: seen.append(signum))
    signal.setitimer(signal.ITIMER_REAL, 0.03)
    timer = threading.Timer(0.15, lambda: dealer.send(b"late"))  # after the signal
    timer.start()
    try:
        frames = wire.recv_frames(router)
        timer.join()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)

    assert [signal.SIGALRM] == seen
    assert [b"D", b"late"] == frames


def test_signal_during_a_blocked_send_is_retried_like_pyzmq(path):
    """A quiet signal handler during a send blocked at the high-water mark does not fail it."""
    context = zmq.Context()
    dealer = context.socket(zmq.DEALER)
    dealer.setsockopt(zmq.IMMEDIATE, 1)  # no peer yet: a send waits
    dealer.setsockopt(zmq.SNDTIMEO, 400)
    dealer.connect("tcp://127.0.0.1:1")  # nothing listens there
    seen = []
    previous = signal.signal(signal.SIGALRM, lambda signum, frame: seen.append(signum))
    signal.setitimer(signal.ITIMER_REAL, 0.05)
    started = time.monotonic()
    try:
        with pytest.raises(zmq.Again):  # the send timeout, not the signal, ends it
            wire.send_frames(dealer, [b"MDPC02", b"\x01", b"svc", b"body"])
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        context.destroy(linger=0)

    assert [signal.SIGALRM] == seen
    assert time.monotonic() - started >= 0.35


def test_terminated_context_raises_context_terminated(path):
    """A receive blocked when its context is terminated raises zmq.ContextTerminated."""
    context = zmq.Context()
    router = context.socket(zmq.ROUTER)
    router.bind("inproc://terminated")
    caught: list[BaseException] = []

    def receive():
        try:
            wire.recv_frames(router)
        except zmq.ZMQError as error:
            caught.append(error)
        router.close(linger=0)

    thread = threading.Thread(target=receive)
    thread.start()
    time.sleep(0.05)
    context.term()
    thread.join(5)

    assert [zmq.ContextTerminated] == [type(error) for error in caught]


def test_frames_list_emptied_during_a_blocked_send_is_not_read_again():
    """The C path sends the frames it was given even if the caller's list changes meanwhile."""
    if not wire.ENVELOPE_IN_C:
        pytest.skip("the C envelope module is not built in this environment")
    with socket.socket() as probe:  # a loopback port nothing listens on yet
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    context = zmq.Context()
    dealer = context.socket(zmq.DEALER)
    dealer.setsockopt(zmq.IMMEDIATE, 1)  # no peer yet: the first frame waits, without the GIL
    dealer.setsockopt(zmq.SNDTIMEO, 5_000)
    dealer.setsockopt(zmq.IDENTITY, b"D")
    dealer.connect(f"tcp://127.0.0.1:{port}")
    frames = [b"A" * 600, b"B" * 600, b"C" * 600, b"last"]
    routers = []

    def meddle():
        time.sleep(0.2)
        frames.clear()
        router = context.socket(zmq.ROUTER)
        router.bind(f"tcp://127.0.0.1:{port}")
        routers.append(router)

    thread = threading.Thread(target=meddle)
    thread.start()
    try:
        wire.send_frames(dealer, frames)
        thread.join(5)
        routers[0].setsockopt(zmq.RCVTIMEO, 5_000)
        received = routers[0].recv_multipart()
    finally:
        context.destroy(linger=0)

    assert [b"D", b"A" * 600, b"B" * 600, b"C" * 600, b"last"] == received


def test_c_functions_refuse_bad_arguments_with_exceptions():
    """Wrong argument counts, a NULL handle and non-integer flags raise; nothing crashes."""
    if not wire.ENVELOPE_IN_C:
        pytest.skip("the C envelope module is not built in this environment")
    envelope = wire._envelope

    with pytest.raises(TypeError):
        envelope.recv_envelope(1, 2)
    with pytest.raises(zmq.ZMQError) as null_handle:
        envelope.send_envelope(0, [b"a", b"b"], 0)
    context = zmq.Context()
    try:
        handle = context.socket(zmq.DEALER).underlying
        with pytest.raises(TypeError):
            envelope.recv_envelope(handle, "four", 0)
        with pytest.raises(TypeError):
            envelope.send_envelope(handle, [b"a", b"b"], "none")
    finally:
        context.destroy(linger=0)

    assert errno.ENOTSOCK == null_handle.value.errno
