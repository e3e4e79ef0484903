"""The market catalog's logic, written once over SQL that SQLite and PostgreSQL both run:
listings (with a text index), creators' reputation, attestations, quotes, uses keyed by
(buyer, request id), purchases and long-term memories. Payloads live in the blob store.

Every change is one transaction: after a crash a use is recorded with its delivery or not at
all. A backend (`sqlite.py`, `postgres.py`) brings the connection and the text index.
"""

# S608: the only text formatted into queries is fixed column lists, fixed clauses and "?"
# placeholders; every value a caller gives is a bound parameter.
# ruff: noqa: S608

from __future__ import annotations

import dataclasses
import json
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any, ClassVar, Final, Protocol

import numpy as np
import numpy.typing as npt

from latentmas_mesh.catalog._types import (
    ListingFilters,
    ListingRow,
    MemoryRow,
    NewListing,
    Quotas,
    QuoteRow,
    UseRow,
    UseState,
)
from latentmas_mesh.catalog.blobs import BlobStore
from latentmas_mesh.errors import InvalidRequest, QuotaExceeded
from latentmas_mesh.market import reputation
from latentmas_mesh.units import VALIDATORS_MAX, AssetType

QUERY_TERMS_MAX: Final = 16
TEXT_CANDIDATES_MIN: Final = 200
TEXT_CANDIDATES_MAX: Final = 1 << 20
QUOTES_KEPT_MS: Final = 60 * 60 * 1000
"""A quote is kept this long past its deadline (a reservation made with it outlives it)."""
QUOTES_PURGED_MAX: Final = 64
_TERM = re.compile(r"\w+", re.UNICODE)

_LISTING_COLUMNS: Final = (
    "l.listing_id, l.market, l.creator, l.title, l.description, l.tags, l.source_model,"
    " l.tokens, l.payload_digest, l.payload_bytes, l.embedding_dim, l.similar_count, l.price_units,"
    " l.quality, l.attestations, l.uses, l.created_ms, l.withdrawn, c.reputation"
)
_LISTING_FROM: Final = "listings l JOIN creators c ON c.creator = l.creator"


