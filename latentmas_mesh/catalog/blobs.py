"""Content-addressed payloads on disk: one file per SHA-256, written durably, verified on read."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Final

from latentmas_mesh.artifacts.files import write_atomically
from latentmas_mesh.errors import InternalError, NotFound

_DIGEST: Final = re.compile(r"[0-9a-f]{64}")


def digest_of(data: bytes | memoryview) -> str:
    """The hex SHA-256 a payload is stored under."""
    return hashlib.sha256(data).hexdigest()


class BlobStore:
    """`root/ab/<digest>`: equal payloads are stored once; a write is atomic and fsync'd (file
    and directory), so after a crash a digest names the whole payload or nothing; a read whose
    bytes no longer hash to their name (disk corruption, a hand edit) is refused, never served."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, digest: str) -> Path:
        if not _DIGEST.fullmatch(digest):
            raise ValueError(f"not a SHA-256 hex digest: {digest!r}")
        return self.root / digest[:2] / digest

    def put(self, data: bytes) -> str:
        """Store `data` (once per content); its digest."""
        digest = digest_of(data)
        path = self.path(digest)
        if not path.exists():
            write_atomically(path, data)
        return digest

    def get(self, digest: str) -> bytes:
        """The payload; NotFound when absent, InternalError when its bytes do not match."""
        try:
            data = self.path(digest).read_bytes()
        except FileNotFoundError:
            raise NotFound(f"no payload {digest}", details={"digest": digest}) from None
        if digest_of(data) != digest:
            msg = f"payload {digest} is corrupt on disk: it no longer hashes to its name"
            raise InternalError(msg, details={"digest": digest})
        return data

    def exists(self, digest: str) -> bool:
        return self.path(digest).exists()

    def delete(self, digest: str) -> None:
        """Remove the payload's file (a caller that knows no record refers to it any more)."""
        self.path(digest).unlink(missing_ok=True)


__all__ = ["BlobStore", "digest_of"]
