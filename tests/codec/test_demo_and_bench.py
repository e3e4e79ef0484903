"""The codec demo and the codec benchmark run end to end on a small cache."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from latentmas_mesh.cli.codec_demo import run_demo

ROOT = Path(__file__).resolve().parents[2]


class TestCodecDemo:
    @pytest.mark.parametrize("transport", ["inproc", "tcp"])
    def test_demo_round_trip_is_equal_and_zero_copy(self, transport):
        """The demo's cache comes back equal, as views on the frames it received."""
        report = run_demo(16, transport, repeats=2)

        assert (True, True, 4) == (report.equal, report.zero_copy_received, report.frame_count)


class TestCodecBench:
    def test_bench_prints_ratios_as_its_last_json_line(self):
        """bench/codec.py ends with one JSON object holding both ratios and absolute times."""
        done = subprocess.run(
            [sys.executable, str(ROOT / "bench" / "codec.py"), "--size-mib", "4", "--repeats", "3"],
            capture_output=True,
            text=True,
            check=True,
            timeout=120,
        )

        figures = json.loads(done.stdout.strip().splitlines()[-1])

        assert {
            "ratio_to_memcpy_validated",
            "ratio_to_memcpy_unvalidated",
            "memcpy_ms",
            "numba_compile_cold_s",
        } <= set(figures)
        validated, unvalidated = (
            figures[f"ratio_to_memcpy_{k}"] for k in ("validated", "unvalidated")
        )
        assert 0 < unvalidated < 1000
        assert figures["memcpy_ms"] > 0
        assert validated >= 0.8 * unvalidated  # the NaN/Inf scan is extra work, never a saving
