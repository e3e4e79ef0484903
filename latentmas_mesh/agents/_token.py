"""Bearer tokens: random, shown once, stored only as a SHA-256 digest, found by a public id."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass, field
from typing import Final

TOKEN_PREFIX: Final = "lmt"  # noqa: S105 (a public marker, not a secret)
"""Marks a string as a latentmas token (for secret scanners and for people reading logs)."""
TOKEN_ID_BYTES: Final = 8
"""The public lookup id: 64 random bits, so ids stay unique far past a million agents."""
TOKEN_SECRET_BYTES: Final = 32
"""The secret part: 256 random bits (`secrets.token_urlsafe(32)`, 43 characters)."""
TOKEN_CHARS: Final = len(TOKEN_PREFIX) + 1 + 2 * TOKEN_ID_BYTES + 1 + 43
"""Every token has this length (64); anything else is refused before it is hashed."""
DIGEST_BYTES: Final = hashlib.sha256().digest_size
_FORMAT: Final = re.compile(
    rf"{TOKEN_PREFIX}_([0-9a-f]{{{2 * TOKEN_ID_BYTES}}})_[A-Za-z0-9_-]{{43}}"
)


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A new token: `token` is shown to its agent once; the registry keeps `token_id` and
    `digest` only. The token never appears in a repr."""

    token: str = field(repr=False)
    token_id: str
    digest: bytes = field(repr=False)


def issue_token() -> IssuedToken:
    """A fresh token `lmt_<id>_<secret>`: the id (hex, not secret) finds the record, the whole
    token's digest proves it."""
    token_id = secrets.token_hex(TOKEN_ID_BYTES)
    token = f"{TOKEN_PREFIX}_{token_id}_{secrets.token_urlsafe(TOKEN_SECRET_BYTES)}"
    return IssuedToken(token=token, token_id=token_id, digest=token_digest(token))


def token_id_of(token: object) -> str | None:
    """The lookup id of a well-formed token, None for anything else (never raises)."""
    if not isinstance(token, str) or len(token) != TOKEN_CHARS:
        return None
    match = _FORMAT.fullmatch(token)
    return None if match is None else match.group(1)


def token_digest(token: str) -> bytes:
    """SHA-256 of the token: what the registry stores instead of it.

    No slow KDF (bcrypt, scrypt, Argon2): those make guessing a low-entropy password expensive,
    and a token is 256 random bits that no guessing reaches, digest or not. One SHA-256 is as
    safe here and costs about a microsecond, where a KDF would cost tens of milliseconds on
    every request; a stolen registry still yields no usable token.
    """
    return hashlib.sha256(token.encode("ascii")).digest()


def token_matches(digest: bytes, token: str) -> bool:
    """Whether `token` is the one whose digest is stored, compared in constant time
    (`hmac.compare_digest`), so the time taken says nothing about how many bytes matched."""
    return hmac.compare_digest(digest, token_digest(token))


__all__ = [
    "DIGEST_BYTES",
    "TOKEN_CHARS",
    "TOKEN_PREFIX",
    "IssuedToken",
    "issue_token",
    "token_digest",
    "token_id_of",
    "token_matches",
]
