"""`latentmas broker`, `worker`, `up` and `keys`: run the mesh's processes from the command line."""

# The CLI starts the broker and workers as `python -m broker` / `python -m workers`: the library
# never imports them (tests/test_layout.py checks the import graph).

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer

from latentmas_mesh.cli.app import app
from latentmas_mesh.testing.mesh import LocalMesh


def _on_stop_signals(stop: Callable[[], object]) -> None:
    """Call `stop()` on SIGTERM and SIGINT (Ctrl-C); a second signal is handled the same way."""

    def handler(signum: int, frame: FrameType | None) -> None:
        stop()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def _flags(**options: object) -> list[str]:
    """The flags the user set, as command-line arguments (unset ones are left to the process's
    LATENTMAS_* settings); a list value repeats its flag."""
    argv: list[str] = []
    for key, value in options.items():
        values = value if isinstance(value, list) else [value]
        for item in values:
            if item is not None:
                argv += [f"--{key.replace('_', '-')}", str(item)]
    return argv


def _exec_module(module: str, argv: list[str]) -> None:
    """Become `python -m module argv...`: the library never imports the broker or the workers,
    and signals reach the process itself."""
    sys.stdout.flush()
    os.execv(sys.executable, [sys.executable, "-m", module, *argv])  # noqa: S606 (fixed argv)


@app.command()
def broker(
    *,
    bind: Annotated[
        list[str] | None, typer.Option("--bind", help="Endpoint to bind; repeat for more.")
    ] = None,
    metrics_port: Annotated[
        int | None, typer.Option(help="Prometheus port (0 picks a free one).")
    ] = None,
    heartbeat_ms: Annotated[int | None, typer.Option(help="Heartbeat interval.")] = None,
    curve_secret_key: Annotated[
        Path | None, typer.Option(help="The broker's .key_secret file: turns CURVE on.")
    ] = None,
    curve_client_keys: Annotated[
        Path | None, typer.Option(help="Directory of allowed clients' .key files.")
    ] = None,
    curve_worker_keys: Annotated[
        Path | None,
        typer.Option(
            help="Workers' keys as DIR/<service>/<name>.key: each serves its folders' services."
        ),
    ] = None,
) -> None:
    """Run an MDP/0.2 broker in the foreground until SIGTERM or Ctrl-C (`python -m broker`).

    Prints one JSON line on stdout once bound: {"endpoints": [...], "metrics_port": N}.
    """
    _exec_module("broker", _flags(
        bind=bind, metrics_port=metrics_port, heartbeat_ms=heartbeat_ms,
        curve_secret_key=curve_secret_key, curve_client_keys=curve_client_keys,
        curve_worker_keys=curve_worker_keys,
    ))  # fmt: skip


@app.command()
def worker(
    kind: Annotated[str, typer.Argument(help="Worker kind, e.g. echo.")],
    *,
    connect: Annotated[str | None, typer.Option(help="The broker's endpoint.")] = None,
    concurrency: Annotated[int, typer.Option(min=1, help="Worker processes to run.")] = 1,
    dialect: Annotated[
        str | None, typer.Option(help="rfc18, or majortomo to serve a majortomo broker.")
    ] = None,
    curve_secret_key: Annotated[
        Path | None, typer.Option(help="This worker's .key_secret.")
    ] = None,
    curve_server_key: Annotated[Path | None, typer.Option(help="The broker's .key file.")] = None,
) -> None:
    """Run worker processes of one kind until SIGTERM or Ctrl-C (crashed ones are restarted;
    `python -m workers`)."""
    _exec_module("workers", [kind, *_flags(
        connect=connect, concurrency=concurrency, dialect=dialect,
        curve_secret_key=curve_secret_key, curve_server_key=curve_server_key,
    )])  # fmt: skip


