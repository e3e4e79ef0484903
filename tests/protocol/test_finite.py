"""The NaN/Inf kernel agrees with its numpy twin on every float dtype, size and position."""

from __future__ import annotations

import multiprocessing
import subprocess
import sys

import ml_dtypes
import numpy as np
import pytest

from latentmas_mesh.codec import finite

FLOATS = {
    "float16": np.float16,
    "bfloat16": ml_dtypes.bfloat16,
    "float32": np.float32,
    "float64": np.float64,
}


class TestAllFinite:
    @pytest.mark.parametrize("dtype", sorted(FLOATS))
    @pytest.mark.parametrize("size", [1, 7, 4096, 100_003])
    @pytest.mark.parametrize("poison", [None, np.nan, np.inf, -np.inf])
    def test_kernel_matches_numpy_reference(self, dtype, size, poison, rng):
        """all_finite and the np.isfinite twin agree, wherever the poison sits."""
        array = rng.standard_normal(size).astype(FLOATS[dtype])
        if poison is not None:
            array[rng.integers(0, size)] = poison

        assert finite.all_finite_reference(array) == finite.all_finite(array)
        assert (poison is None) == finite.all_finite(array)

    @pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
    def test_threaded_path_finds_poison_in_the_last_piece(self, dtype):
        """Above the parallel threshold, a NaN in the final element is still found."""
        array = np.zeros(finite.PARALLEL_BYTES_MIN, dtype=FLOATS[dtype])  # 16 MiB
        array[-1] = np.nan

        assert (False, True) == (finite.all_finite(array), finite.all_finite(array[:-1]))

    def test_largest_finite_values_are_finite(self):
        """max and min of each dtype pass: only an all-ones exponent is refused."""
        for dtype in FLOATS.values():
            info = ml_dtypes.finfo(dtype) if dtype is ml_dtypes.bfloat16 else np.finfo(dtype)
            array = np.array([info.max, info.min, info.tiny, 0.0], dtype=dtype)

            assert finite.all_finite(array)

    def test_strided_arrays_use_the_reference(self, rng):
        """A non-contiguous view is checked correctly (through the bounded numpy twin)."""
        array = rng.standard_normal((8, 8)).astype(np.float32)
        array[3, 2] = np.inf

        assert (False, True) == (
            finite.all_finite(array[:, ::2]),
            finite.all_finite(array[:, 1::2]),
        )

    def test_integer_arrays_are_always_finite(self):
        """Integer and bool arrays cannot hold NaN; the check passes them untouched."""
        assert finite.all_finite(np.arange(10, dtype=np.int32))

    def test_warm_up_compiles_every_width_once(self):
        """In a fresh process warm-up compiles one signature per width, records the time, and
        a second warm-up compiles nothing (same dispatcher, no new signature)."""
        code = (
            "from latentmas_mesh.codec import finite; "
            "assert finite.compile_seconds is None; finite.warm_up(); k = finite._kernel; "
            "n = len(k.signatures); s = finite.compile_seconds; finite.warm_up(); "
            "print(s is not None and s > 0, finite._kernel is k, len(k.signatures) == n, n)"
        )
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=300
        )

        widths = len({unsigned for unsigned, _ in finite._EXPONENT_MASKS.values()})
        assert f"True True True {widths}" == done.stdout.strip().splitlines()[-1]


def _scan_in_child(queue: multiprocessing.Queue[bool]) -> None:
    array = np.zeros(finite.PARALLEL_BYTES_MIN, dtype=np.float16)
    array[-1] = np.inf
    queue.put(finite.all_finite(array))


def test_threaded_scan_works_in_a_forked_child():
    """A child forked after the parent used the thread pool builds its own pool, not hangs."""
    finite.all_finite(np.zeros(finite.PARALLEL_BYTES_MIN, dtype=np.float16))  # parent's pool
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_scan_in_child, args=(queue,))
    child.start()
    child.join(timeout=60)
    if child.is_alive():  # a hung child fails the test below; do not leave it running
        child.kill()
        child.join()

    assert (0, False) == (child.exitcode, queue.get(timeout=5))
