"""The markets in process, over the real ledger and alignment services: publish, find, quote,
reserve, use (aligned to the buyer's model), the 80/15/5 split, retries, refusals, recovery."""

from __future__ import annotations

import numpy as np
import pytest

from latentmas_mesh.catalog import Quotas, SqliteCatalog, UseRow, UseState
from latentmas_mesh.codec.packed import pack
from latentmas_mesh.errors import (
    Conflict,
    DimensionMismatch,
    InsufficientFunds,
    InvalidRequest,
    ModelNotSupported,
    NotFound,
    QualityBelowThreshold,
    QuotaExceeded,
    Unauthorized,
)
from latentmas_mesh.market import reputation, split_revenue
from latentmas_mesh.protocol.ledger import DepositEvent
from latentmas_mesh.protocol.market import (
    AttestRequest,
    CapabilityDelivery,
    ForgetRequest,
    ListingRequest,
    MarketQuoteRequest,
    MemoryDelivery,
    PublishCapabilityRequest,
    PublishMemoryRequest,
    PublishReasoningChainRequest,
    ReasoningChain,
    ReasoningDelivery,
    ReasoningStep,
    RecallRequest,
    RememberRequest,
    SearchRequest,
    UseRequest,
    WithdrawRequest,
)
from latentmas_mesh.settlement.payments import settlement_event_ids
from latentmas_mesh.units import AssetType
from tests.market.conftest import (
    BUYER,
    CREATOR,
    FUNDS,
    GEMMA,
    OPERATOR,
    OTHER,
    SMOL,
    VALIDATOR,
    build_market,
)
from tests.workers_align.conftest import kv_cache
from tests.workers_align.test_payments import InProcessLedger


def publish_memory(market, rng, title="Contract analysis of clause 7", **extra):
    request = PublishMemoryRequest(
        title=title, description="indemnity and liability", tags=("legal",),
        kv_cache=kv_cache(SMOL, rng), **extra,
    )  # fmt: skip
    return market.call(request, CREATOR)


def buy(market, listing_id, *, buyer=BUYER, model=GEMMA, request_id="use-1", **extra):
    quote = market.call(MarketQuoteRequest(listing_id=listing_id), buyer)
    reservation = market.reserve(quote.quote, payer=buyer, event_id=f"res-{request_id}")
    use = UseRequest(listing_id=listing_id, model=model, quote_id=quote.quote.quote_id,
                     reservation_id=reservation, **extra)  # fmt: skip
    return quote, market.call(use, buyer, request_id=request_id)