TABLES: Final = """
CREATE TABLE IF NOT EXISTS listings (
    seq {serial},
    listing_id TEXT NOT NULL UNIQUE,
    market TEXT NOT NULL,
    creator TEXT NOT NULL,
    title TEXT NOT NULL,
    description TEXT NOT NULL,
    tags TEXT NOT NULL,
    source_model TEXT NOT NULL,
    tokens {int} NOT NULL,
    payload_digest TEXT NOT NULL,
    payload_bytes {int} NOT NULL,
    embedding {blob},
    embedding_dim {int},
    fingerprint {blob},
    fingerprint_dim {int},
    similar_count {int} NOT NULL,
    price_units {int} NOT NULL,
    quality {real} NOT NULL DEFAULT 0,
    quality_sum {real} NOT NULL DEFAULT 0,
    attestations {int} NOT NULL DEFAULT 0,
    uses {int} NOT NULL DEFAULT 0,
    created_ms {int} NOT NULL,
    withdrawn {int} NOT NULL DEFAULT 0{listing_text}
);
CREATE INDEX IF NOT EXISTS listings_market ON listings (market, withdrawn, created_ms);
CREATE INDEX IF NOT EXISTS listings_creator ON listings (creator);
CREATE INDEX IF NOT EXISTS listings_payload ON listings (payload_digest);
CREATE TABLE IF NOT EXISTS listing_changes (
    id {int} PRIMARY KEY CHECK (id = 1),
    version {int} NOT NULL
);
INSERT INTO listing_changes (id, version) VALUES (1, 0) ON CONFLICT DO NOTHING;
CREATE TABLE IF NOT EXISTS creators (
    creator TEXT PRIMARY KEY,
    quality_sum {real} NOT NULL DEFAULT 0,
    attestations {int} NOT NULL DEFAULT 0,
    uses {int} NOT NULL DEFAULT 0,
    reputation {real} NOT NULL
);
CREATE TABLE IF NOT EXISTS attestations (
    listing_id TEXT NOT NULL,
    validator TEXT NOT NULL,
    model TEXT NOT NULL,
    quality {real} NOT NULL,
    method TEXT NOT NULL,
    at_ms {int} NOT NULL,
    PRIMARY KEY (listing_id, validator)
);
CREATE TABLE IF NOT EXISTS quotes (
    quote_id TEXT PRIMARY KEY,
    listing_id TEXT NOT NULL,
    buyer TEXT NOT NULL,
    price_units {int} NOT NULL,
    creator TEXT NOT NULL,
    validators TEXT NOT NULL,
    expires_ms {int} NOT NULL,
    reply_json TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS quotes_expiry ON quotes (expires_ms);
CREATE TABLE IF NOT EXISTS uses (
    buyer TEXT NOT NULL,
    request_id TEXT NOT NULL,
    listing_id TEXT NOT NULL,
    model TEXT NOT NULL,
    reservation_id TEXT,
    charged_units {int} NOT NULL,
    delivery_digest TEXT NOT NULL,
    state TEXT NOT NULL,
    at_ms {int} NOT NULL,
    PRIMARY KEY (buyer, request_id)
);
CREATE INDEX IF NOT EXISTS uses_state ON uses (state);
CREATE INDEX IF NOT EXISTS uses_delivery ON uses (delivery_digest);
CREATE TABLE IF NOT EXISTS purchases (
    buyer TEXT NOT NULL,
    listing_id TEXT NOT NULL,
    request_id TEXT NOT NULL,
    PRIMARY KEY (buyer, listing_id)
);
CREATE TABLE IF NOT EXISTS memories (
    seq {serial},
    memory_id TEXT NOT NULL UNIQUE,
    owner TEXT NOT NULL,
    text TEXT NOT NULL,
    tags TEXT NOT NULL,
    embedding {blob},
    embedding_dim {int},
    payload_digest TEXT,
    payload_bytes {int} NOT NULL,
    created_ms {int} NOT NULL{memory_text}
);
CREATE INDEX IF NOT EXISTS memories_owner ON memories (owner, created_ms);
CREATE INDEX IF NOT EXISTS memories_payload ON memories (payload_digest);
"""
"""The catalog's tables in both engines' SQL; a backend fills in its types and its text
index (`tables(...)`)."""


def tables(
    *, serial: str, int_: str, real: str, blob: str, listing_text: str = "", memory_text: str = ""
) -> str:
    """The statements creating the catalog's tables with the engine's own column types."""
    return TABLES.format(serial=serial, int=int_, real=real, blob=blob,
                         listing_text=listing_text, memory_text=memory_text)  # fmt: skip


class Cursor(Protocol):
    def fetchone(self) -> Any: ...  # noqa: ANN401 (a row of the engine's types)
    def fetchall(self) -> list[Any]: ...


class Db(Protocol):
    """A write transaction: `execute` takes SQL with `?` placeholders."""

    def execute(self, sql: str, parameters: Sequence[object] = ...) -> Cursor: ...


def query_terms(text: str) -> list[str]:
    """A user's words (letters and digits), at most QUERY_TERMS_MAX; InvalidRequest if none."""
    terms = _TERM.findall(text.lower())[:QUERY_TERMS_MAX]
    if not terms:
        raise InvalidRequest("the text query has no words to search for", details={"field": "q"})
    return terms


