"""Rows of the market's catalog: listings, quotes, uses and long-term memories."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from latentmas_mesh.units import AssetType


class UseState(StrEnum):
    """Where one use stands. DELIVERED: the delivery is stored, its post not yet confirmed;
    POSTED: paid (final); VOIDED: the reservation was given back (final)."""

    DELIVERED = "delivered"
    POSTED = "posted"
    VOIDED = "voided"


@dataclass(frozen=True, slots=True)
class ListingRow:
    """A listing with its counters and its creator's reputation (`score`: the search rank)."""

    listing_id: str
    market: AssetType
    creator: str
    title: str
    description: str
    tags: tuple[str, ...]
    source_model: str
    tokens: int
    payload_digest: str
    payload_bytes: int
    embedding_dim: int | None
    similar: int
    price_units: int
    quality: float
    attestations: int
    validators: tuple[str, ...]
    uses: int
    created_ms: int
    withdrawn: bool
    reputation: float
    score: float | None = None


@dataclass(frozen=True, slots=True)
class NewListing:
    """What publishing writes (counters start at zero)."""

    listing_id: str
    market: AssetType
    creator: str
    title: str
    description: str
    tags: tuple[str, ...]
    source_model: str
    tokens: int
    payload_digest: str
    payload_bytes: int
    similar: int
    price_units: int
    created_ms: int


@dataclass(frozen=True, slots=True)
class QuoteRow:
    """A quote the market obtained for a buyer: the terms a reservation must carry."""

    quote_id: str
    listing_id: str
    buyer: str
    price_units: int
    creator: str
    validators: tuple[str, ...]
    expires_ms: int
    reply_json: str = ""
    """The quote as the buyer was given it (signed terms and factors), to give it again."""


@dataclass(frozen=True, slots=True)
class UseRow:
    """One use (or purchase) by `buyer` under its request id, and its stored delivery."""

    buyer: str
    request_id: str
    listing_id: str
    model: str
    reservation_id: str | None
    charged_units: int
    delivery_digest: str
    state: UseState
    at_ms: int


@dataclass(frozen=True, slots=True)
class MemoryRow:
    """One long-term memory of its owner (its snapshot, if any, in the blob store)."""

    memory_id: str
    owner: str
    text: str
    tags: tuple[str, ...]
    payload_digest: str | None
    payload_bytes: int
    has_embedding: bool
    created_ms: int
    score: float | None = None


@dataclass(frozen=True, slots=True)
class ListingFilters:
    """What a search keeps: one source model, one creator, a quality floor, a price range."""

    model: str | None = None
    creator: str | None = None
    min_quality: float | None = None
    min_price: int | None = None
    max_price: int | None = None

    def clauses(self) -> list[tuple[str, object]]:
        """(SQL condition on listings `l`, its parameter) for each filter set."""
        pairs = (
            ("l.source_model = ?", self.model),
            ("l.creator = ?", self.creator),
            ("l.quality >= ?", self.min_quality),
            ("l.price_units >= ?", self.min_price),
            ("l.price_units <= ?", self.max_price),
        )
        return [(clause, value) for clause, value in pairs if value is not None]

    def passes(self, row: ListingRow) -> bool:
        """The same conditions on a row already read (the vector search filters in memory)."""
        return (
            (self.model is None or row.source_model == self.model)
            and (self.creator is None or row.creator == self.creator)
            and (self.min_quality is None or row.quality >= self.min_quality)
            and (self.min_price is None or row.price_units >= self.min_price)
            and (self.max_price is None or row.price_units <= self.max_price)
        )


@dataclass(frozen=True, slots=True)
class Quotas:
    """Per-agent bounds, checked before anything is written."""

    memories_max: int = 10_000
    memory_bytes_max: int = 256 << 20
    listings_max: int = 10_000


__all__ = [
    "ListingFilters",
    "ListingRow",
    "MemoryRow",
    "NewListing",
    "Quotas",
    "QuoteRow",
    "UseRow",
    "UseState",
]