class TestListings:
    def test_published_memory_is_found_by_text_and_shows_no_payload(self, market, rng):
        listed = publish_memory(market, rng)
        publish_memory(market, rng, title="Weather report for Tuesday")

        found = market.call(SearchRequest(market=AssetType.MEMORY, q="contract clause"), None)
        read = market.call(ListingRequest(listing_id=listed.listing_id), None)

        assert [listed.listing_id] == [row.listing_id for row in found.listings]
        assert read == listed.model_copy(update={"score": None})
        assert (CREATOR, SMOL, 5, False) == (read.creator, read.source_model, read.tokens,
                                             read.withdrawn)  # fmt: skip
        assert "kv_cache" not in read.model_dump()
        assert read.price_units > 0

    def test_search_pages_through_every_listing_once(self, market, rng):
        ids = {publish_memory(market, rng, title=f"note {i}").listing_id for i in range(7)}
        seen, cursor = [], None
        while True:
            page = market.call(SearchRequest(market=AssetType.MEMORY, limit=3, cursor=cursor), None)
            seen += [row.listing_id for row in page.listings]
            cursor = page.next_cursor
            if cursor is None:
                break

        assert ids == set(seen)
        assert len(seen) == len(ids)

    def test_embedding_search_ranks_by_cosine_and_filters(self, market, rng):
        base = rng.standard_normal(576).astype(np.float32)
        near = market.call(PublishCapabilityRequest(title="near", model=SMOL,
                                                    embedding=base + 0.01), CREATOR)  # fmt: skip
        far = market.call(PublishCapabilityRequest(title="far", model=SMOL,
                                                   embedding=-base), CREATOR)  # fmt: skip

        found = market.call(SearchRequest(market=AssetType.CAPABILITY, embedding=base), None)
        cheap = market.call(SearchRequest(market=AssetType.CAPABILITY, embedding=base,
                                          max_price=0), None)  # fmt: skip

        assert [near.listing_id, far.listing_id] == [row.listing_id for row in found.listings]
        assert found.listings[0].score == pytest.approx(1.0, abs=1e-3)
        assert () == cheap.listings
        priced = [row.price_units for row in found.listings]
        near_text = SearchRequest(market=AssetType.CAPABILITY, q="near")
        ranged = market.call(
            near_text.model_copy(update={"min_price": min(priced), "max_price": max(priced)}), None
        )
        dear = market.call(near_text.model_copy(update={"min_price": max(priced) + 1}), None)
        assert [near.listing_id] == [row.listing_id for row in ranged.listings]
        assert () == dear.listings

    def test_a_near_duplicate_is_counted_and_priced_lower(self, market, rng):
        cache = kv_cache(SMOL, rng)
        first = market.call(PublishMemoryRequest(title="a", kv_cache=cache), CREATOR)
        second = market.call(PublishMemoryRequest(title="b", kv_cache=cache), OTHER)

        assert (0, 1) == (first.similar_listings, second.similar_listings)
        assert second.price_units < first.price_units

    def test_only_the_creator_withdraws_and_a_withdrawn_listing_is_not_sold(self, market, rng):
        listed = publish_memory(market, rng)
        with pytest.raises(Unauthorized):
            market.call(WithdrawRequest(listing_id=listed.listing_id), BUYER)

        withdrawn = market.call(WithdrawRequest(listing_id=listed.listing_id), CREATOR)

        assert withdrawn.withdrawn
        with pytest.raises(NotFound):
            market.call(MarketQuoteRequest(listing_id=listed.listing_id), BUYER)
        assert () == market.call(SearchRequest(market=AssetType.MEMORY), None).listings

    def test_hostile_listings_are_refused_with_their_codes(self, market, rng):
        cache = kv_cache(SMOL, rng)
        lying = cache.model_copy(update={"source_model": GEMMA})  # smollm2's shape, gemma's name
        with pytest.raises(DimensionMismatch):
            market.call(PublishMemoryRequest(title="x", kv_cache=lying), CREATOR)
        unknown = PublishCapabilityRequest(title="x", model="nobody", embedding=np.ones(4))
        short = PublishCapabilityRequest(title="x", model=SMOL, embedding=np.ones(4))
        with pytest.raises(ModelNotSupported):
            market.call(unknown, CREATOR)
        with pytest.raises(DimensionMismatch):
            market.call(short, CREATOR)
        with pytest.raises(Unauthorized):
            market.call(PublishMemoryRequest(title="x", kv_cache=cache), None)
        assert () == market.call(SearchRequest(market=AssetType.MEMORY), None).listings


