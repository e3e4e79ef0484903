"""The market's catalog in one SQLite file: listings (FTS5 text index), attestations, quotes,
uses, purchases and long-term memories; payloads live in the blob store beside it.

Every change is one transaction (WAL, synchronous=FULL): after a crash a use is recorded with
its delivery or not at all. `secure_delete` overwrites freed pages, so a forgotten memory's text
is gone from the file too, not only from its index.
"""

# S608: the only text formatted into queries is fixed column lists, fixed clauses and "?"
# placeholders; every value a caller gives is a bound parameter.
# ruff: noqa: S608

from __future__ import annotations

import dataclasses
import json
import re
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from latentmas_mesh.catalog._types import (
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
_TERM = re.compile(r"\w+", re.UNICODE)

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS listings (
    seq INTEGER PRIMARY KEY,
    listing_id TEXT NOT NULL UNIQUE,
    market TEXT NOT NULL,
    creator TEXT NOT NULL,
    title TEXT NOT NULL,
    description TEXT NOT NULL,
    tags TEXT NOT NULL,
    source_model TEXT NOT NULL,
    tokens INTEGER NOT NULL,
    payload_digest TEXT NOT NULL,
    payload_bytes INTEGER NOT NULL,
    embedding BLOB,
    embedding_dim INTEGER,
    fingerprint BLOB,
    fingerprint_dim INTEGER,
    similar INTEGER NOT NULL,
    price_units INTEGER NOT NULL,
    quality REAL NOT NULL DEFAULT 0,
    quality_sum REAL NOT NULL DEFAULT 0,
    attestations INTEGER NOT NULL DEFAULT 0,
    uses INTEGER NOT NULL DEFAULT 0,
    created_ms INTEGER NOT NULL,
    withdrawn INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS listings_market ON listings (market, withdrawn, created_ms);
CREATE INDEX IF NOT EXISTS listings_creator ON listings (creator);
CREATE VIRTUAL TABLE IF NOT EXISTS listings_fts USING fts5 (
    title, description, tags, content='listings', content_rowid='seq',
    tokenize='porter unicode61 remove_diacritics 2'
);
CREATE TABLE IF NOT EXISTS creators (
    creator TEXT PRIMARY KEY,
    quality_sum REAL NOT NULL DEFAULT 0,
    attestations INTEGER NOT NULL DEFAULT 0,
    uses INTEGER NOT NULL DEFAULT 0,
    reputation REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS attestations (
    listing_id TEXT NOT NULL,
    validator TEXT NOT NULL,
    model TEXT NOT NULL,
    quality REAL NOT NULL,
    method TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    PRIMARY KEY (listing_id, validator)
);
CREATE TABLE IF NOT EXISTS quotes (
    quote_id TEXT PRIMARY KEY,
    listing_id TEXT NOT NULL,
    buyer TEXT NOT NULL,
    price_units INTEGER NOT NULL,
    creator TEXT NOT NULL,
    validators TEXT NOT NULL,
    expires_ms INTEGER NOT NULL,
    reply_json TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS uses (
    buyer TEXT NOT NULL,
    request_id TEXT NOT NULL,
    listing_id TEXT NOT NULL,
    model TEXT NOT NULL,
    reservation_id TEXT,
    charged_units INTEGER NOT NULL,
    delivery_digest TEXT NOT NULL,
    state TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    PRIMARY KEY (buyer, request_id)
);
CREATE INDEX IF NOT EXISTS uses_state ON uses (state);
CREATE TABLE IF NOT EXISTS purchases (
    buyer TEXT NOT NULL,
    listing_id TEXT NOT NULL,
    request_id TEXT NOT NULL,
    PRIMARY KEY (buyer, listing_id)
);
CREATE TABLE IF NOT EXISTS memories (
    seq INTEGER PRIMARY KEY,
    memory_id TEXT NOT NULL UNIQUE,
    owner TEXT NOT NULL,
    text TEXT NOT NULL,
    tags TEXT NOT NULL,
    embedding BLOB,
    embedding_dim INTEGER,
    payload_digest TEXT,
    payload_bytes INTEGER NOT NULL,
    created_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS memories_owner ON memories (owner, created_ms);
CREATE VIRTUAL TABLE IF NOT EXISTS memories_fts USING fts5 (
    text, tags, content='memories', content_rowid='seq',
    tokenize='porter unicode61 remove_diacritics 2'
);
"""

_LISTING_COLUMNS: Final = (
    "l.listing_id, l.market, l.creator, l.title, l.description, l.tags, l.source_model,"
    " l.tokens, l.payload_digest, l.payload_bytes, l.embedding_dim, l.similar, l.price_units,"
    " l.quality, l.attestations, l.uses, l.created_ms, l.withdrawn, c.reputation"
)
_LISTING_FROM: Final = "listings l JOIN creators c ON c.creator = l.creator"


def fts_query(text: str) -> str:
    """A user's words as an FTS5 query: every word must match (stemmed: "contracts" finds
    "contract"), no operators, so no input can be an FTS5 syntax error."""
    terms = _TERM.findall(text.lower())[:QUERY_TERMS_MAX]
    if not terms:
        raise InvalidRequest("the text query has no words to search for", details={"field": "q"})
    return " ".join(f'"{term}"' for term in terms)


class SqliteCatalog:
    """The catalog (listings, quotes, uses, memories) in `path`, payloads in `blobs`."""

    def __init__(self, path: Path, blobs: BlobStore, *, quotas: Quotas | None = None) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.blobs = blobs
        self.quotas = quotas or Quotas()
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._lock = threading.Lock()
        for pragma in ("journal_mode=WAL", "synchronous=FULL", "secure_delete=ON",
                       "foreign_keys=ON", "busy_timeout=10000"):  # fmt: skip
            self._db.execute(f"PRAGMA {pragma}")
        self._db.executescript(SCHEMA)
        self._vectors: dict[tuple[str, int], tuple[int, list[str], npt.NDArray[np.float32]]] = {}

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    def _read(self, sql: str, parameters: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, parameters).fetchall()

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

    @staticmethod
    def _insert_listing(
        db: sqlite3.Connection,
        listing: NewListing,
        embedding: npt.NDArray[np.float32] | None,
        fingerprint: npt.NDArray[np.float32] | None,
    ) -> None:
        cursor = db.execute(
            "INSERT INTO listings (listing_id, market, creator, title, description, tags,"
            " source_model, tokens, payload_digest, payload_bytes, embedding, embedding_dim,"
            " fingerprint, fingerprint_dim, similar, price_units, created_ms)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                listing.listing_id, listing.market.value, listing.creator, listing.title,
                listing.description, " ".join(listing.tags), listing.source_model,
                listing.tokens, listing.payload_digest, listing.payload_bytes,
                _blob(embedding), _dim(embedding), _blob(fingerprint), _dim(fingerprint),
                listing.similar, listing.price_units, listing.created_ms,
            ),
        )  # fmt: skip
        db.execute(
            "INSERT INTO listings_fts (rowid, title, description, tags) VALUES (?, ?, ?, ?)",
            (cursor.lastrowid, listing.title, listing.description, " ".join(listing.tags)),
        )
        db.execute(
            "INSERT OR IGNORE INTO creators (creator, reputation) VALUES (?, ?)",
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
        return self._listing_row(rows[0]) if rows else None

    def withdraw(self, listing_id: str) -> None:
        with self._transaction() as db:
            db.execute("UPDATE listings SET withdrawn = 1 WHERE listing_id = ?", (listing_id,))

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
        model: str | None = None,
        creator: str | None = None,
        min_quality: float | None = None,
        max_price: int | None = None,
        embedding: npt.NDArray[np.float32] | None = None,
        offset: int = 0,
        limit: int = 20,
    ) -> tuple[list[ListingRow], bool]:
        """One page of listed assets, best first, and whether more follow.

        Ranking: by text (every word, stemmed), the best candidates by FTS5's BM25, reranked by
        BM25 x (0.5 + the creator's reputation); by embedding, the cosine to it (exact, over
        every listed asset of that dimension); otherwise reputation, then the newest first.
        """
        if embedding is not None:
            return self._search_vector(
                market, embedding, model=model, creator=creator, min_quality=min_quality,
                max_price=max_price, offset=offset, limit=limit,
            )  # fmt: skip
        where = ["l.market = ?", "l.withdrawn = 0"]
        parameters: list[object] = [market.value]
        for clause, value in (
            ("l.source_model = ?", model),
            ("l.creator = ?", creator),
            ("l.quality >= ?", min_quality),
            ("l.price_units <= ?", max_price),
        ):
            if value is not None:
                where.append(clause)
                parameters.append(value)
        if text is not None:
            return self._search_text(fts_query(text), where, parameters, offset, limit)
        sql = (
            f"SELECT {_LISTING_COLUMNS}, c.reputation AS score FROM {_LISTING_FROM}"
            f" WHERE {' AND '.join(where)}"
            " ORDER BY score DESC, l.seq DESC LIMIT ? OFFSET ?"
        )
        rows = self._read(sql, [*parameters, limit + 1, offset])
        found = [self._listing_row(row[:-1], score=float(row[-1])) for row in rows]
        return found[:limit], len(found) > limit

    def _search_text(
        self, query: str, where: list[str], parameters: list[object], offset: int, limit: int
    ) -> tuple[list[ListingRow], bool]:
        """The best `candidates` by BM25 (FTS5's own ranked scan, in C), then filtered and
        reranked by BM25 x (0.5 + the creator's reputation); widened when filters leave too few.
        Ranking every match in SQL instead cost a query with a very common word ~20x more."""
        candidates = max(TEXT_CANDIDATES_MIN, 4 * (offset + limit + 1))
        sql = (
            "WITH hits AS MATERIALIZED (SELECT rowid, rank FROM listings_fts"
            " WHERE listings_fts MATCH ? ORDER BY rank LIMIT ?)"
            f" SELECT {_LISTING_COLUMNS}, -hits.rank * (0.5 + c.reputation) AS score"
            " FROM hits JOIN listings l ON l.seq = hits.rowid"
            f" JOIN creators c ON c.creator = l.creator WHERE {' AND '.join(where)}"
            " ORDER BY score DESC, l.seq DESC LIMIT ? OFFSET ?"
        )
        while True:
            rows = self._read(sql, [query, candidates, *parameters, limit + 1, offset])
            if len(rows) > limit or candidates >= TEXT_CANDIDATES_MAX:
                break
            (hits,) = self._read(
                "SELECT count(*) FROM (SELECT rowid FROM listings_fts WHERE listings_fts MATCH ?"
                " LIMIT ?)",
                (query, candidates),
            )[0]
            if hits < candidates:  # every match was a candidate: this is the whole answer
                break
            candidates = min(TEXT_CANDIDATES_MAX, candidates * 4)
        found = [self._listing_row(row[:-1], score=float(row[-1])) for row in rows]
        return found[:limit], len(found) > limit

    def _search_vector(
        self,
        market: AssetType,
        embedding: npt.NDArray[np.float32],
        *,
        model: str | None,
        creator: str | None,
        min_quality: float | None,
        max_price: int | None,
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
                    if row is not None and _passes(row, model, creator, min_quality, max_price):
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
        ((version,),) = self._read(
            "SELECT coalesce(max(seq), 0) * 2 + (SELECT count(*) FROM listings WHERE withdrawn = 1)"
            " FROM listings"
        )
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
        return [self._listing_row(row) for row in rows]

    def _listing_row(self, row: Sequence[Any], score: float | None = None) -> ListingRow:
        listing_id = row[0]
        validators = tuple(
            v for (v,) in self._read(
                "SELECT validator FROM attestations WHERE listing_id = ? ORDER BY validator"
                " LIMIT ?", (listing_id, VALIDATORS_MAX),
            )
        )  # fmt: skip
        return ListingRow(
            listing_id=listing_id, market=AssetType(row[1]), creator=row[2], title=row[3],
            description=row[4], tags=tuple(row[5].split()) if row[5] else (),
            source_model=row[6], tokens=row[7], payload_digest=row[8], payload_bytes=row[9],
            embedding_dim=row[10], similar=row[11], price_units=row[12], quality=row[13],
            attestations=row[14], validators=validators, uses=row[15], created_ms=row[16],
            withdrawn=bool(row[17]), reputation=row[18], score=score,
        )  # fmt: skip

    def attest(
        self, listing_id: str, validator: str, *, model: str, quality: float, method: str,
        at_ms: int,
    ) -> float:  # fmt: skip
        """Store (or replace) `validator`'s attestation; the listing's new mean quality."""
        with self._transaction() as db:
            previous = db.execute(
                "SELECT quality FROM attestations WHERE listing_id = ? AND validator = ?",
                (listing_id, validator),
            ).fetchone()
            db.execute(
                "INSERT OR REPLACE INTO attestations VALUES (?, ?, ?, ?, ?, ?)",
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
    def _refresh_reputation(db: sqlite3.Connection, creator: str) -> None:
        quality_sum, attestations, uses = db.execute(
            "SELECT quality_sum, attestations, uses FROM creators WHERE creator = ?", (creator,)
        ).fetchone()
        db.execute(
            "UPDATE creators SET reputation = ? WHERE creator = ?",
            (reputation(quality_sum, attestations, uses), creator),
        )

    # ---------------------------------------------------------------------- quotes, uses

    def add_quote(self, quote: QuoteRow) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO quotes VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (quote.quote_id, quote.listing_id, quote.buyer, quote.price_units, quote.creator,
                 json.dumps(list(quote.validators)), quote.expires_ms, quote.reply_json),
            )  # fmt: skip

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
                "SELECT listing_id, state FROM uses WHERE buyer = ? AND request_id = ?",
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
                    "INSERT OR IGNORE INTO purchases VALUES (?, ?, ?)",
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
            cursor = db.execute(
                "INSERT INTO memories (memory_id, owner, text, tags, embedding, embedding_dim,"
                " payload_digest, payload_bytes, created_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (memory_id, owner, text, " ".join(tags), _blob(embedding), _dim(embedding),
                 digest, size, created_ms),
            )  # fmt: skip
            db.execute(
                "INSERT INTO memories_fts (rowid, text, tags) VALUES (?, ?, ?)",
                (cursor.lastrowid, text, " ".join(tags)),
            )
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
                f"SELECT {columns}, -bm25(memories_fts) FROM memories_fts"
                " JOIN memories m ON m.seq = memories_fts.rowid"
                " WHERE memories_fts MATCH ? AND m.owner = ?"
                " ORDER BY bm25(memories_fts), m.seq DESC LIMIT ?",
                (fts_query(text), owner, k),
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
            db.execute(
                "INSERT INTO memories_fts (memories_fts, rowid, text, tags)"
                " VALUES ('delete', ?, ?, ?)",
                (seq, text, tags),
            )
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
    def _referenced(db: sqlite3.Connection, digest: str) -> bool:
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


def _passes(
    row: ListingRow,
    model: str | None,
    creator: str | None,
    min_quality: float | None,
    max_price: int | None,
) -> bool:
    return (
        (model is None or row.source_model == model)
        and (creator is None or row.creator == creator)
        and (min_quality is None or row.quality >= min_quality)
        and (max_price is None or row.price_units <= max_price)
    )


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


__all__ = ["SqliteCatalog", "fts_query"]