def _parse_workers(specs: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for spec in specs:
        kind, _, count = spec.partition("=")
        if not kind or (count and not count.isdigit()):
            raise typer.BadParameter(f"{spec!r}: use KIND or KIND=COUNT", param_hint="--workers")
        counts[kind] = counts.get(kind, 0) + int(count or 1)
    return counts


@app.command()
def up(
    workers: Annotated[
        list[str] | None,
        typer.Option("--workers", "-w", help="KIND=COUNT; repeat per kind (default echo=1)."),
    ] = None,
    heartbeat_ms: Annotated[int, typer.Option(help="Heartbeat interval for every process.")] = 1000,
    smoke: Annotated[
        int, typer.Option(help="Send N echo requests through the mesh, report, and stop.")
    ] = 0,
    http_port: Annotated[
        int | None,
        typer.Option(
            help="Also serve the HTTP gateway on this loopback port (0: a free one): a CURVE "
            "mesh with ledger, align and wmatrix workers for the agents of `latentmas agents` "
            "(LATENTMAS_STATE_DIR)."
        ),
    ] = None,
) -> None:
    """Start a broker and workers on loopback; print where they listen; Ctrl-C stops all."""
    stop = threading.Event()
    _on_stop_signals(stop.set)
    if http_port is not None:
        _up_with_gateway(http_port, workers, heartbeat_ms, stop)
        return
    kinds = _parse_workers(workers or ["echo=1"])
    if smoke and "echo" not in kinds:
        kinds["echo"] = 1
    mesh = LocalMesh(kinds, heartbeat_ms=heartbeat_ms)
    with mesh:
        typer.echo(mesh.describe())
        if smoke:
            _smoke(mesh, smoke)
            return
        _watch(mesh, stop)
    typer.echo("stopped")


def _up_with_gateway(
    http_port: int, workers: list[str] | None, heartbeat_ms: int, stop: threading.Event
) -> None:
    """`up --http-port`: every process an agent's HTTP or SDK call needs (AgentMesh)."""
    from latentmas_mesh.agents import AgentSettings
    from latentmas_mesh.testing.agent_mesh import WORKERS_DEFAULT, AgentMesh

    kinds = _parse_workers(workers) if workers else dict(WORKERS_DEFAULT)
    ledger_workers = kinds.pop("ledger", 1)
    state_dir = AgentSettings().state_dir
    agents = AgentMesh(
        state_dir, workers=kinds, ledger_workers=ledger_workers, heartbeat_ms=heartbeat_ms,
        http_port=http_port,
    )  # fmt: skip
    mesh = agents.start()
    try:
        typer.echo(mesh.describe())
        typer.echo(f"agents   {state_dir} (latentmas agents add NAME prints a token)")
        _watch(mesh, stop)
    finally:
        agents.stop()
    typer.echo("stopped")


def _watch(mesh: LocalMesh, stop: threading.Event) -> None:
    """Wait for Ctrl-C or SIGTERM; stop too when a process of the mesh exits."""
    typer.echo("Ctrl-C stops everything.")
    while not stop.wait(0.5):
        for process in [mesh.broker, *mesh.worker_processes, mesh.gateway]:
            if process is not None and not process.alive():
                typer.echo(f"{process.role} (pid {process.pid}) exited; stopping", err=True)
                stop.set()


def _smoke(mesh: LocalMesh, count: int) -> None:
    """Echo `count` requests of 64 bytes through the running mesh and print their timing."""
    import time

    latencies_us = []
    with mesh.transport() as transport:
        for index in range(count):
            body = [b"%08d" % index + b"." * 56]
            started = time.perf_counter()
            reply = transport.request("latentmas.echo", body)
            latencies_us.append((time.perf_counter() - started) * 1e6)
            if [frame.bytes for frame in reply] != body:
                typer.echo(f"smoke: echo {index} came back changed", err=True)
                raise typer.Exit(1)
    latencies_us.sort()
    typer.echo(
        f"smoke: {count} echo requests through broker and worker processes OK; "
        f"p50 {latencies_us[count // 2]:.0f} us, p99 {latencies_us[int(count * 0.99)]:.0f} us"
    )


@app.command()
def gateway(
    *,
    connect: Annotated[str | None, typer.Option(help="The broker's endpoint.")] = None,
    http_host: Annotated[
        str | None, typer.Option(help="Address to bind (default loopback).")
    ] = None,
    http_port: Annotated[int | None, typer.Option(help="Port to serve (0: a free one).")] = None,
) -> None:
    """Serve the HTTP gateway (Appendix C's endpoints; docs at /docs) as a client of a broker,
    until SIGTERM or Ctrl-C (`python -m latentmas_mesh.gateway`).

    Agents are those of `latentmas agents` (LATENTMAS_STATE_DIR); the gateway connects with its
    own key (`latentmas agents gateway`), which the workers must list in LATENTMAS_GATEWAY_KEYS,
    and needs LATENTMAS_CURVE_SERVER_KEY_FILE and LATENTMAS_LEDGER_KEYS_DIR. Prints one JSON
    line once listening: {"url": ..., "agent": ...}.
    """
    _exec_module(
        "latentmas_mesh.gateway",
        _flags(connect=connect, http_host=http_host, http_port=http_port),
    )


@app.command()
def keys(
    name: Annotated[str, typer.Argument(help="Key pair name, e.g. broker, client-alice.")],
    directory: Annotated[Path, typer.Option("--dir", help="Where to write the files.")] = Path(
        "keys"
    ),
    service: Annotated[
        list[str] | None,
        typer.Option(
            "--service",
            help="List the public key in DIR/workers/SERVICE/: a worker key may register for "
            "that service only. Repeat for a worker serving several.",
        ),
    ] = None,
) -> None:
    """Generate a CURVE key pair: NAME.key (public, share it) and NAME.key_secret (keep it).

    For a worker, `--service latentmas.ledger` also copies NAME.key to
    DIR/workers/latentmas.ledger/. Point the broker's LATENTMAS_CURVE_WORKER_KEYS_DIR at
    DIR/workers (each key registers only for the services whose folder holds it), and ledger
    clients' LATENTMAS_LEDGER_KEYS_DIR at DIR/workers/latentmas.ledger (they trust ledger
    answers sealed by those keys only).
    """
    from latentmas_mesh.transport import (
        create_key_pair,
        list_worker_key,
        public_key_of,
        worker_key_folder,
    )

    services = service or []
    for item in services:  # all names checked before any file is written
        try:
            worker_key_folder(directory / "workers", item)
        except ValueError as error:
            raise typer.BadParameter(str(error), param_hint="--service") from error
    public_file, secret_file = create_key_pair(directory, name)
    typer.echo(f"public  {public_file}  ({public_key_of(public_file)})")
    typer.echo(f"secret  {secret_file}")
    for item in services:
        listed = list_worker_key(public_file, directory / "workers", item)
        typer.echo(f"listed  {listed}  (may register for {item})")
