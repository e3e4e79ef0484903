"""The `latentmas.market` request handler: the memory, reasoning and capability markets and
long-term memory. Message + the caller's authenticated identity in, reply out; no socket.

A use is pay-then-deliver (spec 7.4): the buyer reserves a quoted price on the ledger, the
market checks that reservation, aligns the asset to the buyer's model through the alignment
service, stores the delivery, posts the reservation (80/15/5 among creator, platform and the
listing's validators) and only then answers. Any failure before the post voids it. A use is
keyed by (buyer, request id): a retry returns the stored delivery and charges nothing more.
"""

from __future__ import annotations

import contextlib
import hashlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final, Protocol

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel

from latentmas_mesh.catalog import (
    BlobStore,
    ListingFilters,
    ListingRow,
    MemoryRow,
    NewListing,
    QuoteRow,
    SqlCatalog,
    UseRow,
    UseState,
)
from latentmas_mesh.codec import Decoded
from latentmas_mesh.codec.packed import pack, unpack
from latentmas_mesh.errors import (
    Conflict,
    DimensionMismatch,
    InvalidRequest,
    NotFound,
    ProtocolError,
    ReservationClosed,
    Unauthorized,
)
from latentmas_mesh.market import (
    PriceSchedule,
    kv_fingerprint,
    near_duplicates,
    unit_vector,
)
from latentmas_mesh.protocol.align import require_retention
from latentmas_mesh.protocol.kv import KVCache
from latentmas_mesh.protocol.ledger import Quote, QuoteRequest
from latentmas_mesh.protocol.market import (
    Attestation,
    AttestRequest,
    CapabilityDelivery,
    Delivery,
    ForgetReply,
    ForgetRequest,
    Listing,
    ListingRequest,
    MarketQuote,
    MarketQuoteLookup,
    MarketQuoteRequest,
    MemoryDelivery,
    MemoryRecord,
    PriceFactors,
    PublishCapabilityRequest,
    PublishMemoryRequest,
    PublishReasoningChainRequest,
    PublishRequest,
    ReasoningChain,
    ReasoningDelivery,
    ReasoningStep,
    RecallReply,
    RecallRequest,
    RememberRequest,
    SearchReply,
    SearchRequest,
    UseRequest,
    WithdrawRequest,
)
from latentmas_mesh.protocol.quality import AlignmentQuality
from latentmas_mesh.registry import Registry, default_registry
from latentmas_mesh.services.quotes import Pricing
from latentmas_mesh.settlement.payments import Payment, Payments, Terms, settlement_event_ids
from latentmas_mesh.units import AssetType

CURSOR_PREFIX: Final = "o"
OFFSET_MAX: Final = 10_000


class Aligner(Protocol):
    """What the market needs of the alignment service (through the broker in a worker)."""

    def align_kv(
        self, cache: KVCache, target: str, *, min_quality: float | None
    ) -> tuple[KVCache, AlignmentQuality]: ...

    def align_vector(
        self, vector: npt.NDArray[np.float32], source: str, target: str
    ) -> tuple[npt.NDArray[np.float32], AlignmentQuality | None]: ...


class Quoter(Protocol):
    """Who signs quotes (the ledger: `settlement.ledger_client.LedgerClient` has it)."""

    def quote(self, request: QuoteRequest) -> Quote: ...


@dataclass(slots=True)
class MarketPolicy:
    """The operator's choices: the price schedule (the ledger's), the validators allowed to
    attest, how long a quote holds."""

    schedule: PriceSchedule = field(default_factory=PriceSchedule)
    validators: frozenset[str] = frozenset()
    quote_ttl_ms: int = 60_000


