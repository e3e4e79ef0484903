"""A local mesh on loopback: a broker and N processes per worker kind, each its own OS process."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO

from latentmas_mesh.errors import ServiceUnavailable
from latentmas_mesh.shm import default_directory
from latentmas_mesh.transport import Transport, TransportSettings

CLI = (sys.executable, "-c", "from latentmas_mesh.cli import main; main()")
"""The `latentmas` command, run by this interpreter (tests of the CLI itself use it)."""
PROCESS_MODULES = {"broker": "broker", "worker": "workers", "gateway": "latentmas_mesh.gateway"}
"""The mesh's processes start as `python -m broker|workers` directly: one interpreter start
each (the CLI would exec the same module after importing itself), which matters when many
workers start at once on a loaded machine."""
"""The `latentmas` command of this interpreter (works in a venv without the script on PATH)."""
START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 15.0
_WORKERS_GAUGE = re.compile(r'^latentmas_broker_workers\{service="([^"]+)",state="\w+"\} (\S+)$')


@dataclass
class MeshProcess:
    """One OS process of the mesh, with where its log goes."""

    role: str  # "broker" or the worker kind
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        """The process id."""
        return self.popen.pid

    def alive(self) -> bool:
        """Whether the process is still running."""
        return self.popen.poll() is None


@dataclass
class LocalMesh:
    """Broker plus worker processes on 127.0.0.1; a context manager that always cleans up.

    `LocalMesh({"echo": 2}).start()` starts a broker on a free port, two echo worker processes,
    and returns once the broker reports all of them registered. Heartbeat settings go to every
    process through `LATENTMAS_*` variables so that all of them agree. `stop()` sends SIGTERM
    (workers first, so the broker can still answer their last requests) and SIGKILL after
    `STOP_TIMEOUT_S`. `env` goes to every process; `worker_env[kind]` only to workers of that
    kind (e.g. each kind its own CURVE key). With `shared_memory` (the default) every process
    and `transport()` use this uid's segment directory, as processes on one host should: large
    arrays then cross no socket.
    """

    workers: Mapping[str, int] = field(default_factory=lambda: {"echo": 1})
    host: str = "127.0.0.1"
    heartbeat_ms: int = 500
    liveness: int = 3
    env: Mapping[str, str] = field(default_factory=dict)
    worker_env: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    broker_args: Sequence[str] = ()
    log_dir: Path | None = None
    shared_memory: bool = True
    broker_url: str = ""
    metrics_url: str = ""
    broker: MeshProcess | None = None
    worker_processes: list[MeshProcess] = field(default_factory=list)
    gateway: MeshProcess | None = None
    gateway_url: str = ""
    _gateways: list[MeshProcess] = field(default_factory=list)
    _broker_port: int = 0
    _logs: list[IO[bytes]] = field(default_factory=list)

    # --------------------------------------------------------------------------- lifecycle

    def __enter__(self) -> LocalMesh:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self, timeout_s: float = START_TIMEOUT_S) -> LocalMesh:
        """Start the broker, then every worker; return when all workers are registered."""
        if self.broker is not None:
            return self  # already started (e.g. `with LocalMesh(...).start():`)
        if self.log_dir is None:
            self.log_dir = Path(tempfile.mkdtemp(prefix="latentmas-mesh-"))
        try:
            self.start_broker(timeout_s)
            for kind, count in self.workers.items():
                for _ in range(count):
                    self.start_worker(kind)
            self.wait_for_workers(sum(self.workers.values()), timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def start_broker(self, timeout_s: float = START_TIMEOUT_S) -> MeshProcess:
        """Start the broker (again, on the same port after a restart) and read its endpoints."""
        bind = f"tcp://{self.host}:{self._broker_port or '*'}"
        args = ["broker", "--bind", bind, "--metrics-port", "0", *self.broker_args]
        process = self._spawn("broker", args)
        self.broker = process
        line = _read_line(process, timeout_s)
        announced = json.loads(line)
        self.broker_url = announced["endpoints"][0]
        self._broker_port = int(self.broker_url.rsplit(":", 1)[1])
        self.metrics_url = f"http://{self.host}:{announced['metrics_port']}/metrics"
        return process

    def start_worker(self, kind: str) -> MeshProcess:
        """Start one more worker process of `kind` connected to the broker."""
        args = ["worker", kind, "--connect", self.broker_url]
        process = self._spawn(kind, args, self.worker_env.get(kind, {}))
        self.worker_processes.append(process)
        return process

    def start_gateway(
        self,
        env: Mapping[str, str] | None = None,
        timeout_s: float = START_TIMEOUT_S,
        *,
        http_port: int = 0,
    ) -> MeshProcess:
        """Start the HTTP gateway (`python -m latentmas_mesh.gateway`) on loopback (port 0: a
        free one), as a client of the broker; `env` adds its settings (state dir, CURVE)."""
        self.gateway, self.gateway_url = self.spawn_gateway(env, timeout_s, http_port=http_port)
        return self.gateway

    def spawn_gateway(
        self,
        env: Mapping[str, str] | None = None,
        timeout_s: float = START_TIMEOUT_S,
        *,
        http_port: int = 0,
    ) -> tuple[MeshProcess, str]:
        """One more gateway process (other settings, same broker) and its URL; `stop()`
        stops it with the rest."""
        args = ["gateway", "--connect", self.broker_url, "--http-host", self.host]
        process = self._spawn("gateway", [*args, "--http-port", str(http_port)], env)
        self._gateways.append(process)
        return process, json.loads(_read_line(process, timeout_s))["url"]

    def kill(self, process: MeshProcess, signum: int = signal.SIGKILL) -> None:
        """Send a signal to one process and wait for it to exit."""
        if process.alive():
            process.popen.send_signal(signum)
        process.popen.wait(STOP_TIMEOUT_S)

    def stop(self) -> None:
        """SIGTERM the gateway, the workers, then the broker; SIGKILL whatever outlives the
        timeout."""
        groups = (self._gateways, self.worker_processes, [self.broker] if self.broker else [])
        for group in groups:
            for process in group:
                if process.alive():
                    process.popen.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + STOP_TIMEOUT_S
            for process in group:
                try:
                    process.popen.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    process.popen.kill()
                    process.popen.wait()
        for log in self._logs:
            log.close()
        self._logs.clear()

    # ----------------------------------------------------------------------------- queries

    def registered_workers(self) -> dict[str, int]:
        """Workers per service, as the broker's metrics report them (refreshed twice a second)."""
        with urllib.request.urlopen(self.metrics_url, timeout=5) as response:  # noqa: S310
            text = response.read().decode()
        counts: dict[str, int] = {}
        for line in text.splitlines():
            match = _WORKERS_GAUGE.match(line)
            if match:
                counts[match[1]] = counts.get(match[1], 0) + int(float(match[2]))
        return counts

    def wait_for_workers(self, count: int, timeout_s: float = START_TIMEOUT_S) -> None:
        """Block until the broker has at least `count` workers registered in all."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self._check_alive()
            if sum(self.registered_workers().values()) >= count:
                return
            time.sleep(0.1)
        raise ServiceUnavailable(f"fewer than {count} workers registered within {timeout_s} s")

    def transport(self, **overrides: object) -> Transport:
        """A client transport connected to this mesh's broker."""
        shared = {"shared_memory_dir": default_directory()} if self.shared_memory else {}
        settings = TransportSettings.model_validate(
            {"broker_url": self.broker_url, **shared, **overrides}
        )
        return Transport(settings)

    def describe(self) -> str:
        """Where everything listens, one line per process (what `latentmas up` prints)."""
        lines = [f"broker   {self.broker_url}   metrics {self.metrics_url}"]
        if self.gateway_url:
            lines.append(f"gateway  {self.gateway_url}   docs {self.gateway_url}/docs")
        lines.extend(f"worker   {p.role:<10} pid {p.pid}" for p in self.worker_processes)
        if self.shared_memory:
            lines.append(
                f"shared   LATENTMAS_SHARED_MEMORY_DIR={default_directory()} "
                "(set it for clients on this host: arrays then cross no socket)"
            )
        lines.append(f"logs     {self.log_dir}")
        return "\n".join(lines)

    # ---------------------------------------------------------------------------- internals

    def _spawn(
        self, role: str, args: list[str], own_env: Mapping[str, str] | None = None
    ) -> MeshProcess:
        assert self.log_dir is not None  # set by start()
        log_path = self.log_dir / f"{role}-{len(self.worker_processes)}-{time.monotonic_ns()}.log"
        log = log_path.open("wb")
        self._logs.append(log)
        env = {
            **os.environ,
            "LATENTMAS_HEARTBEAT_MS": str(self.heartbeat_ms),
            "LATENTMAS_LIVENESS": str(self.liveness),
            **(
                {"LATENTMAS_SHARED_MEMORY_DIR": str(default_directory())}
                if self.shared_memory
                else {}
            ),
            **self.env,
            **(own_env or {}),
        }
        popen = subprocess.Popen(
            [sys.executable, "-m", PROCESS_MODULES[args[0]], *args[1:]],
            stdout=subprocess.PIPE if role in ("broker", "gateway") else subprocess.DEVNULL,
            stderr=log,
            env=env,
            start_new_session=True,  # Ctrl-C reaches `up`, which stops children in order
        )
        return MeshProcess(role, popen, log_path)

    def _check_alive(self) -> None:
        for process in [self.broker, *self.worker_processes, self.gateway]:
            if process is not None and not process.alive():
                tail = process.log_path.read_text(errors="replace")[-2000:]
                raise ServiceUnavailable(f"{process.role} exited early:\n{tail}")


def _read_line(process: MeshProcess, timeout_s: float) -> str:
    """The first stdout line of a process (the broker's or gateway's JSON announcement), with a
    timeout."""
    stdout = process.popen.stdout
    assert stdout is not None  # the broker and the gateway are started with a stdout pipe
    os.set_blocking(stdout.fileno(), False)
    deadline = time.monotonic() + timeout_s
    buffer = b""
    while time.monotonic() < deadline:
        chunk = stdout.read()
        if chunk:
            buffer += chunk
            if b"\n" in buffer:
                return buffer.split(b"\n", 1)[0].decode()
        elif not process.alive():
            break
        time.sleep(0.02)
    tail = process.log_path.read_text(errors="replace")[-2000:]
    raise ServiceUnavailable(f"the {process.role} did not announce its address:\n{tail}")


__all__ = ["CLI", "PROCESS_MODULES", "LocalMesh", "MeshProcess"]