class TestUse:
    def test_a_use_delivers_the_cache_in_the_buyers_space_and_splits_80_15_5(self, market, rng):
        listed = publish_memory(market, rng)
        market.call(AttestRequest(listing_id=listed.listing_id, model=GEMMA, quality=0.9),
                    VALIDATOR)  # fmt: skip

        quote, delivery = buy(market, listed.listing_id)

        price = quote.quote.price_units
        split = split_revenue(price, [VALIDATOR])
        assert isinstance(delivery, MemoryDelivery)
        assert GEMMA == delivery.kv_cache.source_model
        assert (18, 1, 5, 256) == delivery.kv_cache.keys.shape
        assert price == delivery.charged_units
        assert (FUNDS - price, split.creator_units, split.validators_units) == (
            market.balance(f"agent:{BUYER}"), market.balance(f"agent:{CREATOR}"),
            market.balance(f"validator:{VALIDATOR}"),
        )  # fmt: skip
        assert split.platform_units == market.balance("platform")
        assert 1 == market.call(ListingRequest(listing_id=listed.listing_id), None).uses

    def test_quotes_the_market_signs_with_the_ledgers_key_pay_like_the_ledgers(self, tmp_path, rng):
        """A market holding the ledger's quote key signs quotes itself (one round trip less);
        the ledger accepts the reservations they make, at the same price."""
        local = build_market(tmp_path / "local", local_quotes=True)
        remote = build_market(tmp_path / "remote")
        prices = []
        for market in (local, remote):
            listed = publish_memory(market, rng)
            quote, _ = buy(market, listed.listing_id)
            prices.append(quote.quote.price_units)
            assert FUNDS - quote.quote.price_units == market.balance(f"agent:{BUYER}")
        assert prices[0] == prices[1]

    def test_quote_shows_the_formula_and_follows_attested_quality(self, market, rng):
        listed = publish_memory(market, rng)
        before = market.call(MarketQuoteRequest(listing_id=listed.listing_id), BUYER)
        market.call(AttestRequest(listing_id=listed.listing_id, model=GEMMA, quality=1.0),
                    VALIDATOR)  # fmt: skip
        after = market.call(MarketQuoteRequest(listing_id=listed.listing_id), BUYER)

        assert (0.0, 1.0) == (before.factors.quality, after.factors.quality)
        assert (3000, 2500, 2500, 2000) == before.factors.weights_bp
        assert after.quote.price_units - before.quote.price_units == 25  # 100 base x 25%
        assert (VALIDATOR,) == tuple(after.quote.validators)

    def test_a_retried_use_returns_the_same_delivery_and_charges_once(self, market, rng):
        listed = publish_memory(market, rng)
        quote, first = buy(market, listed.listing_id)
        use = UseRequest(listing_id=listed.listing_id, model=GEMMA,
                         quote_id=quote.quote.quote_id, reservation_id="res-use-1")  # fmt: skip

        again = market.call(use, BUYER, request_id="use-1")

        assert first == again
        assert FUNDS - quote.quote.price_units == market.balance(f"agent:{BUYER}")
        with pytest.raises(Conflict):
            market.call(use.model_copy(update={"model": SMOL}), BUYER, request_id="use-1")

    def test_no_reservation_or_someone_elses_is_refused_and_nothing_is_charged(self, market, rng):
        listed = publish_memory(market, rng)
        quote = market.call(MarketQuoteRequest(listing_id=listed.listing_id), BUYER)
        reservation = market.reserve(quote.quote)
        use = UseRequest(listing_id=listed.listing_id, model=GEMMA, quote_id=quote.quote.quote_id)

        with pytest.raises(InsufficientFunds):
            market.call(use, BUYER)
        with pytest.raises(NotFound):  # the quote is the buyer's, not OTHER's
            market.call(use.model_copy(update={"reservation_id": reservation}), OTHER)
        with pytest.raises(InvalidRequest):
            market.call(use.model_copy(update={"quote_id": None}), BUYER)
        others = market.call(MarketQuoteRequest(listing_id=listed.listing_id), OTHER)
        with pytest.raises(Unauthorized):  # OTHER's own quote, BUYER's reservation: not OTHER's
            market.call(use.model_copy(update={"quote_id": others.quote.quote_id,
                                               "reservation_id": reservation}), OTHER)  # fmt: skip
        assert 0 == market.balance(f"agent:{CREATOR}")
        assert (FUNDS, FUNDS - quote.quote.price_units) == (
            market.balance(f"agent:{OTHER}"),
            market.balance(f"agent:{BUYER}"),
        )  # fmt: skip  (BUYER's reservation still holds, unspent)

    def test_insufficient_funds_stop_the_reservation_before_anything_happens(self, tmp_path, rng):
        market = build_market(tmp_path)
        InProcessLedger(market.ledger, OPERATOR).send_events(
            [DepositEvent(event_id="fund-pauper", agent_id="pauper", amount_units=1)]
        )
        listed = publish_memory(market, rng)
        quote = market.call(MarketQuoteRequest(listing_id=listed.listing_id), "pauper")

        never_funded = market.call(MarketQuoteRequest(listing_id=listed.listing_id), "stranger")

        with pytest.raises(InsufficientFunds):
            market.reserve(quote.quote, payer="pauper")
        with pytest.raises(InsufficientFunds):  # no account at all: nothing, like an empty one
            market.reserve(never_funded.quote, payer="stranger", event_id="res-2")
        assert (1, 0) == (market.balance("agent:pauper"), market.balance(f"agent:{CREATOR}"))

    def test_alignment_below_the_floor_voids_the_reservation(self, market, rng):
        listed = publish_memory(market, rng)

        with pytest.raises(QualityBelowThreshold):
            buy(market, listed.listing_id, min_quality=0.99)  # the maps state 0.8
        market.drain()

        assert FUNDS == market.balance(f"agent:{BUYER}")
        assert 0 == market.balance(f"agent:{CREATOR}")
        assert market.service.catalog.use(BUYER, "use-1") is None

    def test_a_crash_between_delivery_and_post_is_completed_at_restart(self, market, rng):
        """The worker stored the delivery and died before posting: recovery posts it, and the
        buyer's retry gets the stored delivery without a second charge."""
        listed = publish_memory(market, rng)
        quote = market.call(MarketQuoteRequest(listing_id=listed.listing_id), BUYER)
        reservation = market.reserve(quote.quote)
        row = market.service.catalog.listing(listed.listing_id)
        delivery = market.service._deliver(row, GEMMA, None, reservation, quote.quote.price_units)
        digest = market.service.blobs.put(pack(delivery))
        market.service.catalog.record_use(
            UseRow(
                BUYER,
                "use-9",
                listed.listing_id,
                GEMMA,
                reservation,
                quote.quote.price_units,
                digest,
                UseState.DELIVERED,
                0,
            )
        )

        assert 1 == market.service.recover()
        retried = market.call(
            UseRequest(listing_id=listed.listing_id, model=GEMMA, quote_id=quote.quote.quote_id,
                       reservation_id=reservation), BUYER, request_id="use-9",
        )  # fmt: skip

        assert delivery == retried
        assert FUNDS - quote.quote.price_units == market.balance(f"agent:{BUYER}")
        post_id, _ = settlement_event_ids(BUYER, "use-9")
        assert market.outbox.result(post_id) is not None

    def test_a_reasoning_chain_arrives_in_the_buyers_model_space(self, market, rng):
        chain = ReasoningChain(model=SMOL, steps=(
            ReasoningStep(text="Read the clause.", tokens=5, kv_cache=kv_cache(SMOL, rng)),
            ReasoningStep(text="Liability is capped.", tokens=4),
        ))  # fmt: skip
        listed = market.call(PublishReasoningChainRequest(title="clause 7", chain=chain), CREATOR)

        _, delivery = buy(market, listed.listing_id)

        assert isinstance(delivery, ReasoningDelivery)
        assert GEMMA == delivery.chain.model
        assert ["Read the clause.", "Liability is capped."] == [
            s.text for s in delivery.chain.steps
        ]
        assert GEMMA == delivery.chain.steps[0].kv_cache.source_model
        assert delivery.quality is not None
        assert 9 == listed.tokens

    def test_a_capability_is_paid_once_then_used_again_for_free(self, market, rng):
        embedding = rng.standard_normal(576).astype(np.float32)
        listed = market.call(PublishCapabilityRequest(title="summarise", model=SMOL,
                                                      embedding=embedding), CREATOR)  # fmt: skip

        quote, first = buy(market, listed.listing_id, model=SMOL)
        again = market.call(UseRequest(listing_id=listed.listing_id, model=SMOL), BUYER,
                            request_id="use-2")  # fmt: skip

        assert isinstance(first, CapabilityDelivery)
        assert np.array_equal(embedding, first.embedding)
        assert (quote.quote.price_units, 0) == (first.charged_units, again.charged_units)
        assert FUNDS - quote.quote.price_units == market.balance(f"agent:{BUYER}")

    def test_only_registered_validators_attest_and_never_their_own(self, market, rng):
        listed = publish_memory(market, rng)
        with pytest.raises(Unauthorized):
            market.call(AttestRequest(listing_id=listed.listing_id, model=GEMMA, quality=1.0),
                        BUYER)  # fmt: skip

        first = market.call(AttestRequest(listing_id=listed.listing_id, model=GEMMA, quality=0.6),
                            VALIDATOR)  # fmt: skip
        again = market.call(AttestRequest(listing_id=listed.listing_id, model=GEMMA, quality=0.8),
                            VALIDATOR)  # fmt: skip

        assert (0.6, 0.8) == (first.listing_quality, again.listing_quality)
        read = market.call(ListingRequest(listing_id=listed.listing_id), None)
        assert (1, (VALIDATOR,)) == (read.attestations, read.validators)
        assert reputation(0.8, 1, 0) == pytest.approx(read.reputation)