class SqlCatalog(ABC):
    """The catalog's logic over a SQL backend (`SqliteCatalog`, `PostgresCatalog`): SQL is
    written once with `?` placeholders and the upsert / RETURNING forms both engines speak;
    a backend supplies the connection, its transactions, and the text index."""

    lock_suffix: ClassVar[str] = ""
    """Appended to a read that a transaction then writes back (row locks where writers race)."""

    def __init__(self, blobs: BlobStore, quotas: Quotas | None) -> None:
        self.blobs = blobs
        self.quotas = quotas or Quotas()
        self._vectors: dict[tuple[str, int], tuple[int, list[str], npt.NDArray[np.float32]]] = {}

    @abstractmethod
    def close(self) -> None:
        raise NotImplementedError

    @abstractmethod
    def _transaction(self) -> AbstractContextManager[Db]:
        """One write transaction; its `execute(sql, parameters)` answers a cursor."""
        raise NotImplementedError

    @abstractmethod
    def _read(self, sql: str, parameters: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        raise NotImplementedError

    @abstractmethod
    def _index_listing(self, db: Db, seq: int, listing: NewListing) -> None:
        """Index a new listing's text (the engine may do it by itself)."""

    @abstractmethod
    def _index_memory(self, db: Db, seq: int, text: str, tags: str) -> None:
        """Index a new memory's text."""

    @abstractmethod
    def _unindex_memory(self, db: Db, seq: int, text: str, tags: str) -> None:
        """Drop a forgotten memory from the text index."""

    @abstractmethod
    def _text_query(self, text: str) -> str:
        """The engine's query for a user's words (no input is a syntax error)."""
        raise NotImplementedError

    @abstractmethod
    def _listing_hits(self) -> str:
        """SQL of (seq, relevance), best first, for `?` = the text query, `?` = how many."""
        raise NotImplementedError

    @abstractmethod
    def _memory_hits(self) -> str:
        """SQL of (seq, relevance) of one owner's memories for `?` = query, `?` = owner."""
        raise NotImplementedError

    # ------------------------------------------------------------------------- listings

    def add_listing(
        self,
        listing: NewListing,
        *,
        embedding: npt.NDArray[np.float32] | None,
        fingerprint: npt.NDArray[np.float32] | None,
    ) -> None:
        """Write a new listing and index its text (its payload is in the blob store already)."""
        self.add_listings([(listing, embedding, fingerprint)])

    def add_listings(
        self,
        listings: Sequence[
            tuple[NewListing, npt.NDArray[np.float32] | None, npt.NDArray[np.float32] | None]
        ],
    ) -> None:
        """Write listings (each with its embedding and fingerprint) in one transaction: all of
        them or none, each creator within its quota."""
        with self._transaction() as db:
            counts: dict[str, int] = {}
            for listing, _, _ in listings:
                if listing.creator not in counts:
                    (counts[listing.creator],) = db.execute(
                        "SELECT count(*) FROM listings WHERE creator = ? AND withdrawn = 0",
                        (listing.creator,),
                    ).fetchone()
                counts[listing.creator] += 1
                if counts[listing.creator] > self.quotas.listings_max:
                    msg = f"a creator may keep at most {self.quotas.listings_max} listings"
                    raise QuotaExceeded(msg, details={"listings_max": self.quotas.listings_max})
            for listing, embedding, fingerprint in listings:
                self._insert_listing(db, listing, embedding, fingerprint)
            _changed(db)

    def _insert_listing(
        self,
        db: Db,
        listing: NewListing,
        embedding: npt.NDArray[np.float32] | None,
        fingerprint: npt.NDArray[np.float32] | None,
    ) -> None:
        (seq,) = db.execute(
            "INSERT INTO listings (listing_id, market, creator, title, description, tags,"
            " source_model, tokens, payload_digest, payload_bytes, embedding, embedding_dim,"
            " fingerprint, fingerprint_dim, similar_count, price_units, created_ms)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING seq",
            (
                listing.listing_id, listing.market.value, listing.creator, listing.title,
                listing.description, " ".join(listing.tags), listing.source_model,
                listing.tokens, listing.payload_digest, listing.payload_bytes,
                _blob(embedding), _dim(embedding), _blob(fingerprint), _dim(fingerprint),
                listing.similar, listing.price_units, listing.created_ms,
            ),
        ).fetchone()  # fmt: skip
        self._index_listing(db, seq, listing)
        db.execute(
            "INSERT INTO creators (creator, reputation) VALUES (?, ?) ON CONFLICT DO NOTHING",
            (listing.creator, reputation(0.0, 0, 0)),
        )

    def fingerprints(self, market: AssetType, model: str, dim: int) -> npt.NDArray[np.float32]:
        """Unit fingerprints [n, dim] of the listed (not withdrawn) assets of `model`."""
        rows = self._read(
            "SELECT fingerprint FROM listings WHERE market = ? AND source_model = ?"
            " AND fingerprint_dim = ? AND withdrawn = 0",
            (market.value, model, dim),
        )
        if not rows:
            return np.zeros((0, dim), np.float32)
        return np.stack([np.frombuffer(row[0], np.float32) for row in rows])

    def same_payloads(self, market: AssetType, digest: str) -> int:
        """Listed assets with exactly this payload."""
        ((count,),) = self._read(
            "SELECT count(*) FROM listings WHERE market = ? AND payload_digest = ?"
            " AND withdrawn = 0",
            (market.value, digest),
        )
        return int(count)

    def listing(self, listing_id: str) -> ListingRow | None:
        rows = self._read(
            f"SELECT {_LISTING_COLUMNS} FROM {_LISTING_FROM} WHERE l.listing_id = ?",
            (listing_id,),
        )
        return self._listing_rows(rows)[0] if rows else None

    def withdraw(self, listing_id: str) -> None:
        with self._transaction() as db:
            db.execute("UPDATE listings SET withdrawn = 1 WHERE listing_id = ?", (listing_id,))
            _changed(db)

    def set_price(self, listing_id: str, price_units: int) -> None:
        with self._transaction() as db:
            db.execute(
                "UPDATE listings SET price_units = ? WHERE listing_id = ?",
                (price_units, listing_id),
            )

    def search(
        self,
        market: AssetType,
        *,
        text: str | None = None,
        embedding: npt.NDArray[np.float32] | None = None,
        filters: ListingFilters | None = None,
        offset: int = 0,
        limit: int = 20,
    ) -> tuple[list[ListingRow], bool]:
        """One page of listed assets, best first, and whether more follow.

        Ranking: by text (every word, stemmed), the best candidates by FTS5's BM25, reranked by
        BM25 x (0.5 + the creator's reputation); by embedding, the cosine to it (exact, over
        every listed asset of that dimension); otherwise reputation, then the newest first.
        """
        kept = filters or ListingFilters()
        if embedding is not None:
            return self._search_vector(market, embedding, kept, offset, limit)
        where = ["l.market = ?", "l.withdrawn = 0"]
        parameters: list[object] = [market.value]
        for clause, value in kept.clauses():
            where.append(clause)
            parameters.append(value)
        if text is not None:
            return self._search_text(self._text_query(text), where, parameters, offset, limit)
        sql = (
            f"SELECT {_LISTING_COLUMNS}, c.reputation AS score FROM {_LISTING_FROM}"
            f" WHERE {' AND '.join(where)}"
            " ORDER BY score DESC, l.seq DESC LIMIT ? OFFSET ?"
        )
        rows = self._read(sql, [*parameters, limit + 1, offset])
        found = self._listing_rows([row[:-1] for row in rows], [float(row[-1]) for row in rows])
        return found[:limit], len(found) > limit

    def _search_text(
        self, query: str, where: list[str], parameters: list[object], offset: int, limit: int
    ) -> tuple[list[ListingRow], bool]:
        """The best `candidates` by BM25 (FTS5's own ranked scan, in C), then filtered and
        reranked by BM25 x (0.5 + the creator's reputation); widened when filters leave too few.
        Ranking every match in SQL instead cost a query with a very common word ~20x more."""
        candidates = max(TEXT_CANDIDATES_MIN, 4 * (offset + limit + 1))
        sql = (
            f"WITH hits AS MATERIALIZED ({self._listing_hits()})"
            f" SELECT {_LISTING_COLUMNS}, hits.relevance * (0.5 + c.reputation) AS score"
            " FROM hits JOIN listings l ON l.seq = hits.seq"
            f" JOIN creators c ON c.creator = l.creator WHERE {' AND '.join(where)}"
            " ORDER BY score DESC, l.seq DESC LIMIT ? OFFSET ?"
        )
        while True:
            rows = self._read(sql, [query, candidates, *parameters, limit + 1, offset])
            if len(rows) > limit or candidates >= TEXT_CANDIDATES_MAX:
                break
            (hits,) = self._read(f"SELECT count(*) FROM ({self._listing_hits()}) h",
                                 (query, candidates))[0]  # fmt: skip
            if hits < candidates:  # every match was a candidate: this is the whole answer
                break
            candidates = min(TEXT_CANDIDATES_MAX, candidates * 4)
        found = self._listing_rows([row[:-1] for row in rows], [float(row[-1]) for row in rows])
        return found[:limit], len(found) > limit

    def _search_vector(
        self,
        market: AssetType,
        embedding: npt.NDArray[np.float32],
        filters: ListingFilters,
        offset: int,
        limit: int,
    ) -> tuple[list[ListingRow], bool]:
        ids, matrix = self._vector_index(market, int(embedding.shape[0]))
        if not ids:
            return [], False
        query = embedding.astype(np.float32) / max(float(np.linalg.norm(embedding)), 1e-30)
        scores = matrix @ query
        wanted = offset + limit + 1
        found: list[ListingRow] = []
        considered = 0
        width = min(len(ids), max(4 * wanted, 64))
        while True:  # the best `width` by score, exactly; wider only when filters reject many
            best = np.argpartition(-scores, width - 1)[:width] if width < len(ids) else (
                np.arange(len(ids)))  # fmt: skip
            best = best[np.lexsort((best, -scores[best]))][considered:]
            for start in range(0, len(best), max(wanted, 16)):  # rows read a page at a time
                chunk = best[start : start + max(wanted, 16)]
                rows = {row.listing_id: row for row in self._listings([ids[i] for i in chunk])}
                for i in chunk:
                    row = rows.get(ids[i])
                    if row is not None and filters.passes(row):
                        found.append(_scored(row, float(scores[i])))
                if len(found) >= wanted:
                    break
            considered = width
            if len(found) >= wanted or width == len(ids):
                break
            width = min(len(ids), width * 4)
        page = found[offset : offset + limit]
        return page, len(found) > offset + limit

    def _vector_index(self, market: AssetType, dim: int) -> tuple[list[str], npt.NDArray[Any]]:
        """Listed ids and unit embeddings [n, dim], kept in memory until a listing changes."""
        ((version,),) = self._read("SELECT version FROM listing_changes WHERE id = 1")
        cached = self._vectors.get((market.value, dim))
        if cached is not None and cached[0] == version:
            return cached[1], cached[2]
        rows = self._read(
            "SELECT listing_id, embedding FROM listings WHERE market = ? AND embedding_dim = ?"
            " AND withdrawn = 0 ORDER BY seq",
            (market.value, dim),
        )
        ids = [row[0] for row in rows]
        matrix = (
            np.stack([np.frombuffer(row[1], np.float32) for row in rows])
            if rows
            else np.zeros((0, dim), np.float32)
        )
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        matrix = (matrix / np.maximum(norms, 1e-30)).astype(np.float32)
        self._vectors[(market.value, dim)] = (version, ids, matrix)
        return ids, matrix

    def _listings(self, listing_ids: list[str]) -> list[ListingRow]:
        marks = ",".join("?" * len(listing_ids))
        rows = self._read(
            f"SELECT {_LISTING_COLUMNS} FROM {_LISTING_FROM} WHERE l.listing_id IN ({marks})",
            listing_ids,
        )
        return self._listing_rows(rows)

    def _listing_rows(
        self, rows: Sequence[Sequence[Any]], scores: Sequence[float] | None = None
    ) -> list[ListingRow]:
        """Rows of `_LISTING_COLUMNS` as ListingRows, their validators read in one query."""
        ids = [row[0] for row in rows]
        validators: dict[str, list[str]] = {listing_id: [] for listing_id in ids}
        if ids:
            marks = ",".join("?" * len(ids))
            for listing_id, validator in self._read(
                f"SELECT listing_id, validator FROM attestations WHERE listing_id IN ({marks})"
                " ORDER BY listing_id, validator", ids,
            ):  # fmt: skip
                if len(validators[listing_id]) < VALIDATORS_MAX:
                    validators[listing_id].append(validator)
        return [
            _listing_row(row, tuple(validators[row[0]]), None if scores is None else scores[i])
            for i, row in enumerate(rows)
        ]

    def attest(
        self, listing_id: str, validator: str, *, model: str, quality: float, method: str,
        at_ms: int,
    ) -> float:  # fmt: skip
        """Store (or replace) `validator`'s attestation; the listing's new mean quality."""
        with self._transaction() as db:
            db.execute(
                f"SELECT 1 FROM listings WHERE listing_id = ?{self.lock_suffix}", (listing_id,)
            ).fetchone()
            previous = db.execute(
                "SELECT quality FROM attestations WHERE listing_id = ? AND validator = ?",
                (listing_id, validator),
            ).fetchone()
            db.execute(
                "INSERT INTO attestations VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (listing_id, validator) DO UPDATE SET model = excluded.model,"
                " quality = excluded.quality, method = excluded.method, at_ms = excluded.at_ms",
                (listing_id, validator, model, quality, method, at_ms),
            )
            added = quality - (previous[0] if previous else 0.0)
            fresh = 0 if previous else 1
            db.execute(
                "UPDATE listings SET quality_sum = quality_sum + ?,"
                " attestations = attestations + ?,"
                " quality = (quality_sum + ?) / (attestations + ?) WHERE listing_id = ?",
                (added, fresh, added, fresh, listing_id),
            )
            (creator, mean) = db.execute(
                "SELECT creator, quality FROM listings WHERE listing_id = ?", (listing_id,)
            ).fetchone()
            db.execute(
                "UPDATE creators SET quality_sum = quality_sum + ?,"
                " attestations = attestations + ? WHERE creator = ?",
                (added, fresh, creator),
            )
            self._refresh_reputation(db, creator)
        return float(mean)

    @staticmethod
    def _refresh_reputation(db: Db, creator: str) -> None:
        quality_sum, attestations, uses = db.execute(
            "SELECT quality_sum, attestations, uses FROM creators WHERE creator = ?", (creator,)
        ).fetchone()
        db.execute(
            "UPDATE creators SET reputation = ? WHERE creator = ?",
            (reputation(quality_sum, attestations, uses), creator),
        )

    # ---------------------------------------------------------------------- quotes, uses

    def add_quote(self, quote: QuoteRow) -> None:
        """Keep a quote for the use it may pay; quotes expired over QUOTES_KEPT_MS before this
        one's deadline are deleted, QUOTES_PURGED_MAX per call, so the table stays bounded by
        the quotes of the last hour however many are asked."""
        with self._transaction() as db:
            db.execute(
                "INSERT INTO quotes VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                (quote.quote_id, quote.listing_id, quote.buyer, quote.price_units, quote.creator,
                 json.dumps(list(quote.validators)), quote.expires_ms, quote.reply_json),
            )  # fmt: skip
            db.execute(
                "DELETE FROM quotes WHERE quote_id IN (SELECT quote_id FROM quotes"
                " WHERE expires_ms < ? ORDER BY expires_ms LIMIT ?)",
                (quote.expires_ms - QUOTES_KEPT_MS, QUOTES_PURGED_MAX),
            )

    def quote(self, quote_id: str) -> QuoteRow | None:
        rows = self._read("SELECT * FROM quotes WHERE quote_id = ?", (quote_id,))
        if not rows:
            return None
        q = rows[0]
        return QuoteRow(q[0], q[1], q[2], q[3], q[4], tuple(json.loads(q[5])), q[6], q[7])

    def use(self, buyer: str, request_id: str) -> UseRow | None:
        rows = self._read(
            "SELECT * FROM uses WHERE buyer = ? AND request_id = ?", (buyer, request_id)
        )
        return _use_row(rows[0]) if rows else None

    def purchase(self, buyer: str, listing_id: str) -> UseRow | None:
        """The paid use by which `buyer` bought `listing_id` (a capability), if any."""
        rows = self._read(
            "SELECT u.* FROM purchases p JOIN uses u ON u.buyer = p.buyer"
            " AND u.request_id = p.request_id WHERE p.buyer = ? AND p.listing_id = ?",
            (buyer, listing_id),
        )
        return _use_row(rows[0]) if rows else None

    def record_use(self, use: UseRow) -> None:
        """The delivery is stored: record the use before its post is sent."""
        with self._transaction() as db:
            db.execute(
                "INSERT INTO uses VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (use.buyer, use.request_id, use.listing_id, use.model, use.reservation_id,
                 use.charged_units, use.delivery_digest, use.state.value, use.at_ms),
            )  # fmt: skip

    def close_use(self, buyer: str, request_id: str, state: UseState) -> None:
        """POSTED (counts the use, records a purchase) or VOIDED; a closed use stays closed."""
        with self._transaction() as db:
            row = db.execute(
                "SELECT listing_id, state FROM uses WHERE buyer = ? AND request_id = ?"
                f"{self.lock_suffix}",
                (buyer, request_id),
            ).fetchone()
            if row is None or row[1] != UseState.DELIVERED.value:
                return
            listing_id = row[0]
            db.execute(
                "UPDATE uses SET state = ? WHERE buyer = ? AND request_id = ?",
                (state.value, buyer, request_id),
            )
            if state is not UseState.POSTED:
                return
            db.execute("UPDATE listings SET uses = uses + 1 WHERE listing_id = ?", (listing_id,))
            (creator, market) = db.execute(
                "SELECT creator, market FROM listings WHERE listing_id = ?", (listing_id,)
            ).fetchone()
            db.execute("UPDATE creators SET uses = uses + 1 WHERE creator = ?", (creator,))
            self._refresh_reputation(db, creator)
            if market == AssetType.CAPABILITY.value:
                db.execute(
                    "INSERT INTO purchases VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
                    (buyer, listing_id, request_id),
                )

    def delivered_uses(self) -> list[UseRow]:
        """Uses whose delivery is stored but whose post was never confirmed (a crash)."""
        rows = self._read("SELECT * FROM uses WHERE state = ?", (UseState.DELIVERED.value,))
        return [_use_row(row) for row in rows]

    # ------------------------------------------------------------------- long-term memory

    def remember(
        self,
        memory_id: str,
        owner: str,
        *,
        text: str,
        tags: tuple[str, ...],
        embedding: npt.NDArray[np.float32] | None,
        payload: bytes | None,
        created_ms: int,
    ) -> MemoryRow:
        """Append a memory within the owner's quotas (QuotaExceeded: nothing written)."""
        size = len(text.encode()) + (0 if payload is None else len(payload))
        size += 0 if embedding is None else embedding.nbytes
        with self._transaction() as db:
            if self.lock_suffix:  # one writer per owner at a time: the quota holds
                db.execute("SELECT pg_advisory_xact_lock(hashtext(?))", (owner,))
            count, used = db.execute(
                "SELECT count(*), coalesce(sum(payload_bytes), 0) FROM memories WHERE owner = ?",
                (owner,),
            ).fetchone()
            if count >= self.quotas.memories_max or used + size > self.quotas.memory_bytes_max:
                msg = (
                    f"long-term memory is full: {count} memories, {used} bytes of"
                    f" {self.quotas.memories_max} memories, {self.quotas.memory_bytes_max} bytes"
                )
                raise QuotaExceeded(msg, details={
                    "memories": count, "bytes": used, "memories_max": self.quotas.memories_max,
                    "bytes_max": self.quotas.memory_bytes_max, "this_memory_bytes": size,
                })  # fmt: skip
            digest = None if payload is None else self.blobs.put(payload)
            (seq,) = db.execute(
                "INSERT INTO memories (memory_id, owner, text, tags, embedding, embedding_dim,"
                " payload_digest, payload_bytes, created_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " RETURNING seq",
                (memory_id, owner, text, " ".join(tags), _blob(embedding), _dim(embedding),
                 digest, size, created_ms),
            ).fetchone()  # fmt: skip
            self._index_memory(db, seq, text, " ".join(tags))
        return MemoryRow(memory_id, owner, text, tags, digest, size, embedding is not None,
                         created_ms)  # fmt: skip

    def recall(
        self,
        owner: str,
        k: int,
        *,
        text: str | None = None,
        embedding: npt.NDArray[np.float32] | None = None,
    ) -> list[MemoryRow]:
        """The owner's memories: nearest `embedding` (cosine), best `text` match (BM25), or the
        newest first."""
        columns = ("m.memory_id, m.owner, m.text, m.tags, m.payload_digest, m.payload_bytes,"
                   " m.embedding_dim, m.created_ms")  # fmt: skip
        if embedding is not None:
            rows = self._read(
                f"SELECT {columns}, m.embedding FROM memories m"
                " WHERE m.owner = ? AND m.embedding_dim = ?",
                (owner, int(embedding.shape[0])),
            )
            if not rows:
                return []
            matrix = np.stack([np.frombuffer(row[-1], np.float32) for row in rows])
            norms = np.maximum(np.linalg.norm(matrix, axis=1), 1e-30)
            scores = matrix @ embedding / norms / max(float(np.linalg.norm(embedding)), 1e-30)
            best = np.argsort(-scores, kind="stable")[:k]
            return [_memory_row(rows[i][:-1], float(scores[i])) for i in best]
        if text is not None:
            rows = self._read(
                f"WITH hits AS MATERIALIZED ({self._memory_hits()})"
                f" SELECT {columns}, hits.relevance FROM hits JOIN memories m ON m.seq = hits.seq"
                " ORDER BY hits.relevance DESC, m.seq DESC LIMIT ?",
                (self._text_query(text), owner, k),
            )
            return [_memory_row(row[:-1], float(row[-1])) for row in rows]
        rows = self._read(
            f"SELECT {columns} FROM memories m WHERE m.owner = ? ORDER BY m.seq DESC LIMIT ?",
            (owner, k),
        )
        return [_memory_row(row) for row in rows]

    def forget(self, owner: str, memory_id: str) -> bool:
        """Delete the owner's memory, its index entry, and its payload file unless another
        record stores the same payload; False when the owner has no such memory."""
        with self._transaction() as db:
            row = db.execute(
                "SELECT seq, text, tags, payload_digest FROM memories"
                " WHERE memory_id = ? AND owner = ?",
                (memory_id, owner),
            ).fetchone()
            if row is None:
                return False
            seq, text, tags, digest = row
            self._unindex_memory(db, seq, text, tags)
            db.execute("DELETE FROM memories WHERE seq = ?", (seq,))
            if digest is not None and not self._referenced(db, digest):
                self.blobs.delete(digest)
        return True

    def memory_payload(self, owner: str, memory_id: str) -> str | None:
        rows = self._read(
            "SELECT payload_digest FROM memories WHERE memory_id = ? AND owner = ?",
            (memory_id, owner),
        )
        return rows[0][0] if rows else None

    @staticmethod
    def _referenced(db: Db, digest: str) -> bool:
        for table, column in (("memories", "payload_digest"), ("listings", "payload_digest"),
                              ("uses", "delivery_digest")):  # fmt: skip
            found = db.execute(
                f"SELECT 1 FROM {table} WHERE {column} = ? LIMIT 1", (digest,)
            ).fetchone()
            if found is not None:
                return True
        return False


