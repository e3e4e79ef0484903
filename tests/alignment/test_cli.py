"""The alignment engine's operator commands."""

from __future__ import annotations

import json

from typer.testing import CliRunner

import latentmas_mesh.cli.alignment  # noqa: F401 - registers the commands on `app`
from latentmas_mesh.alignment import fit_w_matrix
from latentmas_mesh.artifacts.wmatrix_store import WMatrixStore
from latentmas_mesh.cli.app import app


def test_kernel_warmup_reports_its_seconds():
    """`latentmas kernel-warmup` compiles or loads the kernel and prints how long it took."""
    result = CliRunner().invoke(app, ["kernel-warmup"])

    assert 0 == result.exit_code
    assert json.loads(result.stdout)["kernel_seconds"] >= 0


def test_wmatrices_lists_stored_versions(tmp_path, monkeypatch, linear):
    """Stored versions of a pair are listed one JSON record per line."""
    monkeypatch.setenv("LATENTMAS_CACHE_DIR", str(tmp_path))
    store = WMatrixStore(tmp_path / "wmatrices")
    store.put(fit_w_matrix(linear.x, linear.y, unified_dim=8), source_model="a", target_model="b")

    result = CliRunner().invoke(app, ["wmatrices", "a", "b"])

    assert 0 == result.exit_code
    assert ["1.0.0"] == [json.loads(line)["version"] for line in result.stdout.splitlines()]
