"""The catalog's storage rules: payloads verified by hash, text queries that cannot be FTS5
syntax, packed payloads read back by the checked decoder, secure forgetting."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from latentmas_mesh.catalog import (
    BlobStore,
    NewListing,
    Quotas,
    QuoteRow,
    SqliteCatalog,
    digest_of,
    fts_query,
)
from latentmas_mesh.codec.packed import pack, unpack
from latentmas_mesh.errors import InternalError, InvalidRequest, NotFound, QuotaExceeded
from latentmas_mesh.units import AssetType
from tests.workers_align.conftest import SMOL, kv_cache


def test_a_blob_is_stored_once_and_a_corrupt_one_is_never_served(tmp_path):
    blobs = BlobStore(tmp_path)
    digest = blobs.put(b"payload")
    assert digest == blobs.put(b"payload") == digest_of(b"payload")
    assert b"payload" == blobs.get(digest)

    blobs.path(digest).write_bytes(b"tampered")

    with pytest.raises(InternalError):
        blobs.get(digest)
    with pytest.raises(NotFound):
        blobs.get("0" * 64)
    with pytest.raises(ValueError):
        blobs.path("../../etc/passwd")


def test_a_packed_cache_reads_back_equal_and_garbage_is_refused(rng):
    cache = kv_cache(SMOL, rng)
    data = pack(cache)

    assert cache == unpack(data).message
    for broken in (b"", b"LMP1", data[:-1], b"\xff" * 8 + data[8:], data + b"!"):
        with pytest.raises(InvalidRequest):
            unpack(broken)


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80))
def test_no_text_query_is_an_fts5_syntax_error(tmp_path_factory, text):
    catalog = SqliteCatalog(tmp_path_factory.mktemp("fts") / "c.db", BlobStore(
        tmp_path_factory.mktemp("blobs")))  # fmt: skip
    try:
        query = fts_query(text)
    except InvalidRequest:
        return
    rows, more = catalog.search(AssetType.MEMORY, text=text)
    assert (rows, more) == ([], False)
    assert query.count('"') % 2 == 0


@pytest.fixture(scope="module")
def postgres_catalog(postgres_dsn, tmp_path_factory):
    from latentmas_mesh.catalog.postgres import PostgresCatalog

    catalog = PostgresCatalog(postgres_dsn, BlobStore(tmp_path_factory.mktemp("pg-blobs")),
                              schema="catalog_queries")  # fmt: skip
    yield catalog
    catalog.close()


@pytest.mark.postgres
@settings(max_examples=150, deadline=None)
@given(st.text(max_size=80))
def test_no_text_query_is_a_tsquery_error(postgres_catalog, text):
    try:
        rows, more = postgres_catalog.search(AssetType.MEMORY, text=text)
    except InvalidRequest:  # no words at all
        return
    assert (rows, more) == ([], False)


def test_listings_per_creator_are_bounded(tmp_path):
    catalog = SqliteCatalog(tmp_path / "c.db", BlobStore(tmp_path / "b"),
                            quotas=Quotas(listings_max=1))  # fmt: skip

    def listing(i: int) -> NewListing:
        return NewListing(f"memory-{i:032x}", AssetType.MEMORY, "c", "t", "", (), SMOL, 1,
                          "0" * 64, 1, 0, 1, 0)  # fmt: skip

    catalog.add_listing(listing(1), embedding=None, fingerprint=None)
    with pytest.raises(QuotaExceeded):
        catalog.add_listing(listing(2), embedding=None, fingerprint=np.ones(3, np.float32))
    assert catalog.listing(f"memory-{2:032x}") is None


def test_old_quotes_are_purged_as_new_ones_come(tmp_path):
    """Every quote asked is stored; those long expired go, a bounded number per new quote."""
    catalog = SqliteCatalog(tmp_path / "c.db", BlobStore(tmp_path / "b"))
    hour = 60 * 60 * 1000

    def quote(i: int, expires_ms: int) -> QuoteRow:
        return QuoteRow(f"q{i}", "memory-" + "0" * 32, "buyer", 1, "c", (), expires_ms, "{}")

    for i in range(10):
        catalog.add_quote(quote(i, expires_ms=1_000 + i))
    catalog.add_quote(quote(99, expires_ms=1_000 + 2 * hour))

    assert catalog.quote("q99") is not None
    assert [None] * 10 == [catalog.quote(f"q{i}") for i in range(10)]