def _blob(vector: npt.NDArray[np.float32] | None) -> bytes | None:
    return None if vector is None else np.ascontiguousarray(vector, np.float32).tobytes()


def _dim(vector: npt.NDArray[np.float32] | None) -> int | None:
    return None if vector is None else int(vector.shape[0])


def _listing_row(
    row: Sequence[Any], validators: tuple[str, ...], score: float | None
) -> ListingRow:
    return ListingRow(
        listing_id=row[0], market=AssetType(row[1]), creator=row[2], title=row[3],
        description=row[4], tags=tuple(row[5].split()) if row[5] else (),
        source_model=row[6], tokens=row[7], payload_digest=row[8], payload_bytes=row[9],
        embedding_dim=row[10], similar=row[11], price_units=row[12], quality=row[13],
        attestations=row[14], validators=validators, uses=row[15], created_ms=row[16],
        withdrawn=bool(row[17]), reputation=row[18], score=score,
    )  # fmt: skip


def _changed(db: Db) -> None:
    """A listing was added or withdrawn: cached vector indexes are stale (one row by key, not
    a scan of the listings on every vector search)."""
    db.execute("UPDATE listing_changes SET version = version + 1 WHERE id = 1")


def _scored(row: ListingRow, score: float) -> ListingRow:
    return dataclasses.replace(row, score=score)


def _use_row(row: Sequence[Any]) -> UseRow:
    return UseRow(row[0], row[1], row[2], row[3], row[4], row[5], row[6], UseState(row[7]), row[8])


def _memory_row(row: Sequence[Any], score: float | None = None) -> MemoryRow:
    return MemoryRow(
        memory_id=row[0], owner=row[1], text=row[2], tags=tuple(row[3].split()) if row[3] else (),
        payload_digest=row[4], payload_bytes=row[5], has_embedding=row[6] is not None,
        created_ms=row[7], score=score,
    )  # fmt: skip


__all__ = ["TABLES", "Cursor", "Db", "SqlCatalog", "query_terms", "tables"]