class TestLongTermMemory:
    def test_remember_recall_by_recency_text_and_embedding(self, market, rng):
        vectors = rng.standard_normal((3, 8)).astype(np.float32)
        texts = ["the client prefers email", "deadline is friday", "budget approved in march"]
        ids = [
            market.call(RememberRequest(text=text, embedding=vector), BUYER).memory_id
            for text, vector in zip(texts, vectors, strict=True)
        ]

        recent = market.call(RecallRequest(k=2), BUYER)
        by_text = market.call(RecallRequest(q="deadline"), BUYER)
        by_vector = market.call(RecallRequest(embedding=vectors[2]), BUYER)

        assert "recency" == recent.ranked_by
        assert [ids[2], ids[1]] == [m.memory_id for m in recent.memories]
        assert [ids[1]] == [m.memory_id for m in by_text.memories]
        assert ids[2] == by_vector.memories[0].memory_id
        assert () == market.call(RecallRequest(), OTHER).memories  # owned by BUYER alone

    def test_a_kv_snapshot_comes_back_and_forget_removes_it_for_real(self, market, rng):
        cache = kv_cache(SMOL, rng)
        record = market.call(RememberRequest(text="meeting notes", kv_cache=cache), BUYER)
        digest = market.service.catalog.memory_payload(BUYER, record.memory_id)
        recalled = market.call(RecallRequest(with_kv=True), BUYER).memories[0]

        assert market.call(ForgetRequest(memory_id=record.memory_id), OTHER).forgotten is False
        gone = market.call(ForgetRequest(memory_id=record.memory_id), BUYER)

        assert cache == recalled.kv_cache
        assert gone.forgotten
        assert not market.service.blobs.exists(digest)
        assert () == market.call(RecallRequest(q="meeting"), BUYER).memories
        catalog = market.service.catalog
        if isinstance(catalog, SqliteCatalog):  # secure_delete: overwritten in the file too
            assert b"meeting notes" not in catalog.path.read_bytes()

    def test_a_full_memory_refuses_with_quota_exceeded(self, tmp_path, rng, catalog_url):
        market = build_market(tmp_path, quotas=Quotas(memories_max=2), catalog_url=catalog_url)
        market.call(RememberRequest(text="one"), BUYER)
        market.call(RememberRequest(text="two"), BUYER)

        with pytest.raises(QuotaExceeded) as refused:
            market.call(RememberRequest(text="three"), BUYER)

        assert 2 == refused.value.details["memories"]
        assert 1 == len(market.call(RememberRequest(text="other's"), OTHER).memory_id[:1])
