"""The `latentmas` command line: one module per group of subcommands, all on one Typer app."""

from __future__ import annotations

from latentmas_mesh.cli.app import app


def main() -> None:
    """Console-script entry point."""
    _register_subcommands()
    app()


def _register_subcommands() -> None:
    """Import every command module for its side effect: registering its commands on `app`."""
    import importlib
    import pkgutil

    import latentmas_mesh.cli as package

    for module in pkgutil.iter_modules(package.__path__):
        if module.name != "app":
            importlib.import_module(f"latentmas_mesh.cli.{module.name}")


__all__ = ["app", "main"]
