"""Codec benchmark: encode+decode of a float16 KV cache against one memcpy of the same bytes."""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import numpy as np

from latentmas_mesh import codec
from latentmas_mesh.codec import finite
from latentmas_mesh.protocol import KVCache, KVCacheMetadata

LAYERS, KV_HEADS, HEAD_DIM = 32, 8, 128  # llama-3-8b's KV geometry
BYTES_PER_TOKEN = 2 * LAYERS * KV_HEADS * HEAD_DIM * 2  # keys + values, float16


def build_cache(size_mib: int, rng: np.random.Generator) -> KVCache:
    """keys + values of `size_mib` MiB in float16, shape [32, 8, seq, 128] each."""
    seq = max(1, size_mib * (1 << 20) // BYTES_PER_TOKEN)
    shape = (LAYERS, KV_HEADS, seq, HEAD_DIM)
    keys = rng.standard_normal(shape, dtype=np.float32).astype(np.float16)
    values = rng.standard_normal(shape, dtype=np.float32).astype(np.float16)
    return KVCache(
        source_model="llama-3-8b",
        keys=keys,
        values=values,
        metadata=KVCacheMetadata(
            sequence_length=seq,
            context_description="codec benchmark",
            token_count=seq,
            generated_at=dt.datetime.now(dt.UTC),
        ),
    )


def median_seconds(action: Callable[[], object], repeats: int) -> float:
    """Median wall time of `action` over `repeats` runs, after one untimed warm-up run."""
    action()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def cold_compile_seconds() -> float:
    """Compile time of the NaN/Inf kernel with an empty numba cache, in a fresh interpreter."""
    with tempfile.TemporaryDirectory() as cache_dir:
        code = "from latentmas_mesh.codec import finite; print(finite.warm_up())"
        env = {**os.environ, "NUMBA_CACHE_DIR": cache_dir}
        done = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
        return float(done.stdout.strip().splitlines()[-1])


def measure(kv: KVCache, repeats: int) -> dict[str, float]:
    """Median seconds of each operation on `kv`; the reference copies are measured in this run."""
    keys_copy, values_copy = np.empty_like(kv.keys), np.empty_like(kv.values)

    def memcpy() -> None:
        np.copyto(keys_copy, kv.keys)
        np.copyto(values_copy, kv.values)

    def alloc_and_copy() -> None:
        kv.keys.copy()
        kv.values.copy()

    def round_trip(check_finite: bool) -> Callable[[], object]:
        def run() -> object:
            decoded = codec.decode(codec.encode(kv, request_id="bench"), check_finite=check_finite)
            if not isinstance(decoded.message, KVCache) or decoded.message.keys.shape != (
                kv.keys.shape
            ):
                raise RuntimeError("the benchmark's round trip did not return its KV cache")
            return decoded

        return run

    def scan_only() -> None:
        finite.all_finite(kv.keys)
        finite.all_finite(kv.values)

    return {
        "copyto": median_seconds(memcpy, repeats),
        "alloc_copy": median_seconds(alloc_and_copy, repeats),
        "unvalidated": median_seconds(round_trip(False), repeats),
        "validated": median_seconds(round_trip(True), repeats),
        "scan": median_seconds(scan_only, repeats),
        "encode": median_seconds(lambda: codec.encode(kv, request_id="bench"), repeats),
    }


def print_table(kv: KVCache, seconds: dict[str, float], memcpy_s: float, repeats: int) -> None:
    """The readable table: each operation in ms, GiB/s and as a multiple of the memcpy."""
    total_bytes = kv.keys.nbytes + kv.values.nbytes
    gib = total_bytes / (1 << 30)
    rows = [
        ("np.copyto into preallocated arrays", seconds["copyto"]),
        ("np.copy (allocates the destination)", seconds["alloc_copy"]),
        ("encode only", seconds["encode"]),
        ("encode + decode, no NaN/Inf scan", seconds["unvalidated"]),
        ("encode + decode, with NaN/Inf scan", seconds["validated"]),
        ("NaN/Inf scan only", seconds["scan"]),
    ]
    shape = "x".join(map(str, kv.keys.shape))
    print(f"KV cache: keys and values float16 [{shape}] each, {total_bytes / (1 << 20):.0f} MiB")
    print(f"cores: {os.cpu_count()}, repeats: {repeats} (median)")
    print("reference (x memcpy = 1): the faster of the two numpy copies below")
    print(f"{'operation':<46}{'ms':>10}{'GiB/s':>10}{'x memcpy':>10}")
    for name, value in rows:
        print(f"{name:<46}{value * 1e3:>10.3f}{gib / value:>10.1f}{value / memcpy_s:>10.4f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size-mib", type=int, default=256, help="keys + values, MiB")
    parser.add_argument("--repeats", type=int, default=9)
    args = parser.parse_args()

    warm_start = time.perf_counter()
    finite.warm_up()
    warm_seconds = time.perf_counter() - warm_start
    cold_seconds = cold_compile_seconds()

    kv = build_cache(args.size_mib, np.random.default_rng(0))
    seconds = measure(kv, args.repeats)
    memcpy_s = min(seconds["copyto"], seconds["alloc_copy"])  # the stricter reference
    print_table(kv, seconds, memcpy_s, args.repeats)
    print(f"numba kernel: {cold_seconds:.2f} s cold compile, {warm_seconds:.2f} s load from cache")
    figures = {
        "bytes": kv.keys.nbytes + kv.values.nbytes,
        "shape": list(kv.keys.shape),
        "repeats": args.repeats,
        "cpu_count": os.cpu_count(),
        "memcpy_ms": memcpy_s * 1e3,
        "numpy_copyto_ms": seconds["copyto"] * 1e3,
        "numpy_copy_with_alloc_ms": seconds["alloc_copy"] * 1e3,
        "encode_ms": seconds["encode"] * 1e3,
        "encode_decode_unvalidated_ms": seconds["unvalidated"] * 1e3,
        "encode_decode_validated_ms": seconds["validated"] * 1e3,
        "scan_ms": seconds["scan"] * 1e3,
        "ratio_to_memcpy_unvalidated": seconds["unvalidated"] / memcpy_s,
        "ratio_to_memcpy_validated": seconds["validated"] / memcpy_s,
        "ratio_scan_to_memcpy": seconds["scan"] / memcpy_s,
        "numba_compile_cold_s": cold_seconds,
        "numba_load_warm_s": warm_seconds,
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
