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


@hf_app.command("fit-pair")
def fit_pair(
    source: Annotated[str, typer.Argument(help="Sender model (registry name).")],
    target: Annotated[str, typer.Argument(help="Receiver model (registry name).")],
    *,
    version: Annotated[str, typer.Option(help="MAJOR.MINOR.PATCH of the stored maps.")] = "1.0.0",
    passages: Annotated[int, typer.Option(help="Anchor passages of the fit split.")] = 150,
    neighbour_layers: Annotated[
        int, typer.Option(help="Source layers read on each side of the proportional one.")
    ] = 1,
    kind_passages: Annotated[
        int, typer.Option(help="Fit passages of each kind of text (data/TEXT_KINDS.md) too.")
    ] = 16,
) -> None:
    """Fit SOURCE -> TARGET KV maps on anchor activations and store them for the align workers.

    Runs both models over the fit split of the anchor corpus (cached after the first run), fits
    one closed-form ridge map per target layer for keys and values, and puts the aligner in the
    KV map store (`LATENTMAS_ALIGNMENT_KV_MAPS_DIR`) under VERSION. Offline: never in a request.
    """
    import json

    from latentmas_mesh.artifacts.kv_map_store import KVMapStore
    from latentmas_mesh.integrations.hf import (
        fit_pair_from_anchors,
        fit_signature,
        load_model,
        pair_provenance,
    )
    from latentmas_mesh.services.alignment_settings import AlignmentSettings

    sender, receiver = load_model(source), load_model(target)
    aligner, report = fit_pair_from_anchors(
        sender, receiver, passages=passages, neighbour_layers=neighbour_layers,
        kind_passages=kind_passages,
    )  # fmt: skip
    settings = AlignmentSettings()
    store = KVMapStore(settings.path(settings.alignment_kv_maps_dir))
    path = store.put(
        aligner, source=sender.name, target=receiver.name, version=version,
        provenance=pair_provenance(
            sender, receiver, report, signature=fit_signature(passages, kind_passages)
        ),
    )  # fmt: skip
    quality = aligner.quality
    typer.echo(json.dumps({
        "path": str(path),
        "content_hash": aligner.content_hash,
        "rows": report.rows,
        "passages": len(report.fit_passages),
        "quality": None if quality is None else quality.to_dict(),
    }))  # fmt: skip


@hf_app.command("register-anchors")
def register_anchors(
    model: Annotated[str, typer.Argument(help="Registry name of the model to run.")],
    *,
    connect: Annotated[str, typer.Option(help="The broker's endpoint.")] = "tcp://127.0.0.1:5555",
    agent: Annotated[
        str | None,
        typer.Option(
            help="Connect as this agent of LATENTMAS_STATE_DIR (a `latentmas up --http-port` "
            "mesh); without it the LATENTMAS_CURVE_* variables apply."
        ),
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Only the first N anchor passages.")] = None,
    tokens_max: Annotated[int, typer.Option(help="Text tokens read per passage.")] = 256,
) -> None:
    """Register MODEL's passage embeddings on the shipped anchor corpus with a mesh, so that
    `generate` (Appendix C.1) can fit W-matrices between it and other registered models.

    Each row is the mean of the last layer's hidden states over one passage; the anchor set
    names the corpus, its length and the token budget, so only rows of the same passages pair.
    """
    from rich.progress import Progress

    from latentmas_mesh.agents import AgentSettings
    from latentmas_mesh.anchors import anchor_corpus_sha256, load_anchor_passages
    from latentmas_mesh.client import MeshClient, MeshKeys
    from latentmas_mesh.integrations.hf import load_model, passage_embeddings
    from latentmas_mesh.testing.agent_mesh import AgentMesh

    keys = None
    if agent is not None:
        secret, broker_key, ledger_keys = AgentMesh.client_files(AgentSettings().state_dir, agent)
        keys = MeshKeys(secret, broker_key, ledger_keys)
    passages = load_anchor_passages()
    chosen = passages if limit is None else passages[:limit]
    anchor_set = f"corpus:{anchor_corpus_sha256()[:12]}:{len(chosen)}:mean-hidden:{tokens_max}"
    loaded = load_model(model)
    with Progress() as progress:
        task = progress.add_task(f"{loaded.name} on anchors", total=len(chosen))
        rows = passage_embeddings(
            loaded, chosen, tokens_max=tokens_max,
            on_passage=lambda done, _total: progress.update(task, completed=done),
        )  # fmt: skip
    with MeshClient(connect, keys=keys, timeout_ms=120_000) as client:
        stored = client.register_anchors(loaded.name, anchor_set, rows)
    typer.echo(f"registered {stored.model}: {stored.rows} x {stored.dim} on {stored.anchor_set}")
