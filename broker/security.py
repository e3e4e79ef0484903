"""CURVE encryption and ZAP authentication for the broker's socket, by allowed public keys."""

from __future__ import annotations

from pathlib import Path

import zmq
import zmq.auth
from zmq.auth.thread import ThreadAuthenticator

from latentmas_mesh.errors import Unauthorized


def load_public_keys(directory: Path | None) -> frozenset[str]:
    """The Z85 public keys of every `*.key` file in `directory` (none when it is None).

    These are what ZAP reports as a peer's User-Id, so the same strings serve for the allow list
    and for the identity the broker forwards to workers.
    """
    if directory is None:
        return frozenset()
    if not directory.is_dir():
        raise Unauthorized(f"CURVE key directory {directory} does not exist")
    keys = set()
    for path in sorted(directory.glob("*.key")):
        public, _ = zmq.auth.load_certificate(path)
        keys.add(public.decode("ascii"))
    return frozenset(keys)


def load_worker_keys(directory: Path | None) -> dict[str, frozenset[bytes]]:
    """Each worker key's services, from `DIR/<service>/<name>.key` (none when `directory` is None).

    A key may register only for the services whose subdirectory holds it, so a key made for an
    align worker cannot serve `latentmas.ledger`. A `*.key` directly under `directory` belongs
    to no service: it is refused here, at start-up, rather than silently admitted (fail closed).
    """
    if directory is None:
        return {}
    if not directory.is_dir():
        raise Unauthorized(f"CURVE worker key directory {directory} does not exist")
    loose = sorted(path.name for path in directory.glob("*.key"))
    if loose:
        raise Unauthorized(
            f"worker keys must sit in a subdirectory named for their service "
            f"({directory}/<service>/<name>.key); found {', '.join(loose)} directly under "
            f"{directory}"
        )
    services: dict[str, set[bytes]] = {}
    for service_dir in sorted(path for path in directory.iterdir() if path.is_dir()):
        service = service_dir.name.encode("ascii", errors="replace")
        for key in load_public_keys(service_dir):
            services.setdefault(key, set()).add(service)
    return {key: frozenset(names) for key, names in services.items()}


class AllowedKeys:
    """ZAP credentials provider: a peer is admitted when its public key is in the set."""

    __slots__ = ("keys",)

    def __init__(self, keys: frozenset[str]) -> None:
        self.keys = keys

    def callback(self, domain: str, key: bytes) -> bool:
        """Called by zmq.auth with the peer's Z85 public key."""
        return key.decode("ascii", errors="replace") in self.keys


class ClientKeys:
    """The allow list, kept in step with the client key folder while the broker runs.

    Agents come and go (`latentmas agents add` / `revoke` write and remove `*.key` files), so the
    folder is looked at again when its modification time changes (one stat per `refresh`). The
    new set governs both new handshakes (ZAP) and every later message: a key withdrawn from the
    folder is refused from its next request on, though its connection was admitted before.
    Worker keys are fixed for the broker's life.
    """

    __slots__ = ("_mtime_ns", "allowed", "directory", "worker_keys")

    def __init__(self, directory: Path | None, worker_keys: frozenset[str]) -> None:
        self.directory = directory
        self.worker_keys = worker_keys
        self._mtime_ns = self._stamp()
        self.allowed = AllowedKeys(worker_keys | load_public_keys(directory))

    def _stamp(self) -> int | None:
        if self.directory is None:
            return None
        try:
            return self.directory.stat().st_mtime_ns
        except OSError:
            return None

    def refresh(self) -> bool:
        """Reload the folder if it changed since the last look; whether the set changed."""
        stamp = self._stamp()
        if stamp == self._mtime_ns or stamp is None:
            return False
        self._mtime_ns = stamp
        try:
            keys = self.worker_keys | load_public_keys(self.directory)
        except (OSError, ValueError, Unauthorized):  # a file mid-write: try again next time
            self._mtime_ns = None
            return False
        changed = keys != self.allowed.keys
        self.allowed.keys = keys  # one reference swap: the ZAP thread reads either set whole
        return changed

    def admits(self, identity: str) -> bool:
        return identity in self.allowed.keys


def serve_curve(
    socket: zmq.Socket[bytes],
    context: zmq.Context[zmq.Socket[bytes]],
    secret_key_file: Path,
    allowed: AllowedKeys,
) -> ThreadAuthenticator:
    """Make `socket` a CURVE server admitting only `allowed`'s keys (read at each handshake,
    so they may change); call before bind.

    Returns the running authenticator thread; stop it when the socket is closed.
    """
    public, secret = zmq.auth.load_certificate(secret_key_file)
    if secret is None:
        raise Unauthorized(f"{secret_key_file} holds no secret key (use the .key_secret file)")
    authenticator = ThreadAuthenticator(context)
    authenticator.start()
    authenticator.configure_curve_callback(domain="*", credentials_provider=allowed)
    socket.curve_secretkey = secret
    socket.curve_publickey = public
    socket.curve_server = True
    return authenticator


def user_id(frame: zmq.Frame) -> str | None:
    """The ZAP User-Id of the peer that sent `frame` (its Z85 key under CURVE), if any."""
    try:
        value = frame.get("User-Id")
    except zmq.ZMQError:
        return None
    return value if isinstance(value, str) and value else None


__all__ = [
    "AllowedKeys",
    "ClientKeys",
    "load_public_keys",
    "load_worker_keys",
    "serve_curve",
    "user_id",
]