class MarketService:
    """Answers every market and long-term memory message."""

    def __init__(
        self,
        catalog: SqlCatalog,
        *,
        quoter: Quoter,
        payments: Payments,
        aligner: Aligner,
        clock: Callable[[], int],
        policy: MarketPolicy | None = None,
        registry: Registry | None = None,
    ) -> None:
        self.catalog = catalog
        self.blobs: BlobStore = catalog.blobs
        self.quoter = quoter
        self.payments = payments
        self.aligner = aligner
        self.clock = clock
        self.policy = policy or MarketPolicy()
        self.registry = registry or default_registry()
        self.pricing = Pricing(self.policy.schedule, self.registry)

    def handle(self, request: Decoded, identity: str | None) -> BaseModel:
        """Dispatch on the message type; a refused request raises its ProtocolError."""
        message = request.message
        if isinstance(message, SearchRequest):
            return self.search(message)
        if isinstance(message, ListingRequest):
            return _listing(self._listing(message.listing_id))
        if identity is None:
            msg = "the market needs an authenticated identity (CURVE) for this request"
            raise Unauthorized(msg)
        now_ms = self.clock()
        if isinstance(message, UseRequest):
            return self.use(message, identity, request.request_id)
        if isinstance(message, MarketQuoteRequest):
            return self.quote(message.listing_id, identity)
        if isinstance(message, MarketQuoteLookup):
            return self.quote_lookup(message.quote_id, identity)
        return self._answer(message, identity, now_ms)

    def _answer(self, message: BaseModel, identity: str, now_ms: int) -> BaseModel:
        if isinstance(
            message, PublishMemoryRequest | PublishReasoningChainRequest | PublishCapabilityRequest
        ):
            return self.publish(message, identity, now_ms)
        if isinstance(message, WithdrawRequest):
            return self.withdraw(message.listing_id, identity)
        if isinstance(message, AttestRequest):
            return self.attest(message, identity, now_ms)
        if isinstance(message, RememberRequest):
            return self.remember(message, identity, now_ms)
        if isinstance(message, RecallRequest):
            return self.recall(message, identity)
        if isinstance(message, ForgetRequest):
            forgotten = self.catalog.forget(identity, message.memory_id)
            return ForgetReply(memory_id=message.memory_id, forgotten=forgotten)
        msg = f"the market does not answer {type(message).__name__}"
        raise InvalidRequest(msg)

    # ------------------------------------------------------------------------- listings

    def publish(self, request: PublishRequest, creator: str, now_ms: int) -> Listing:
        """Check the asset against its model's registry entry, store it, list it."""
        if isinstance(request, PublishMemoryRequest):
            market, model = AssetType.MEMORY, request.kv_cache.source_model
            self._check_cache(request.kv_cache)
            tokens = request.kv_cache.metadata.sequence_length
            payload: BaseModel = request.kv_cache
            cache = request.kv_cache
            fingerprint: npt.NDArray[np.float32] | None = kv_fingerprint(cache.keys, cache.values)
            embedding = request.embedding
        elif isinstance(request, PublishReasoningChainRequest):
            market, model = AssetType.REASONING, request.chain.model
            for step in request.chain.steps:
                if step.kv_cache is not None:
                    self._check_cache(step.kv_cache)
                if step.hidden_state is not None:
                    self._check_vector(model, step.hidden_state, "hidden_state")
            tokens = sum(step.tokens for step in request.chain.steps)
            payload, embedding = request.chain, request.embedding
            fingerprint = None if request.embedding is None else unit_vector(request.embedding)
        else:
            market, model = AssetType.CAPABILITY, request.model
            self._check_vector(model, request.embedding, "embedding")
            tokens, payload, embedding = 0, request, request.embedding
            fingerprint = unit_vector(request.embedding)
        model = self.registry.get(model).name  # unknown -> MODEL_NOT_SUPPORTED
        data = pack(payload)
        digest = self.blobs.put(data)
        similar = self.catalog.same_payloads(market, digest)
        if fingerprint is not None:
            others = self.catalog.fingerprints(market, model, int(fingerprint.shape[0]))
            similar = max(similar, near_duplicates(fingerprint, others))
        listing_id = f"{market.value}-{uuid.uuid4().hex}"
        price = self._price(market, model, tokens, quality=0.0, similar=similar)
        self.catalog.add_listing(
            NewListing(
                listing_id=listing_id, market=market, creator=creator, title=request.title,
                description=request.description, tags=request.tags, source_model=model,
                tokens=tokens, payload_digest=digest, payload_bytes=len(data), similar=similar,
                price_units=price, created_ms=now_ms,
            ),
            embedding=None if embedding is None else np.asarray(embedding, np.float32),
            fingerprint=fingerprint,
        )  # fmt: skip
        return _listing(self._listing(listing_id))

    def _check_cache(self, cache: KVCache) -> None:
        """A snapshot's shape is its model's (registry): a lying shape is refused."""
        spec = self.registry.get(cache.source_model)
        expected = spec.kv_shape(cache.keys.shape[2])
        if tuple(cache.keys.shape) != expected:
            msg = (
                f"a {spec.name} KV cache has shape {expected} for its {expected[2]} tokens;"
                f" this one has {tuple(cache.keys.shape)}"
            )
            details = {"model": spec.name, "expected": list(expected),
                       "got": list(cache.keys.shape)}  # fmt: skip
            raise DimensionMismatch(msg, details=details)

    def _check_vector(self, model: str, vector: npt.NDArray[Any], name: str) -> None:
        spec = self.registry.get(model)
        if spec.hidden_size is not None and vector.shape[0] != spec.hidden_size:
            msg = f"{name} of {spec.name} has {spec.hidden_size} dimensions, not {vector.shape[0]}"
            details = {"model": spec.name, "field": name, "expected": spec.hidden_size,
                       "got": int(vector.shape[0])}  # fmt: skip
            raise DimensionMismatch(msg, details=details)

    def _price(
        self, market: AssetType, model: str, tokens: int, *, quality: float, similar: int
    ) -> int:
        """The formula's price now: what a quote asked at this moment charges."""
        return self.pricing.price_units(market, model, tokens, quality, similar)

    def _listing(self, listing_id: str) -> ListingRow:
        row = self.catalog.listing(listing_id)
        if row is None:
            raise NotFound(f"no listing {listing_id!r}", details={"listing_id": listing_id})
        return row

    def _listed(self, listing_id: str) -> ListingRow:
        """A listing still on the market (a withdrawn one is sold no more)."""
        row = self._listing(listing_id)
        if row.withdrawn:
            msg = f"listing {listing_id!r} was withdrawn by its creator"
            raise NotFound(msg, details={"listing_id": listing_id, "withdrawn": True})
        return row

    def withdraw(self, listing_id: str, identity: str) -> Listing:
        row = self._listing(listing_id)
        if row.creator != identity:
            msg = "only the listing's creator may withdraw it"
            raise Unauthorized(msg, details={"listing_id": listing_id})
        self.catalog.withdraw(listing_id)
        return _listing(self._listing(listing_id))

    def search(self, request: SearchRequest) -> SearchReply:
        offset = _offset(request.cursor)
        model = None if request.model is None else self.registry.get(request.model).name
        filters = ListingFilters(
            model=model, creator=request.creator, min_quality=request.min_quality,
            min_price=request.min_price, max_price=request.max_price,
        )  # fmt: skip
        rows, more = self.catalog.search(
            request.market, text=request.q, embedding=request.embedding, filters=filters,
            offset=offset, limit=request.limit,
        )  # fmt: skip
        following = f"{CURSOR_PREFIX}{offset + len(rows)}" if more else None
        return SearchReply(listings=tuple(_listing(row) for row in rows), next_cursor=following)

    def attest(self, request: AttestRequest, validator: str, now_ms: int) -> Attestation:
        """A registered validator's measurement; the listing's price follows its new quality."""
        if validator not in self.policy.validators:
            msg = "only a registered validator may attest (LATENTMAS_MARKET_VALIDATORS)"
            raise Unauthorized(msg, details={"listing_id": request.listing_id})
        row = self._listed(request.listing_id)
        if row.creator == validator:
            raise Unauthorized("a creator may not attest its own listing")
        model = self.registry.get(request.model).name
        quality = self.catalog.attest(
            row.listing_id, validator, model=model, quality=request.quality,
            method=request.method, at_ms=now_ms,
        )  # fmt: skip
        price = self._price(row.market, row.source_model, row.tokens, quality=quality,
                            similar=row.similar)  # fmt: skip
        self.catalog.set_price(row.listing_id, price)
        return Attestation(
            listing_id=row.listing_id, validator=validator, model=model,
            quality=request.quality, method=request.method, at_ms=now_ms,
            listing_quality=quality,
        )  # fmt: skip

    # ---------------------------------------------------------------------------- using

    def quote(self, listing_id: str, buyer: str) -> MarketQuote:
        """The ledger's signed price for one use by `buyer`, remembered for the use."""
        row = self._listed(listing_id)
        weighted = self.pricing.factors(row.source_model, row.tokens, row.quality, row.similar)
        signed = self.quoter.quote(
            QuoteRequest(
                asset_type=row.market, asset_id=row.listing_id, creator=row.creator,
                validators=row.validators, tokens=row.tokens, source_model=row.source_model,
                quality=row.quality, similar_assets=row.similar, ttl_ms=self.policy.quote_ttl_ms,
            )
        )  # fmt: skip
        weights = self.policy.schedule.weights
        bought = row.market is AssetType.CAPABILITY and bool(
            self.catalog.purchase(buyer, row.listing_id)
        )
        reply = MarketQuote(
            listing_id=row.listing_id,
            quote=signed,
            bought=bought,
            factors=PriceFactors(
                tokens=float(weighted.tokens), tier=float(weighted.tier),
                quality=float(weighted.quality), uniqueness=float(weighted.uniqueness),
                weights_bp=(weights.tokens_bp, weights.tier_bp, weights.quality_bp,
                            weights.uniqueness_bp),
                base_units=self.policy.schedule.base_units[row.market],
            ),
        )  # fmt: skip
        self.catalog.add_quote(
            QuoteRow(
                signed.quote_id, row.listing_id, buyer, signed.price_units, signed.creator,
                tuple(signed.validators), signed.expires_at_ms, reply.model_dump_json(),
            )
        )  # fmt: skip
        return reply

    def quote_lookup(self, quote_id: str, buyer: str) -> MarketQuote:
        """A quote the buyer was given, as it was given (the signature still checks)."""
        found = self.catalog.quote(quote_id)
        if found is None or found.buyer != buyer:
            msg = f"no quote {quote_id!r} was given to you: ask for a quote"
            raise NotFound(msg, details={"quote_id": quote_id})
        return MarketQuote.model_validate_json(found.reply_json)

    def use(self, request: UseRequest, buyer: str, request_id: str) -> Delivery:
        """Deliver the listing in `request.model`'s space once its price is paid (see module)."""
        model = self.registry.get(request.model).name
        done = self.catalog.use(buyer, request_id)
        if done is not None:
            if (done.listing_id, done.model) != (request.listing_id, model):
                msg = f"request id {request_id!r} was used for another use: choose a new one"
                raise Conflict(msg, details={"listing_id": done.listing_id})
            delivery = self._finish(done)
            self._release(request.reservation_id, buyer, keep=done.reservation_id)
            return delivery
        row = self._listed(request.listing_id)
        if row.market is AssetType.CAPABILITY:
            bought = self.catalog.purchase(buyer, row.listing_id)
            if bought is not None:  # per purchase: bought once, used again for free
                delivery = self._deliver(row, model, request.min_quality, None, 0)
                self._release(request.reservation_id, buyer)
                return delivery
        quote = self._quote_for(request, row, buyer)
        terms = Terms(quote.price_units, quote.creator, quote.validators)
        payment = self.payments.open(terms, request.reservation_id, buyer, request_id)
        try:
            delivery = self._deliver(
                row, model, request.min_quality, payment.reservation_id, quote.price_units
            )
        except ProtocolError:
            self.payments.void(payment, now=True)
            raise
        digest = self.blobs.put(pack(delivery))
        self.catalog.record_use(
            UseRow(
                buyer,
                request_id,
                row.listing_id,
                model,
                payment.reservation_id,
                quote.price_units,
                digest,
                UseState.DELIVERED,
                self.clock(),
            )
        )
        return self._post(buyer, request_id, payment, delivery)

    def _release(self, reservation_id: str | None, buyer: str, keep: str | None = None) -> None:
        """Void a reservation the buyer made for nothing (a retry of a finished use, a
        capability already bought), once the ledger shows it is the buyer's and pending."""
        if reservation_id is None or reservation_id == keep:
            return
        try:
            held = self.payments.ledger.reservation(reservation_id)
        except ProtocolError:  # unknown, or the ledger away: it expires by itself
            return
        if held.payer == buyer and held.status == "pending":
            digest = hashlib.sha256(f"{buyer}\x1f{reservation_id}".encode()).hexdigest()[:40]
            self.payments.void(Payment(reservation_id, "", f"market-release-{digest}"), now=True)

    def _quote_for(self, request: UseRequest, row: ListingRow, buyer: str) -> QuoteRow:
        if request.quote_id is None:
            msg = "a use needs a quote: ask for one (quote), reserve its price, then use"
            raise InvalidRequest(msg, details={"field": "quote_id"})
        quote = self.catalog.quote(request.quote_id)
        if quote is None or quote.buyer != buyer or quote.listing_id != row.listing_id:
            msg = f"no quote {request.quote_id!r} of this listing for you: ask for a quote"
            raise NotFound(msg, details={"quote_id": request.quote_id})
        return quote

    def _post(self, buyer: str, request_id: str, payment: Payment, delivery: Delivery) -> Delivery:
        """Post the use's reservation; a reservation closed meanwhile voids the use."""
        try:
            self.payments.post(payment)
        except ReservationClosed:
            self.catalog.close_use(buyer, request_id, UseState.VOIDED)
            raise
        self.catalog.close_use(buyer, request_id, UseState.POSTED)
        return delivery

    def _finish(self, done: UseRow) -> Delivery:
        """A retried use: the stored delivery, paid (posting again if the post never landed)."""
        delivery = _delivery(unpack(self.blobs.get(done.delivery_digest)).message)
        if done.state is UseState.VOIDED:
            msg = "this use was voided (its reservation closed before it was paid): use again"
            raise ReservationClosed(msg, details={"reservation_id": done.reservation_id})
        if done.state is UseState.DELIVERED and done.reservation_id is not None:
            post_id, void_id = settlement_event_ids(done.buyer, done.request_id)
            payment = Payment(done.reservation_id, post_id, void_id)
            return self._post(done.buyer, done.request_id, payment, delivery)
        return delivery

    def recover(self) -> int:
        """Complete the uses a crash left delivered but unposted (at worker start): each is
        posted, or voided when its reservation closed meanwhile. How many were settled."""
        settled = 0
        for done in self.catalog.delivered_uses():
            with contextlib.suppress(ReservationClosed):
                self._finish(done)
            settled += 1
        return settled

    def _deliver(
        self,
        row: ListingRow,
        model: str,
        min_quality: float | None,
        reservation_id: str | None,
        charged: int,
    ) -> Delivery:
        """The listing's payload in `model`'s space (alignment through the aligner)."""
        payload = unpack(self.blobs.get(row.payload_digest)).message
        if isinstance(payload, KVCache):
            cache, quality = self.aligner.align_kv(payload, model, min_quality=min_quality)
            return MemoryDelivery(
                listing_id=row.listing_id,
                kv_cache=cache,
                quality=quality,
                charged_units=charged,
                reservation_id=reservation_id,
            )
        if isinstance(payload, ReasoningChain):
            chain, weakest = self._align_chain(payload, model, min_quality)
            return ReasoningDelivery(
                listing_id=row.listing_id,
                chain=chain,
                quality=weakest,
                charged_units=charged,
                reservation_id=reservation_id,
            )
        if isinstance(payload, PublishCapabilityRequest):
            vector, vector_quality = self._align_vector(
                payload.embedding, row.source_model, model, min_quality
            )
            return CapabilityDelivery(
                listing_id=row.listing_id,
                model=model,
                embedding=vector,
                quality=vector_quality,
                charged_units=charged,
                reservation_id=reservation_id,
            )
        raise NotFound(f"listing {row.listing_id!r} holds no deliverable payload")

    def _align_chain(
        self, chain: ReasoningChain, model: str, min_quality: float | None
    ) -> tuple[ReasoningChain, AlignmentQuality | None]:
        """Every step's snapshots in `model`'s space; the text stays as written."""
        steps: list[ReasoningStep] = []
        qualities: list[AlignmentQuality] = []
        for step in chain.steps:
            cache, hidden = step.kv_cache, step.hidden_state
            if cache is not None:
                cache, quality = self.aligner.align_kv(cache, model, min_quality=min_quality)
                qualities.append(quality)
            if hidden is not None:
                hidden, vector_quality = self._align_vector(hidden, chain.model, model, min_quality)
                if vector_quality is not None:
                    qualities.append(vector_quality)
            steps.append(ReasoningStep(text=step.text, tokens=step.tokens, kv_cache=cache,
                                       hidden_state=hidden))  # fmt: skip
        weakest = min(qualities, key=lambda q: q.information_retention, default=None)
        return ReasoningChain(model=model, steps=tuple(steps)), weakest

    def _align_vector(
        self, vector: npt.NDArray[Any], source: str, target: str, min_quality: float | None
    ) -> tuple[npt.NDArray[np.float32], AlignmentQuality | None]:
        """A vector in `target`'s space; one of the same model is delivered as it is (nothing
        aligned, so no quality is claimed for it)."""
        if self.registry.get(source).name == target:
            return np.asarray(vector, np.float32), None
        aligned, quality = self.aligner.align_vector(np.asarray(vector, np.float32), source, target)
        if quality is not None:
            require_retention(quality, min_quality, maps=f"{source} -> {target} (vectors)")
        return aligned, quality

    # ------------------------------------------------------------------- long-term memory

    def remember(self, request: RememberRequest, owner: str, now_ms: int) -> MemoryRecord:
        if request.kv_cache is not None:
            self._check_cache(request.kv_cache)
        payload = None if request.kv_cache is None else pack(request.kv_cache)
        embedding = None if request.embedding is None else np.asarray(request.embedding,
                                                                       np.float32)  # fmt: skip
        row = self.catalog.remember(
            f"mem-{uuid.uuid4().hex}", owner, text=request.text, tags=request.tags,
            embedding=embedding, payload=payload, created_ms=now_ms,
        )  # fmt: skip
        return _memory(row, None)

    def recall(self, request: RecallRequest, owner: str) -> RecallReply:
        embedding = None if request.embedding is None else np.asarray(request.embedding,
                                                                       np.float32)  # fmt: skip
        rows = self.catalog.recall(owner, request.k, text=request.q, embedding=embedding)
        ranked = "embedding" if embedding is not None else "text" if request.q else "recency"
        memories = []
        for row in rows:
            cache = None
            if request.with_kv and row.payload_digest is not None:
                cache = unpack(self.blobs.get(row.payload_digest)).message
            memories.append(_memory(row, cache if isinstance(cache, KVCache) else None))
        return RecallReply(memories=tuple(memories), ranked_by=ranked)


