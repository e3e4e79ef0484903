"""Signed quotes: the price a buyer sees before paying, valid until a deadline (HMAC-SHA256)."""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import asdict, dataclass
from typing import Final

from latentmas_mesh.errors import InvalidRequest
from latentmas_mesh.units import PRICE_UNITS_MAX, QUOTE_TTL_MS_MAX, AssetType

QUOTE_KEY_BYTES_MIN: Final = 16


@dataclass(frozen=True, slots=True)
class QuoteTerms:
    """What a quote promises: this asset, from this creator, with these validators, at this price.

    `validators` is sorted so that equal terms always sign to the same bytes.
    """

    quote_id: str
    asset_type: AssetType
    asset_id: str
    creator: str
    validators: tuple[str, ...]
    price_units: int
    currency: str
    issued_at_ms: int
    expires_at_ms: int

    def canonical_bytes(self) -> bytes:
        """Sorted-key compact JSON of every field: the exact bytes the signature covers."""
        fields = asdict(self)
        fields["asset_type"] = self.asset_type.value
        fields["validators"] = list(self.validators)
        return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True, slots=True)
class SignedQuote:
    """Terms plus the hex HMAC-SHA256 of their canonical bytes under the ledger's quote key."""

    terms: QuoteTerms
    signature: str


def issue_quote(
    *,
    key: bytes,
    quote_id: str,
    asset_type: AssetType,
    asset_id: str,
    creator: str,
    validators: tuple[str, ...],
    price_units: int,
    currency: str,
    now_ms: int,
    ttl_ms: int,
) -> SignedQuote:
    """Sign terms valid from `now_ms` for `ttl_ms` (at most QUOTE_TTL_MS_MAX)."""
    _check_key(key)
    if type(ttl_ms) is not int or not 0 < ttl_ms <= QUOTE_TTL_MS_MAX:
        msg = f"quote ttl_ms must be an int in (0, {QUOTE_TTL_MS_MAX}], got {ttl_ms!r}"
        raise InvalidRequest(msg, details={"field": "ttl_ms"})
    if type(price_units) is not int or not 0 <= price_units <= PRICE_UNITS_MAX:
        msg = f"price_units must be an int in [0, {PRICE_UNITS_MAX}], got {price_units!r}"
        raise InvalidRequest(msg, details={"field": "price_units"})
    terms = QuoteTerms(
        quote_id=quote_id,
        asset_type=asset_type,
        asset_id=asset_id,
        creator=creator,
        validators=tuple(sorted(validators)),
        price_units=price_units,
        currency=currency,
        issued_at_ms=now_ms,
        expires_at_ms=now_ms + ttl_ms,
    )
    return SignedQuote(terms, _sign(key, terms))


def verify_quote(quote: SignedQuote, *, key: bytes, now_ms: int | None) -> QuoteTerms:
    """The terms of a unexpired quote; InvalidRequest for a forged, altered or stale one."""
    _check_key(key)
    expected = _sign(key, quote.terms)
    if not hmac.compare_digest(expected, quote.signature):
        msg = "quote signature does not match its terms: altered, forged or signed with another key"
        raise InvalidRequest(msg, details={"quote_id": quote.terms.quote_id})
    if now_ms is None:  # signature only: a re-delivered payment made while the quote was valid
        return quote.terms
    if now_ms >= quote.terms.expires_at_ms:
        msg = "quote has expired: ask for a new quote"
        raise InvalidRequest(
            msg,
            details={"quote_id": quote.terms.quote_id, "expires_at_ms": quote.terms.expires_at_ms},
        )
    if now_ms < quote.terms.issued_at_ms:
        msg = "quote is issued in the future: clocks disagree"
        raise InvalidRequest(msg, details={"quote_id": quote.terms.quote_id})
    return quote.terms


def _sign(key: bytes, terms: QuoteTerms) -> str:
    return hmac.new(key, terms.canonical_bytes(), hashlib.sha256).hexdigest()


def _check_key(key: bytes) -> None:
    if len(key) < QUOTE_KEY_BYTES_MIN:
        msg = f"the quote key must have at least {QUOTE_KEY_BYTES_MIN} bytes"
        raise ValueError(msg)
