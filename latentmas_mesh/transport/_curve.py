"""CURVE set-up shared by the client transport and the worker base, and the key files' layout."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import zmq
import zmq.auth

from latentmas_mesh.errors import Unauthorized


def use_curve(
    socket: zmq.Socket[Any], secret_key_file: Path | None, server_key_file: Path | None
) -> bool:
    """Make `socket` a CURVE client of the server whose public key is in `server_key_file`.

    Both files or neither: one without the other is a configuration error, raised before connect.
    Returns whether CURVE is on.
    """
    if secret_key_file is None and server_key_file is None:
        return False
    if secret_key_file is None or server_key_file is None:
        raise Unauthorized("CURVE needs both this peer's .key_secret file and the server's .key")
    public, secret = zmq.auth.load_certificate(secret_key_file)
    if secret is None:
        raise Unauthorized(f"{secret_key_file} holds no secret key (use the .key_secret file)")
    server_public, _ = zmq.auth.load_certificate(server_key_file)
    socket.curve_secretkey = secret
    socket.curve_publickey = public
    socket.curve_serverkey = server_public
    return True


def create_key_pair(directory: Path, name: str) -> tuple[Path, Path]:
    """Write `name.key` (public, to share) and `name.key_secret` (keep private) in `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    public_file, secret_file = zmq.auth.create_certificates(directory, name)
    Path(secret_file).chmod(0o600)
    return Path(public_file), Path(secret_file)


def worker_key_folder(worker_keys_dir: Path, service: str) -> Path:
    """`worker_keys_dir/<service>`: where the broker looks for the keys that may serve `service`.

    `service` must be one folder name (not empty, no path separator, not `.` or `..`):
    ValueError otherwise.
    """
    if not service or "/" in service or "\\" in service or service in {".", ".."}:
        raise ValueError(f"{service!r} is not a service name (one folder, e.g. latentmas.ledger)")
    return worker_keys_dir / service


def list_worker_key(public_file: Path, worker_keys_dir: Path, service: str) -> Path:
    """Copy a worker's public `.key` into `worker_key_folder(worker_keys_dir, service)`, the
    broker's layout: a key registers only for the services whose folder holds it. Returns the
    copy. ValueError for a bad service name or a file that is not a public `.key`."""
    if public_file.suffix != ".key":
        raise ValueError(f"{public_file} is not a public .key file")
    folder = worker_key_folder(worker_keys_dir, service)
    folder.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copyfile(public_file, folder / public_file.name))


def public_key_of(key_file: Path) -> str:
    """The Z85 public key in a `.key` or `.key_secret` file (what ZAP reports as User-Id)."""
    public, _ = zmq.auth.load_certificate(key_file)
    return public.decode("ascii")
