"""Fused KV-alignment kernel vs a numpy BLAS roofline and an unfused numpy pipeline.

Cache shaped like llama-3-8b's: 32 layers, 8 KV heads, 2,048 tokens, head_dim 128; per-head
128x128 maps for keys and for values. Three ways to compute the same amount of matrix work:

  roofline  numpy BLAS matmul of the same shapes (float32, no rotary, no casts): the faster of
            BLAS at its default thread count and BLAS at one thread (when another process holds
            a core, OpenBLAS's threads wait on each other and one thread is faster)
  unfused   numpy: convert, de-rotate, gather, matmul, bias, re-rotate, cast, each a full array
  fused     the numba kernel: all of that per tile of positions (61 here), one sgemm per tile

Each round runs every variant once, in turn, with a short pause before each (BLAS and OpenMP
worker threads of the previous one stop spinning); a variant's figure is its fastest round, so
bursts of load from other processes are discarded and every variant sees the same conditions.
Ratios: vs_roofline = t_roofline / t_fused (target >= 0.8), vs_unfused = t_unfused / t_fused
(target >= 3), wall clock with every core.

The machine may be shared; wall clock then depends on what else runs. So the same comparison is
also made on one core in a child process (NUMBA_NUM_THREADS=1, OPENBLAS_NUM_THREADS=1) by CPU
time, which other processes barely disturb: the *_single_core_cpu figures.
Run: .venv/bin/python bench/kv_kernels.py [--rounds N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np
from threadpoolctl import threadpool_limits

from latentmas_mesh.alignment.kernels import (
    HeadMaps,
    align_heads,
    align_heads_reference,
    warm_up,
)
from latentmas_mesh.alignment.rope import RotarySpec, rotary_tables

LAYERS, HEADS, TOKENS, HEAD_DIM = 32, 8, 2048, 128
DTYPES = (np.float32, np.float16)
PAUSE_SECONDS = 0.3
_CPU_CLOCK = "LATENTMAS_BENCH_CPU_CLOCK"
SOURCE_ROPE = RotarySpec(theta=500_000.0, convention="half")  # llama-3
TARGET_ROPE = RotarySpec(theta=10_000.0, convention="interleaved")


def cold_compile_seconds() -> float:
    """Kernel compile time in a fresh process with an empty numba cache directory."""
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        code = (
            "import time; from latentmas_mesh.alignment.kernels import warm_up; "
            "t = time.perf_counter(); warm_up(); print(time.perf_counter() - t)"
        )
        done = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
    return float(done.stdout.strip().splitlines()[-1])


def blas_description() -> list[dict[str, object]]:
    """Which BLAS libraries are loaded, with their thread counts and the kernel they run."""
    from threadpoolctl import threadpool_info

    return [
        {k: info.get(k) for k in ("internal_api", "version", "architecture", "num_threads",
                                  "filepath")}
        for info in threadpool_info()
        if info.get("user_api") == "blas"
    ]  # fmt: skip


def make_problem(rng: np.random.Generator):
    shape = (LAYERS, HEADS, TOKENS, HEAD_DIM)
    keys = rng.standard_normal(shape, dtype=np.float32)
    values = rng.standard_normal(shape, dtype=np.float32)
    grid = np.stack(np.meshgrid(np.arange(LAYERS), np.arange(HEADS), indexing="ij"), axis=-1)
    inputs = np.ascontiguousarray(grid[:, :, None, :], dtype=np.int64)

    def maps() -> HeadMaps:
        weight = rng.standard_normal((LAYERS, HEADS, HEAD_DIM, HEAD_DIM), dtype=np.float32)
        bias = rng.standard_normal((LAYERS, HEADS, HEAD_DIM), dtype=np.float32)
        return HeadMaps(inputs, weight / np.float32(np.sqrt(HEAD_DIM)), bias)

    positions = np.arange(TOKENS)
    source_tables = rotary_tables([SOURCE_ROPE] * LAYERS, HEAD_DIM, positions)
    target_tables = rotary_tables([TARGET_ROPE] * LAYERS, HEAD_DIM, positions)
    return keys, values, maps(), maps(), source_tables, target_tables


def measure(rounds: int, dtype: np.dtype, problem) -> dict[str, float]:
    keys32, values32, key_maps, value_maps, source_tables, target_tables = problem
    keys, values = keys32.astype(dtype), values32.astype(dtype)

    def roofline() -> None:
        np.matmul(keys32, key_maps.weight)
        np.matmul(values32, value_maps.weight)

    def roofline_one_thread() -> None:
        with threadpool_limits(limits=1, user_api="blas"):
            roofline()

    def unfused() -> None:
        align_heads_reference(
            keys, key_maps, source_rotary=source_tables, target_rotary=target_tables
        )
        align_heads_reference(values, value_maps)

    def fused() -> None:
        align_heads(keys, key_maps, source_rotary=source_tables, target_rotary=target_tables)
        align_heads(values, value_maps)

    variants = {
        "roofline_default_threads": roofline,
        "roofline_one_thread": roofline_one_thread,
        "unfused": unfused,
        "fused": fused,
    }
    clock = time.process_time if os.environ.get(_CPU_CLOCK) else time.perf_counter
    best = dict.fromkeys(variants, float("inf"))
    for _ in range(rounds):
        for name, run in variants.items():
            time.sleep(PAUSE_SECONDS)
            started = clock()
            run()
            best[name] = min(best[name], clock() - started)
    best["roofline"] = min(best["roofline_default_threads"], best["roofline_one_thread"])
    return best


def single_core_cpu(rounds: int) -> dict[str, dict[str, float]]:
    """The same comparison on one core, by CPU time, in a child process."""
    env = {**os.environ, "NUMBA_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", _CPU_CLOCK: "1"}
    done = subprocess.run(
        [sys.executable, __file__, "--rounds", str(rounds), "--child"],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return json.loads(done.stdout.strip().splitlines()[-1])


def check_agreement(problem) -> float:
    """Largest relative difference fused vs unfused on the float32 keys (sanity, not speed)."""
    keys, _, key_maps, _, source_tables, target_tables = problem
    args = {"source_rotary": source_tables, "target_rotary": target_tables}
    sample = np.ascontiguousarray(keys[:2])
    small = HeadMaps(key_maps.inputs[:2], key_maps.weight[:2], key_maps.bias[:2])
    small_source = rotary_tables([SOURCE_ROPE] * 2, HEAD_DIM, np.arange(TOKENS))
    small_target = rotary_tables([TARGET_ROPE] * 2, HEAD_DIM, np.arange(TOKENS))
    args = {"source_rotary": small_source, "target_rotary": small_target}
    fused = align_heads(sample, small, **args)
    reference = align_heads_reference(sample, small, **args)
    return float(np.abs(fused - reference).max() / np.abs(reference).max())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        warm_up()
        problem = make_problem(np.random.default_rng(0))
        child = {d.name: measure(args.rounds, d, problem) for d in map(np.dtype, DTYPES)}
        print(json.dumps(child))
        return

    compile_cold = cold_compile_seconds()
    started = time.perf_counter()
    warm_up()
    first_call = time.perf_counter() - started
    problem = make_problem(np.random.default_rng(0))
    flops = 2 * 2 * LAYERS * HEADS * TOKENS * HEAD_DIM * HEAD_DIM  # keys and values
    figures: dict[str, object] = {
        "shape": [LAYERS, HEADS, TOKENS, HEAD_DIM],
        "rounds": args.rounds,
        "compile_seconds": round(compile_cold, 3),
        "cache_load_seconds": round(first_call, 3),
        "max_relative_difference_fused_vs_unfused": check_agreement(problem),
    }
    rows = []
    for dtype in map(np.dtype, DTYPES):
        best = measure(args.rounds, dtype, problem)
        name = dtype.name
        figures[f"{name}_seconds"] = {k: round(v, 4) for k, v in best.items()}
        figures[f"{name}_fused_gflops"] = round(flops / best["fused"] / 1e9, 2)
        figures[f"{name}_vs_roofline"] = round(best["roofline"] / best["fused"], 3)
        figures[f"{name}_vs_unfused"] = round(best["unfused"] / best["fused"], 3)
        rows.append((name, best))
    single = single_core_cpu(args.rounds)
    for name, best in single.items():
        figures[f"{name}_single_core_cpu_seconds"] = {k: round(v, 4) for k, v in best.items()}
        figures[f"{name}_vs_roofline_single_core_cpu"] = round(best["roofline"] / best["fused"], 3)
        figures[f"{name}_vs_unfused_single_core_cpu"] = round(best["unfused"] / best["fused"], 3)
    figures["vs_roofline"] = figures["float32_vs_roofline"]
    figures["vs_unfused"] = figures["float32_vs_unfused"]
    figures["targets"] = {"vs_roofline": 0.8, "vs_unfused": 3.0}
    figures["blas"] = blas_description()
    figures["machine"] = {
        "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "load_average_1m": round(os.getloadavg()[0], 2),
        "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE"),
        "OPENBLAS_L2_SIZE": os.environ.get("OPENBLAS_L2_SIZE"),
    }

    print(
        f"KV alignment kernel, cache {LAYERS}x{HEADS}x{TOKENS}x{HEAD_DIM}, keys + values, "
        f"best of {args.rounds} rounds"
    )
    print(
        f"numba compile (cold cache): {compile_cold:.2f} s; first call with cache: "
        f"{first_call:.3f} s"
    )
    print(
        f"{'input':<8} {'roofline s':>11} {'unfused s':>10} {'fused s':>8} "
        f"{'vs roofline':>12} {'vs unfused':>11}"
    )
    for name, best in rows:
        print(
            f"{name:<8} {best['roofline']:>11.4f} {best['unfused']:>10.4f} "
            f"{best['fused']:>8.4f} {best['roofline'] / best['fused']:>12.2f} "
            f"{best['unfused'] / best['fused']:>11.2f}"
        )
    print("one core, CPU seconds (child process, NUMBA_NUM_THREADS=OPENBLAS_NUM_THREADS=1):")
    for name, best in single.items():
        print(
            f"{name:<8} {best['roofline']:>11.4f} {best['unfused']:>10.4f} "
            f"{best['fused']:>8.4f} {best['roofline'] / best['fused']:>12.2f} "
            f"{best['unfused'] / best['fused']:>11.2f}"
        )
    print(
        "roofline = numpy float32 BLAS matmul of the same shapes (no rotary, no casts) for "
        "both inputs; targets: vs roofline >= 0.8, vs unfused >= 3"
    )
    print(json.dumps(figures, sort_keys=True))


if __name__ == "__main__":
    main()
