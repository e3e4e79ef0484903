"""Settings of the ledger process: storage URL, currency, quote key, who is trusted for what."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from pydantic import Field

from latentmas_mesh.settings import MeshSettings

QUOTE_KEY_BYTES = 32


class LedgerSettings(MeshSettings):
    """`LATENTMAS_LEDGER_*` options of the ledger worker (identities are Z85 CURVE public keys)."""

    ledger_url: str = Field(
        default="sqlite:///.latentmas-cache/ledger.db",
        description="sqlite:///path (default, one host) or postgresql://... (several nodes).",
    )
    ledger_currency: str = Field(
        default="credit", min_length=1, max_length=16, description="Name of the minor unit."
    )
    ledger_quote_key_file: Path = Field(
        default=Path(".latentmas-cache/ledger-quote.key"),
        description="HMAC key signing quotes; created (0600, 32 random bytes) when missing.",
    )
    ledger_quote_ttl_ms: int = Field(default=60_000, gt=0, le=15 * 60 * 1000)
    ledger_services: frozenset[str] = Field(
        default=frozenset(),
        description="Identities of platform services allowed to post/void any reservation.",
    )
    ledger_operators: frozenset[str] = Field(
        default=frozenset(),
        description="Identities allowed to deposit (fund) and to read any account.",
    )
    ledger_open_deposits: bool = Field(
        default=False,
        description="Let any authenticated agent fund its own account (test networks only).",
    )
    ledger_sweep_interval_ms: int = Field(
        default=1_000,
        gt=0,
        description="How often the worker's sweeper releases expired reservations.",
    )
    ledger_tokens_cap: int = Field(default=32_768, gt=0, description="Token factor saturates here.")

    def quote_key(self) -> bytes:
        """The quote key, created on first use so that quotes survive restarts."""
        path = self.ledger_quote_key_file
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:  # another ledger worker created it just now
                return path.read_bytes()
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(secrets.token_bytes(QUOTE_KEY_BYTES))
                handle.flush()
                os.fsync(handle.fileno())
        return path.read_bytes()
