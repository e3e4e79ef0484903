"""Quotes: signed terms that verify until their deadline and fail once altered or expired."""

from __future__ import annotations

import dataclasses

import pytest

from latentmas_mesh.errors import InvalidRequest
from latentmas_mesh.market import (
    QUOTE_TTL_MS_MAX,
    AssetType,
    SignedQuote,
    issue_quote,
    verify_quote,
)

KEY = b"k" * 32


def make_quote(now_ms: int = 1_000, ttl_ms: int = 60_000) -> SignedQuote:
    return issue_quote(
        key=KEY,
        quote_id="q-1",
        asset_type=AssetType.MEMORY,
        asset_id="asset-1",
        creator="alice",
        validators=("v2", "v1"),
        price_units=175,
        currency="credit",
        now_ms=now_ms,
        ttl_ms=ttl_ms,
    )


class TestQuote:
    def test_quote_verifies_before_its_deadline(self):
        """A fresh quote's terms come back unchanged, validators sorted."""
        terms = verify_quote(make_quote(), key=KEY, now_ms=60_999)

        assert (175, ("v1", "v2"), 61_000) == (
            terms.price_units,
            terms.validators,
            terms.expires_at_ms,
        )

    def test_quote_is_refused_at_its_deadline(self):
        """A quote is valid strictly before expires_at_ms."""
        with pytest.raises(InvalidRequest, match="expired"):
            verify_quote(make_quote(), key=KEY, now_ms=61_000)

    def test_altered_price_breaks_the_signature(self):
        """Lowering the price in a quote is detected."""
        quote = make_quote()
        cheaper = SignedQuote(dataclasses.replace(quote.terms, price_units=1), quote.signature)

        with pytest.raises(InvalidRequest, match="signature"):
            verify_quote(cheaper, key=KEY, now_ms=2_000)

    def test_quote_signed_with_another_key_is_refused(self):
        """Only the configured key's quotes are accepted."""
        with pytest.raises(InvalidRequest, match="signature"):
            verify_quote(make_quote(), key=b"x" * 32, now_ms=2_000)

    @pytest.mark.parametrize("ttl_ms", [0, -5, QUOTE_TTL_MS_MAX + 1])
    def test_quote_lifetime_is_bounded(self, ttl_ms):
        """A quote lives for a positive time of at most QUOTE_TTL_MS_MAX."""
        with pytest.raises(InvalidRequest):
            make_quote(ttl_ms=ttl_ms)
