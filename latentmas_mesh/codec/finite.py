"""The NaN/Inf rule for float arrays: one read of the bytes, no full-size temporary."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Final

import numpy as np

from latentmas_mesh.protocol.dtypes import dtype_name

# IEEE 754 and bfloat16: a value is NaN or ±Inf exactly when its exponent bits are all ones.
# wire dtype name -> (unsigned type of the same width, exponent mask)
_EXPONENT_MASKS: Final[dict[str, tuple[type[np.unsignedinteger[Any]], int]]] = {
    "float16": (np.uint16, 0x7C00),
    "bfloat16": (np.uint16, 0x7F80),
    "float32": (np.uint32, 0x7F80_0000),
    "float64": (np.uint64, 0x7FF0_0000_0000_0000),
}
PARALLEL_BYTES_MIN: Final = 8 << 20  # below this one thread is faster than handing out work
REFERENCE_CHUNK_ELEMENTS: Final = 1 << 20  # bounds the numpy twin's temporary to 1 MiB of bools
THREADS_MAX: Final = 8

_lock = threading.Lock()
_kernel: Callable[[np.ndarray[Any, Any], Any], Any] | None = None
_pool: ThreadPoolExecutor | None = None
_pool_pid: int | None = None  # a pool inherited through fork has no threads: rebuild it
compile_seconds: float | None = None  # set once the kernel is compiled or loaded from cache


def all_finite(array: np.ndarray[Any, np.dtype[Any]]) -> bool:
    """True when no element of a float array is NaN or ±Inf; always True for other dtypes.

    Reads each byte once through a numba kernel on the raw bits (max of `bits & exponent_mask`
    equals the mask iff some element is non-finite), split over threads for large arrays.
    """
    name = dtype_name(array.dtype)
    if name not in _EXPONENT_MASKS or array.size == 0:
        return True
    unsigned, mask = _EXPONENT_MASKS[name]
    bits = _flat_bits(array, unsigned)
    if bits is None:  # unaligned or strided memory: fall back to the bounded numpy twin
        return all_finite_reference(array)
    kernel = _get_kernel()
    typed_mask = unsigned(mask)
    workers = _threads_for(bits.nbytes)
    if workers == 1:
        return bool(kernel(bits, typed_mask) != typed_mask)
    pieces = np.array_split(bits, workers)
    futures = [_get_pool().submit(kernel, piece, typed_mask) for piece in pieces]
    return all(future.result() != typed_mask for future in futures)


def all_finite_reference(array: np.ndarray[Any, np.dtype[Any]]) -> bool:
    """The numpy twin of `all_finite`: np.isfinite over bounded chunks (the tests' reference)."""
    if dtype_name(array.dtype) not in _EXPONENT_MASKS:
        return True
    flat = array.reshape(-1)
    for start in range(0, flat.size, REFERENCE_CHUNK_ELEMENTS):
        if not bool(np.isfinite(flat[start : start + REFERENCE_CHUNK_ELEMENTS]).all()):
            return False
    return True


def warm_up() -> float:
    """Compile (or load from numba's cache) the kernel for every width; returns seconds spent."""
    start = time.perf_counter()
    kernel = _get_kernel()
    for unsigned, mask in _EXPONENT_MASKS.values():
        kernel(np.zeros(4, dtype=unsigned), unsigned(mask))
    return time.perf_counter() - start


def _flat_bits(
    array: np.ndarray[Any, np.dtype[Any]], unsigned: type[np.unsignedinteger[Any]]
) -> np.ndarray[Any, np.dtype[Any]] | None:
    """The array's memory as a 1-D unsigned view (no copy), or None when that needs a copy."""
    if not array.flags.c_contiguous or not array.flags.aligned:
        return None
    return array.reshape(-1).view(unsigned)


def _usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _threads_for(nbytes: int) -> int:
    if nbytes < PARALLEL_BYTES_MIN:
        return 1
    return max(1, min(THREADS_MAX, _usable_cpus()))


def _get_pool() -> ThreadPoolExecutor:
    global _pool, _pool_pid  # noqa: PLW0603  # one lazily created pool per process
    with _lock:
        if _pool is None or _pool_pid != os.getpid():
            _pool = ThreadPoolExecutor(
                max_workers=min(THREADS_MAX, _usable_cpus()),
                thread_name_prefix="latentmas-finite",
            )
            _pool_pid = os.getpid()
        return _pool


def _get_kernel() -> Callable[[np.ndarray[Any, Any], Any], Any]:
    """The compiled kernel; numba is imported and the kernel compiled once per process."""
    global _kernel, compile_seconds  # noqa: PLW0603  # compiled once per process
    with _lock:
        if _kernel is None:
            start = time.perf_counter()
            _kernel = _compile_kernel()
            for unsigned, mask in _EXPONENT_MASKS.values():
                _kernel(np.zeros(4, dtype=unsigned), unsigned(mask))
            compile_seconds = time.perf_counter() - start
        return _kernel


def _compile_kernel() -> Callable[[np.ndarray[Any, Any], Any], Any]:
    import numba

    # nogil: threads scan pieces in parallel; cache: the compile is paid once per machine, not
    # per process; no fastmath: integer code, nothing to relax; boundscheck off: range is exact.
    @numba.njit(cache=True, nogil=True, fastmath=False, boundscheck=False, parallel=False)
    def exponent_max(bits: np.ndarray[Any, Any], mask: Any) -> Any:  # noqa: ANN401  # numba scalars
        """max(bits & mask) over a 1-D unsigned array; equals mask iff an element is non-finite."""
        largest = bits.dtype.type(0)
        for i in range(bits.size):
            exponent = bits[i] & mask
            largest = max(largest, exponent)
        return largest

    kernel: Callable[[np.ndarray[Any, Any], Any], Any] = exponent_max
    return kernel


__all__ = ["all_finite", "all_finite_reference", "compile_seconds", "warm_up"]
