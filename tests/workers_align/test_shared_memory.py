"""KV exchanges through a real local mesh over same-host shared memory, and the fallback to
frames when the worker cannot map the client's segments."""

from __future__ import annotations

import gc
import os

import numpy as np
import pytest

from latentmas_mesh.artifacts.kv_map_store import KVMapStore
from latentmas_mesh.protocol.align import ExchangeMemoryRequest
from latentmas_mesh.shm import default_directory
from latentmas_mesh.testing.mesh import LocalMesh
from tests.workers_align.conftest import GEMMA, SMOL, fitted_smol_to_gemma, kv_cache

ALIGN = "latentmas.align"
TIMEOUT_MS = 60_000
SEQ = 512  # smollm2 float32 keys: 30 x 3 x 512 x 64 x 4 bytes = 11.8 MB, past the 1 MiB floor


def start(tmp_path_factory, rng, *, shared: bool) -> LocalMesh:
    cache = tmp_path_factory.mktemp("alignment-cache")
    KVMapStore(cache / "kvmaps").put(
        fitted_smol_to_gemma(rng), source=SMOL, target=GEMMA, version="1.0.0"
    )
    env = {"LATENTMAS_CACHE_DIR": str(cache)}
    return LocalMesh({"align": 1}, env=env, shared_memory=shared).start(timeout_s=120)


@pytest.fixture(scope="module")
def module_rng():
    return np.random.default_rng(7)


@pytest.fixture(scope="module")
def mesh(tmp_path_factory, module_rng):
    with start(tmp_path_factory, module_rng, shared=True) as local:
        yield local


def exchange(cache) -> ExchangeMemoryRequest:
    return ExchangeMemoryRequest(kv_source=cache, source_model=SMOL, target_model=GEMMA)


def worker_segments(mesh: LocalMesh) -> list[str]:
    pid = mesh.worker_processes[0].pid
    return [name for name in os.listdir(default_directory()) if name.startswith(f"{pid}-")]


@pytest.mark.slow
class TestSharedMemory:
    def test_the_reply_lies_in_the_workers_segments_and_equals_the_framed_one(self, mesh, rng):
        cache = kv_cache(SMOL, rng, seq=SEQ)
        with mesh.transport() as shared, mesh.transport(shared_memory_dir=None) as framed:
            via_segments = shared.call(ALIGN, exchange(cache), timeout_ms=TIMEOUT_MS).message
            via_frames = framed.call(ALIGN, exchange(cache), timeout_ms=TIMEOUT_MS).message

            assert shared.shared_memory is not None
            assert shared.shared_memory.peers.opened >= 1  # the reply's segments were mapped
            assert 0 == shared.shared_memory.fallbacks
            for got, want in (
                (via_segments.kv_aligned.keys, via_frames.kv_aligned.keys),
                (via_segments.kv_aligned.values, via_frames.kv_aligned.values),
            ):
                np.testing.assert_array_equal(want, got)
                assert not got.flags.writeable

    def test_a_held_reply_is_never_overwritten_and_dropped_ones_are_reused(self, mesh, rng):
        with mesh.transport() as transport:
            first = transport.call(ALIGN, exchange(kv_cache(SMOL, rng, seq=SEQ)),
                                   timeout_ms=TIMEOUT_MS).message  # fmt: skip
            kept = first.kv_aligned.keys.copy()
            for _ in range(4):  # other caches, replies dropped at once
                transport.call(ALIGN, exchange(kv_cache(SMOL, rng, seq=SEQ)),
                               timeout_ms=TIMEOUT_MS)  # fmt: skip
                gc.collect()

            np.testing.assert_array_equal(kept, first.kv_aligned.keys)
            # the held reply's two segments, plus one pair reused by the four others
            assert len(worker_segments(mesh)) <= 4


@pytest.mark.slow
def test_a_worker_without_shared_memory_is_answered_inline(tmp_path_factory, rng):
    """The client's segments cannot be mapped there: the call is resent inline, once, and the
    service's next calls go inline without asking again."""
    with (
        start(tmp_path_factory, rng, shared=False) as mesh,
        mesh.transport(shared_memory_dir=default_directory()) as transport,
    ):
        cache = kv_cache(SMOL, rng, seq=SEQ)
        replies = [
            transport.call(ALIGN, exchange(cache), timeout_ms=TIMEOUT_MS).message for _ in range(2)
        ]

        assert transport.shared_memory is not None
        assert 1 == transport.shared_memory.fallbacks
        np.testing.assert_array_equal(replies[0].kv_aligned.keys, replies[1].kv_aligned.keys)
