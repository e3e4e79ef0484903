"""`latentmas demo`: the main job, a real two-model exchange through a local mesh (extra `hf`)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer

from latentmas_mesh.cli.app import app

if TYPE_CHECKING:
    from latentmas_mesh.cli.exchange_demo import DemoResult


@app.command()
def demo(
    *,
    sender: Annotated[str, typer.Option(help="Model A, which reads the passage.")] = (
        "smollm2-135m-instruct"
    ),
    receiver: Annotated[str, typer.Option(help="Model B, which continues from A's cache.")] = (
        "gemma-3-270m"
    ),
    passage: Annotated[int, typer.Option(help="Index of the held-out anchor passage.")] = 0,
    new_tokens: Annotated[int, typer.Option(min=1, max=256)] = 24,
    fit_passages: Annotated[
        int, typer.Option(min=8, help="Anchor passages to fit the pair's maps on, if none stored.")
    ] = 48,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    market: Annotated[
        bool, typer.Option(help="Then the market story: a reasoning chain published and bought.")
    ] = True,
) -> None:
    """A reads a held-out passage; its KV cache goes through the broker to an align worker and
    back aligned; B continues from it. Prints B's continuations, quality figures and timings."""
    from rich.console import Console

    from latentmas_mesh.cli.exchange_demo import run_demo
    from latentmas_mesh.log import configure_logging

    configure_logging("console", "warning")
    console = Console(stderr=True)
    with console.status("starting") as status:
        result = run_demo(
            sender_name=sender, receiver_name=receiver, passage_index=passage,
            new_tokens=new_tokens, fit_passages=fit_passages, step=status.update,
        )  # fmt: skip
    figures = {
        "sender": result.sender,
        "receiver": result.receiver,
        "passage_id": result.passage_id,
        "maps_version": result.maps_version,
        "maps_fitted_now": result.maps_fitted_now,
        "maps_quality_held_out_passages": result.quality.model_dump(),
        "maps_key_value_r2_diagnostic": (
            None if result.regression is None else round(result.regression.information_retention, 4)
        ),
        "nll_none": round(result.nll_none, 4),
        "nll_aligned": round(result.nll_aligned, 4),
        "nll_own": round(result.nll_own, 4),
        "retention_this_passage": round(result.retention, 4),
        "timings_s": {name: round(value, 4) for name, value in result.timings_s.items()},
        "align_vs_own_prefill_speedup_first": round(
            result.timings_s["receiver_own_prefill"] / result.timings_s["align_through_mesh_first"],
            3,
        ),
        "align_vs_own_prefill_speedup_warm": round(
            result.timings_s["receiver_own_prefill"] / result.timings_s["align_through_mesh_warm"],
            3,
        ),
    }
    if not as_json:
        _show(result, figures)
    if market and result.models is not None:
        from latentmas_mesh.cli.market_demo import run_market_story

        if not as_json:
            Console().rule("the markets: a reasoning chain bought across models")
        say = (lambda _: None) if as_json else Console().print
        figures["market"] = run_market_story(*result.models, say)
    typer.echo(json.dumps(figures))


def _show(result: DemoResult, figures: dict[str, object]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.rule(f"{result.sender} → mesh → {result.receiver}  ({result.passage_title})")
    console.print(f"[bold]context read by {result.sender}[/] …{result.context_text[-300:]}")
    console.print(f"[bold]prompt {result.receiver} reads itself:[/] {result.prompt_text!r}")
    continuations = Table("cache in B", "B's greedy continuation")
    continuations.add_row("aligned from A", result.continuations.aligned)
    continuations.add_row("B's own prefill", result.continuations.own)
    continuations.add_row("none (prompt only)", result.continuations.none)
    console.print(continuations)
    quality = Table("the maps' quality, measured on held-out passages", "value")
    labels = {
        "information_retention": "retention: NLL gain vs own prefill (ratio of means)",
        "cosine_similarity": "cosine of B's attention outputs, aligned vs own cache",
        "euclidean_distance": "relative distance of those attention outputs",
        "confidence": "retention, lower end of the 95% interval over passages",
    }
    for name, value in result.quality.model_dump().items():
        quality.add_row(labels.get(name, name), f"{value:.4f}")
    if result.regression is not None:
        quality.add_row(
            "diagnostic: R² of predicted pre-RoPE keys/values (not retention)",
            f"{result.regression.information_retention:.4f}",
        )
    quality.add_row("NLL of the true continuation: none / aligned / own", (
        f"{result.nll_none:.3f} / {result.nll_aligned:.3f} / {result.nll_own:.3f}"
    ))  # fmt: skip
    quality.add_row("retention on this passage", f"{result.retention:.3f}")
    console.print(quality)
    timings = Table("step", "seconds")
    for name, value in result.timings_s.items():
        timings.add_row(name, f"{value:.3f}")
    timings.add_row(
        "own prefill / first align through mesh", str(figures["align_vs_own_prefill_speedup_first"])
    )
    timings.add_row("own prefill / warm align through mesh",
                    str(figures["align_vs_own_prefill_speedup_warm"]))  # fmt: skip
    console.print(timings)
