"""The root Typer app; each subcommand module registers itself on it."""

from __future__ import annotations

import typer

from latentmas_mesh import PROTOCOL_VERSION, __version__

app = typer.Typer(
    name="latentmas",
    help="latentmas-mesh: exchange transformer working memory between AI agents.",
    no_args_is_help=True,
    add_completion=False,
)


@app.command()
def version() -> None:
    """Print the package and protocol versions."""
    typer.echo(f"latentmas-mesh {__version__} ({PROTOCOL_VERSION})")


@app.callback()
def root() -> None:
    """latentmas-mesh: exchange transformer working memory between AI agents."""
