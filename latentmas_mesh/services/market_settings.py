"""Settings of the market worker (`LATENTMAS_MARKET_*`): where the catalog and the payloads
live, who may attest, the per-agent quotas, how long it waits on the ledger and on alignment."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from latentmas_mesh.catalog import Quotas
from latentmas_mesh.settings import MIB, MeshSettings


class MarketSettings(MeshSettings):
    """Relative paths are taken under `cache_dir`; several market workers of one host share
    them (SQLite serialises their writes)."""

    market_catalog_file: Path = Field(
        default=Path("market/catalog.sqlite3"), description="The SQLite catalog (one host)."
    )
    market_catalog_url: str = Field(
        default="",
        description=(
            "postgresql://...[#schema] for a market of several nodes (then the file is unused)."
        ),
    )
    market_blobs_dir: Path = Field(default=Path("market/blobs"))
    market_outbox: Path = Field(
        default=Path("settlements/market-outbox.sqlite3"),
        description="The durable spool of the market's posts and voids to the ledger.",
    )
    market_validators: frozenset[str] = Field(
        default=frozenset(),
        description="Identities allowed to attest listings (their ledger accounts open).",
    )
    market_quote_ttl_ms: int = Field(default=60_000, gt=0, le=15 * 60 * 1000)
    market_sign_quotes: bool = Field(
        default=True,
        description=(
            "Sign quotes with the ledger's key file when this host has it"
            " (LATENTMAS_LEDGER_QUOTE_KEY_FILE): one round trip less per quote; else the"
            " ledger signs them."
        ),
    )
    market_memories_max: int = Field(default=10_000, gt=0)
    market_memory_bytes_max: int = Field(default=256 * MIB, gt=0)
    market_listings_max: int = Field(default=10_000, gt=0)
    market_ledger_timeout_ms: int = Field(default=10_000, gt=0)
    market_align_timeout_ms: int = Field(default=120_000, gt=0)
    market_outbox_drain_ms: int = Field(default=1_000, gt=0)
    ledger_tokens_cap: int = Field(
        default=32_768, gt=0, description="The ledger's token cap: listing prices use it too."
    )

    def catalog_url(self) -> str:
        """The configured URL, else the SQLite file under cache_dir."""
        return self.market_catalog_url or str(self.path(self.market_catalog_file))

    def quotas(self) -> Quotas:
        return Quotas(
            memories_max=self.market_memories_max,
            memory_bytes_max=self.market_memory_bytes_max,
            listings_max=self.market_listings_max,
        )


__all__ = ["MarketSettings"]
