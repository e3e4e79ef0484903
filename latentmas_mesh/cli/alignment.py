"""`latentmas kernel-warmup` and `latentmas wmatrices`: the alignment engine's operator commands."""

from __future__ import annotations

import json
import time
from typing import Annotated

import typer

from latentmas_mesh.cli.app import app


@app.command("kernel-warmup")
def kernel_warmup() -> None:
    """Compile the fused KV kernel into numba's cache (so no worker start compiles it)."""
    from latentmas_mesh.alignment.kernels import warm_up

    started = time.perf_counter()
    warm_up()
    typer.echo(json.dumps({"kernel_seconds": round(time.perf_counter() - started, 3)}))


@app.command("wmatrices")
def wmatrices(
    source: Annotated[str, typer.Argument(help="Source model (registry name).")],
    target: Annotated[str, typer.Argument(help="Target model (registry name).")],
) -> None:
    """List the stored W-matrix versions of a model pair as JSON lines."""
    from latentmas_mesh.artifacts.wmatrix_store import WMatrixStore
    from latentmas_mesh.services.alignment_settings import AlignmentSettings

    settings = AlignmentSettings()
    store = WMatrixStore(settings.path(settings.alignment_wmatrix_dir))
    for record in store.records(source, target):
        typer.echo(json.dumps(record.to_json(), sort_keys=True))
