"""`latentmas codec-demo`: a real-sized KV cache through the codec and a ZeroMQ socket pair."""

from __future__ import annotations

import datetime as dt
import statistics
import time
from dataclasses import dataclass
from typing import Annotated, Literal

import numpy as np
import typer
import zmq

from latentmas_mesh import codec
from latentmas_mesh.cli.app import app
from latentmas_mesh.codec import finite
from latentmas_mesh.protocol import KVCache, KVCacheMetadata

# llama-3-8b: 32 layers, 8 KV heads (grouped-query attention), head_dim 128.
LAYERS, KV_HEADS, HEAD_DIM = 32, 8, 128
RECEIVE_TIMEOUT_MS = 10_000


@dataclass(frozen=True)
class DemoReport:
    """What one demo run measured; times in seconds."""

    shape: tuple[int, int, int, int]
    transport: str
    array_bytes: int
    header_bytes: int
    frame_count: int
    warm_up_s: float
    encode_s: float
    transfer_s: float
    decode_s: float
    memcpy_s: float
    equal: bool
    zero_copy_received: bool


def build_cache(tokens: int, rng: np.random.Generator) -> KVCache:
    """A llama-3-8b-shaped float16 KV cache of `tokens` positions: [32, 8, tokens, 128] each."""
    shape = (LAYERS, KV_HEADS, tokens, HEAD_DIM)
    return KVCache(
        source_model="llama-3-8b",
        keys=rng.standard_normal(shape, dtype=np.float32).astype(np.float16),
        values=rng.standard_normal(shape, dtype=np.float32).astype(np.float16),
        position_encodings=np.arange(tokens, dtype=np.int32),
        metadata=KVCacheMetadata(
            sequence_length=tokens,
            context_description="codec demo: random activations of llama-3-8b's shape",
            token_count=tokens,
            generated_at=dt.datetime.now(dt.UTC),
        ),
    )


def run_demo(tokens: int, transport: Literal["inproc", "tcp"], repeats: int = 5) -> DemoReport:
    """Encode, send over a PAIR socket pair (copy=False both ways), decode and compare.

    Each step's time is the median over `repeats` round trips; the last one is compared.
    """
    warm_up_s = finite.warm_up()
    kv = build_cache(tokens, np.random.default_rng(0))
    endpoint = "inproc://latentmas-codec-demo" if transport == "inproc" else "tcp://127.0.0.1:*"
    context = zmq.Context()
    sender, receiver = context.socket(zmq.PAIR), context.socket(zmq.PAIR)
    try:
        for socket in (sender, receiver):
            socket.linger = 0
        receiver.rcvtimeo = RECEIVE_TIMEOUT_MS
        receiver.bind(endpoint)
        sender.connect(receiver.getsockopt_string(zmq.LAST_ENDPOINT))

        timings: list[tuple[float, float, float]] = []
        for attempt in range(repeats):
            start = time.perf_counter()
            frames = codec.encode(kv, request_id=f"codec-demo-{attempt}")
            encoded = time.perf_counter()
            sender.send_multipart(frames, copy=False)
            received = receiver.recv_multipart(copy=False)
            transferred = time.perf_counter()
            decoded = codec.decode(received)
            done = time.perf_counter()
            timings.append((encoded - start, transferred - encoded, done - transferred))

        message = decoded.message
        assert isinstance(message, KVCache)
        zero_copy = np.shares_memory(message.keys, np.frombuffer(received[1].buffer, np.uint8))
        equal = message == kv
    finally:
        sender.close()
        receiver.close()
        context.term()
    return DemoReport(
        shape=(LAYERS, KV_HEADS, tokens, HEAD_DIM),
        transport=transport,
        array_bytes=kv.nbytes,
        header_bytes=len(frames[0]),
        frame_count=len(frames),
        warm_up_s=warm_up_s,
        encode_s=statistics.median(t[0] for t in timings),
        transfer_s=statistics.median(t[1] for t in timings),
        decode_s=statistics.median(t[2] for t in timings),
        memcpy_s=_memcpy_seconds(kv, repeats),
        equal=equal,
        zero_copy_received=zero_copy,
    )


def _memcpy_seconds(kv: KVCache, repeats: int) -> float:
    """Median time of one copy of keys and values into preallocated (already touched) arrays."""
    keys, values = np.empty_like(kv.keys), np.empty_like(kv.values)
    times = []
    for _ in range(repeats + 1):  # the first copy pays the destination's page faults: not timed
        start = time.perf_counter()
        np.copyto(keys, kv.keys)
        np.copyto(values, kv.values)
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


@app.command("codec-demo")
def codec_demo(
    tokens: Annotated[int, typer.Option(min=1, max=32_768, help="Sequence length.")] = 1024,
    transport: Annotated[
        str, typer.Option(help="inproc (zero-copy end to end) or tcp (127.0.0.1).")
    ] = "inproc",
    repeats: Annotated[int, typer.Option(min=1, max=50, help="Round trips (median).")] = 5,
) -> None:
    """Round-trip a llama-3-8b-sized KV cache through the codec and ZeroMQ; print the costs."""
    from rich.console import Console
    from rich.table import Table

    if transport not in ("inproc", "tcp"):
        raise typer.BadParameter("transport must be inproc or tcp")
    report = run_demo(tokens, "inproc" if transport == "inproc" else "tcp", repeats)
    mib = report.array_bytes / (1 << 20)
    title = f"KV cache float16 {list(report.shape)} x2 over {report.transport}, median of {repeats}"
    table = Table(title=title)
    table.add_column("step")
    table.add_column("value", justify="right")
    table.add_row("array bytes (keys + values + positions)", f"{mib:.1f} MiB")
    table.add_row("header frame", f"{report.header_bytes} B")
    table.add_row("frames", str(report.frame_count))
    table.add_row("NaN/Inf kernel load (once per process)", f"{report.warm_up_s * 1e3:.1f} ms")
    table.add_row("encode", f"{report.encode_s * 1e3:.3f} ms")
    table.add_row("send + receive", f"{report.transfer_s * 1e3:.3f} ms")
    table.add_row("decode (validated, NaN/Inf scan)", f"{report.decode_s * 1e3:.3f} ms")
    table.add_row("reference: one memcpy of the arrays", f"{report.memcpy_s * 1e3:.3f} ms")
    table.add_row("decode / memcpy", f"{report.decode_s / report.memcpy_s:.3f}")
    table.add_row("decoded arrays are views on received frames", str(report.zero_copy_received))
    table.add_row("decoded == sent", str(report.equal))
    Console().print(table)
    if not report.equal:
        raise typer.Exit(code=1)
