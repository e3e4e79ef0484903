"""`latentmas hf ...`: prepare the real models and export anchor activations (extra `hf`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from latentmas_mesh.cli.app import app

hf_app = typer.Typer(
    help="Real models through Hugging Face transformers (needs the hf extra).",
    no_args_is_help=True,
)
app.add_typer(hf_app, name="hf")


@hf_app.command("prepare")
def prepare(
    model: Annotated[
        list[str] | None, typer.Argument(help="Registry names; default: every loadable model.")
    ] = None,
) -> None:
    """Dequantise each model's GGUF file once into the cache directory (safetensors)."""
    from latentmas_mesh.integrations.hf import convert_model, supported_model_names

    for name in model or list(supported_model_names()):
        typer.echo(f"{name}: {convert_model(name)}")


@hf_app.command("export-anchors")
def export_anchors(
    model: Annotated[str, typer.Argument(help="Registry name of the model to run.")],
    out_dir: Annotated[Path, typer.Argument(help="Directory for the safetensors files.")],
    *,
    tokens_max: Annotated[
        int | None, typer.Option(help="Text tokens read per passage (default: all).")
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N passages.")] = None,
    dtype: Annotated[str, typer.Option(help="float16 or float32.")] = "float16",
    hidden: Annotated[bool, typer.Option(help="Also export hidden states.")] = True,
) -> None:
    """Export MODEL's activations on the shipped anchor corpus to OUT_DIR.

    Per passage: keys before and after RoPE, values, hidden states and each token's character
    offsets; plus manifest.json. This is what a model owner sends to register a model: maps are
    fitted from it without the server ever holding the weights.
    """
    from rich.progress import Progress

    from latentmas_mesh.anchors import load_anchor_passages
    from latentmas_mesh.integrations.hf import export_anchor_activations, load_model

    loaded = load_model(model)
    passages = load_anchor_passages()
    chosen = passages if limit is None else passages[:limit]
    with Progress() as progress:
        task = progress.add_task(f"{loaded.name} on anchors", total=len(chosen))
        manifest = export_anchor_activations(
            loaded,
            out_dir,
            passages=chosen,
            tokens_max=tokens_max,
            dtype=dtype,
            include_hidden=hidden,
            on_passage=lambda done, _total: progress.update(task, completed=done),
        )
    typer.echo(str(manifest))
