"""bench/align_service.py runs end to end at a tiny size (the full size is `make bench`'s)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_bench_prints_both_ratios_as_its_last_json_line():
    """16 tokens, one round: the JSON line holds both ratios, each a positive number."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "align_service.py"), "--tokens", "16",
         "--rounds", "1", "--kv-requests", "2", "--vector-seconds", "0.2"],
        capture_output=True, text=True, check=True, timeout=300,
    )  # fmt: skip

    figures = json.loads(done.stdout.strip().splitlines()[-1])

    assert figures["kv_mesh_vs_inprocess"] > 0
    assert figures["vector_mesh_vs_inprocess"] > 0
    assert [32, 8, 16, 128] == figures["kv_shape"]
    assert figures["kv_frames_vs_floor"] > 0
    assert figures["kv_mesh_built_shared_vs_inprocess"] > 0
