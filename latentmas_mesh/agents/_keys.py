"""The state directory's CURVE key files: the broker's allow list of clients, and the secrets."""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from latentmas_mesh.agents._types import KeyPair
from latentmas_mesh.artifacts.files import fsync_directory, fsync_tree
from latentmas_mesh.transport import create_key_pair, public_key_of

SECRETS_MODE: Final = 0o700


@dataclass(frozen=True, slots=True)
class KeyFolders:
    """`<root>/clients/<name>.key` (point the broker's --curve-client-keys here: every key in it
    may connect) and `<root>/secrets/<name>.key_secret` (0600, in a 0700 folder)."""

    root: Path

    @property
    def clients(self) -> Path:
        return self.root / "clients"

    @property
    def secrets(self) -> Path:
        return self.root / "secrets"

    def public_file(self, name: str) -> Path:
        return self.clients / f"{name}.key"

    def secret_file(self, name: str) -> Path:
        return self.secrets / f"{name}.key_secret"

    def key_pair(self, name: str) -> KeyPair:
        """The pair `name` has on disk now (its identity read from the secret file)."""
        secret = self.secret_file(name)
        return KeyPair(public_key_of(secret), self.public_file(name), secret)

    def ensure(self) -> None:
        """Create the folders; the secrets folder is kept 0700 whatever the umask."""
        self.clients.mkdir(parents=True, exist_ok=True)
        self.secrets.mkdir(parents=True, exist_ok=True)
        self.secrets.chmod(SECRETS_MODE)


@dataclass(frozen=True, slots=True)
class StagedKeyPair:
    """A new key pair whose secret is in place, durable, and whose public key is not yet where
    the broker admits it: published only once the registry has recorded the agent."""

    name: str
    identity: str
    folders: KeyFolders
    staged_public: Path

    def publish(self) -> KeyPair:
        """Move the public key into the clients folder, durably; returns the pair."""
        os.replace(self.staged_public, self.folders.public_file(self.name))
        fsync_directory(self.folders.clients)
        shutil.rmtree(self.staged_public.parent, ignore_errors=True)
        return KeyPair(
            self.identity, self.folders.public_file(self.name), self.folders.secret_file(self.name)
        )

    def discard(self) -> None:
        """Undo a pair the registry did not record."""
        self.folders.secret_file(self.name).unlink(missing_ok=True)
        shutil.rmtree(self.staged_public.parent, ignore_errors=True)


def stage_key_pair(folders: KeyFolders, name: str) -> StagedKeyPair:
    """A new key pair for `name`: made in a private staging folder, fsync'd, its secret renamed
    into place (so a crash leaves the old file or the whole new one, never a torn one)."""
    folders.ensure()
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=folders.root))  # 0700
    try:
        public, secret = create_key_pair(staging, name)
        fsync_tree(staging)
        os.replace(secret, folders.secret_file(name))
        fsync_directory(folders.secrets)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return StagedKeyPair(name, public_key_of(public), folders, public)


def withdraw_public_key(folders: KeyFolders, name: str) -> None:
    """Remove `name`'s public key from the clients folder (a broker loading it from now on no
    longer admits the key); durable, and a no-op when it is gone already."""
    path = folders.public_file(name)
    if path.exists():
        path.unlink()
        fsync_directory(folders.clients)


__all__ = ["KeyFolders", "StagedKeyPair", "stage_key_pair", "withdraw_public_key"]
