"""A throwaway PostgreSQL cluster (initdb + pg_ctl) on a free loopback port, for tests and bench."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

PG_USER = "postgres"
START_ATTEMPTS_MAX = 3


class PostgresUnavailable(RuntimeError):
    """The PostgreSQL server binaries are missing, or the cluster would not start."""


def pg_bin_dir() -> Path:
    """The newest /usr/lib/postgresql/*/bin holding initdb and pg_ctl, else the PATH's."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0,
    )
    for directory in reversed(candidates):
        if (Path(directory) / "initdb").exists() and (Path(directory) / "pg_ctl").exists():
            return Path(directory)
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl"):
        return Path(initdb).parent
    msg = (
        "PostgreSQL server binaries (initdb, pg_ctl) not found in /usr/lib/postgresql/*/bin or on"
        " PATH: run `make postgres` (installs the Debian package `postgresql`)"
    )
    raise PostgresUnavailable(msg)


def _as_user() -> list[str]:
    """initdb refuses to run as root: run the cluster as the `postgres` system user instead."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam(PG_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", PG_USER], check=True)
    return ["runuser", "-u", PG_USER, "--"]


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class TemporaryPostgres:
    """`with TemporaryPostgres() as dsn:` a fresh cluster (fsync on: durability is measured)."""

    def __init__(self) -> None:
        self.bin_dir = pg_bin_dir()
        self.prefix = _as_user()
        self.root = Path(tempfile.mkdtemp(prefix="latentmas-pg-"))
        self.data = self.root / "data"
        self.dsn = ""

    def start(self) -> str:
        if self.prefix:
            shutil.chown(self.root, user=PG_USER)
        subprocess.run(
            [
                *self.prefix,
                str(self.bin_dir / "initdb"),
                "-D",
                str(self.data),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
        )
        for _ in range(START_ATTEMPTS_MAX):
            port = _free_port()
            options = (
                f"-p {port} -k {self.root} -c listen_addresses=127.0.0.1 -c shared_buffers=64MB"
                " -c max_connections=40 -c dynamic_shared_memory_type=mmap"
            )
            started = subprocess.run(
                [
                    *self.prefix,
                    str(self.bin_dir / "pg_ctl"),
                    "-D",
                    str(self.data),
                    "-o",
                    options,
                    "-l",
                    str(self.root / "server.log"),
                    "-w",
                    "-t",
                    "60",
                    "start",
                ],
                capture_output=True,
                text=True,
                check=False,
            )
            if started.returncode == 0:
                self.dsn = f"postgresql://postgres@127.0.0.1:{port}/postgres"
                return self.dsn
        log_file = self.root / "server.log"
        log = log_file.read_text() if log_file.exists() else ""
        self.stop()
        raise PostgresUnavailable(f"pg_ctl start failed: {started.stderr}\n{log[-2000:]}")

    def stop(self) -> None:
        if self.data.exists():
            subprocess.run(
                [
                    *self.prefix,
                    str(self.bin_dir / "pg_ctl"),
                    "-D",
                    str(self.data),
                    "-m",
                    "immediate",
                    "stop",
                ],
                capture_output=True,
                check=False,
            )
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> str:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
