"""`latentmas models`: list the registry as a table or as JSON."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from latentmas_mesh.cli.app import app
from latentmas_mesh.registry import (
    ModelSpec,
    PositionalKind,
    Registry,
    RegistryFileError,
    load_registry,
)
from latentmas_mesh.settings import MeshSettings


def _num(value: int | None) -> str:
    return "?" if value is None else str(value)


def _positional(spec: ModelSpec) -> str:
    """Short positional summary: `rope 5e+05 half`, `rope 1e+04/1e+06 half` (per-layer), `alibi`,
    `rope 5e+05 half llama3x8` (with its rope_scaling type and factor)."""
    pos = spec.positional
    if pos.kind in (PositionalKind.UNKNOWN, PositionalKind.ALIBI, PositionalKind.LEARNED):
        return pos.kind.value
    thetas = sorted(set(pos.layer_rope_thetas or ())) or [pos.rope_theta or 0.0]
    text = f"{pos.kind.value} {'/'.join(f'{t:.0e}' for t in thetas)}"
    if pos.rotary_convention is not None:
        text += f" {pos.rotary_convention.value}"
    if pos.rotary_fraction != 1.0:
        text += f" x{pos.rotary_fraction:g}"
    if pos.rope_scaling is not None:
        text += f" {pos.rope_scaling.rope_type}x{pos.rope_scaling.factor:g}"
    return text


def _source(spec: ModelSpec) -> str:
    """Where the numbers come from; `*` marks numbers not re-checked against a public copy."""
    src = spec.source
    if not src.repo:
        return src.kind.value
    return f"{src.repo} {src.file}" + ("" if src.verified else " *")


def _table(models: list[ModelSpec], registry: Registry) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(
        title=f"LatentMAS model registry ({len(models)} models)",
        caption="* published numbers not re-checked against a public copy; see --json source.note",
    )
    for column in ("name", "family", "layers", "heads", "kv heads", "head dim", "hidden"):
        table.add_column(column, justify="right" if column[0] in "lhk" else "left")
    for column in ("positional", "tier", "kv export", "source"):
        table.add_column(column)
    families = registry.families()
    for spec in models:
        table.add_row(
            spec.name,
            families.get(spec.family, spec.family),
            _num(spec.num_layers),
            _num(spec.num_attention_heads),
            _num(spec.num_kv_heads),
            _num(spec.head_dim),
            _num(spec.hidden_size),
            _positional(spec),
            str(spec.capability_tier),
            "yes" if spec.kv_export else "no",
            _source(spec),
        )
    Console(width=200).print(table)


@app.command("models")
def models_command(
    family: Annotated[
        str | None, typer.Option("--family", "-f", help="Only this family (slug or name).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable JSON.")] = False,
) -> None:
    """List the supported models (spec Appendix D) with their attention geometry."""
    try:
        registry = load_registry(MeshSettings().registry_path)
    except RegistryFileError as exc:  # an operator's file: say which and why, not a traceback
        typer.echo(f"cannot load the model registry: {exc}", err=True)
        raise typer.Exit(code=2) from exc
    models = registry.models(family)
    if family is not None and not models:
        known = ", ".join(sorted(registry.families()))
        typer.echo(f"no models in family {family!r}; families: {known}", err=True)
        raise typer.Exit(code=1)
    if as_json:
        payload = {
            "count": len(models),
            "tier_scale": [level.model_dump(mode="json") for level in registry.tier_scale],
            "models": [spec.model_dump(mode="json") for spec in models],
        }
        typer.echo(json.dumps(payload, indent=2))
        return
    _table(models, registry)