def _delivery(message: BaseModel) -> Delivery:
    if isinstance(message, MemoryDelivery | ReasoningDelivery | CapabilityDelivery):
        return message
    raise InvalidRequest(f"a stored delivery is a {type(message).__name__}")


def _offset(cursor: str | None) -> int:
    if cursor is None:
        return 0
    digits = cursor.removeprefix(CURSOR_PREFIX)
    if not cursor.startswith(CURSOR_PREFIX) or not digits.isdigit() or int(digits) > OFFSET_MAX:
        msg = f"not a cursor of this search (pages end after {OFFSET_MAX} results)"
        raise InvalidRequest(msg, details={"field": "cursor"})
    return int(digits)


def _listing(row: ListingRow) -> Listing:
    return Listing(
        listing_id=row.listing_id, market=row.market, creator=row.creator, title=row.title,
        description=row.description, tags=row.tags, source_model=row.source_model,
        tokens=row.tokens, payload_bytes=row.payload_bytes, quality=row.quality,
        attestations=row.attestations, validators=row.validators,
        similar_listings=row.similar, reputation=row.reputation, uses=row.uses,
        price_units=row.price_units, created_at_ms=row.created_ms, withdrawn=row.withdrawn,
        score=row.score,
    )  # fmt: skip


def _memory(row: MemoryRow, cache: KVCache | None) -> MemoryRecord:
    return MemoryRecord(
        memory_id=row.memory_id, text=row.text, tags=row.tags, created_at_ms=row.created_ms,
        payload_bytes=row.payload_bytes, has_embedding=row.has_embedding,
        has_kv_cache=row.payload_digest is not None, score=row.score, kv_cache=cache,
    )  # fmt: skip


__all__ = ["Aligner", "MarketPolicy", "MarketService", "Quoter"]
