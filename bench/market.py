"""Market benchmark: search latency at 100,000 listings and uses/s through the whole use path.

Three figures, each against a reference measured in the same run on the same data:
- text search (FTS5, ranked) p99 vs a plain SQL `LIKE` scan of the same table (ranked by
  recency, so it reads every row as a ranked search must): target <= 0.1x;
- top-10 embedding search p99 vs a numpy brute-force reference over the same unit vectors in
  memory, with the recall@10 of the market's answer against it: target within 1.5x at exact
  recall;
- uses/s through the real mesh (quote, the buyer's reservation, use: the market checks the
  reservation, aligns a small cached asset through the align worker, stores the delivery,
  posts) vs the ledger's settlement rate alone through the same mesh (one settle event per
  request, one client, as the uses are sent): target >= 0.2x.

Run: .venv/bin/python bench/market.py [--listings 100000] [--queries 300] [--uses 60] [--quick]
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from latentmas_mesh.catalog import BlobStore, NewListing, Quotas, SqliteCatalog
from latentmas_mesh.units import AssetType

SMOL, GEMMA = "smollm2-135m-instruct", "gemma-3-270m"
DIM = 576  # smollm2's hidden size: a capability embedding of it
WORDS = tuple(
    (  # noqa: SIM905 (a word list, wrapped)
        "contract clause liability invoice supplier payment penalty lease notice audit tax "
        "warranty refund shipping customs tariff loan interest mortgage insurance claim "
        "patent license royalty merger share dividend salary pension benefit training safety "
        "incident report budget forecast revenue margin churn pricing discount vendor tender "
        "bid deadline schedule milestone risk compliance privacy consent breach encryption "
        "backup recovery outage latency cache kernel tensor gradient model dataset label "
        "prompt summary review"
    ).split()
)
VOCABULARY_SIZE = 2_000
ZIPF_EXPONENT = 1.1


def vocabulary(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(words, probabilities): the domain words first, then pronounceable made-up words, drawn
    with Zipf-Mandelbrot frequencies p(k) ~ 1 / (k + 2.7)^1.1 as words of real text are (a
    few very common, most rare), so queries and listings share the skew of a real corpus."""
    syllables = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]
    made_up = {
        "".join(rng.choice(syllables, int(rng.integers(2, 4)))) for _ in range(VOCABULARY_SIZE * 2)
    }
    words = list(WORDS) + sorted(made_up - set(WORDS))[: VOCABULARY_SIZE - len(WORDS)]
    weights = 1.0 / (np.arange(len(words)) + 2.7) ** ZIPF_EXPONENT
    return np.array(words), weights / weights.sum()


TARGETS = {"text_vs_scan_p99": 0.1, "vector_vs_brute_p99": 1.5, "uses_vs_settlements": 0.2}


def percentile_ms(samples: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(samples) * 1000, q))


def build_catalog(
    root: Path, count: int, rng: np.random.Generator, words: np.ndarray, weights: np.ndarray
) -> tuple[SqliteCatalog, np.ndarray]:
    """`count` capability listings with 4-word titles and 12-word descriptions (Zipf words)
    and clustered embeddings, bulk-loaded in transactions of 5,000; their unit embeddings."""
    catalog = SqliteCatalog(root / "catalog.sqlite3", BlobStore(root / "blobs"),
                            quotas=Quotas(listings_max=count + 1))  # fmt: skip
    centres = rng.standard_normal((64, DIM)).astype(np.float32)
    vectors = centres[rng.integers(0, 64, count)] + 0.5 * rng.standard_normal((count, DIM)).astype(
        np.float32
    )
    for start in range(0, count, 5_000):
        batch = []
        for i in range(start, min(count, start + 5_000)):
            title = " ".join(rng.choice(words, 4, p=weights))
            description = " ".join(rng.choice(words, 12, p=weights))
            listing = NewListing(
                listing_id=f"capability-{i:032x}", market=AssetType.CAPABILITY,
                creator=f"creator-{i % 500}", title=title, description=description, tags=(),
                source_model=SMOL, tokens=0, payload_digest=f"{i:064x}", payload_bytes=2304,
                similar=0, price_units=5_000 + i % 2_000, created_ms=i,
            )  # fmt: skip
            batch.append((listing, vectors[i], None))
        catalog.add_listings(batch)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return catalog, (vectors / norms).astype(np.float32)


def text_searches(catalog: SqliteCatalog, queries: list[str]) -> tuple[list[float], list[float]]:
    """Seconds per query: the catalog's ranked FTS5 search, and a LIKE scan of the same table
    (every word in title, description or tags; the 21 newest), interleaved query by query."""
    scan = sqlite3.connect(catalog.path)
    fts, like = [], []
    for query in queries:
        words = query.split()
        started = time.perf_counter()
        catalog.search(AssetType.CAPABILITY, text=query, limit=20)
        fts.append(time.perf_counter() - started)
        clause = " AND ".join("(title LIKE ? OR description LIKE ? OR tags LIKE ?)" for _ in words)
        parameters = [f"%{w}%" for w in words for _ in range(3)]
        started = time.perf_counter()
        scan.execute(
            f"SELECT listing_id FROM listings WHERE market = ? AND withdrawn = 0 AND {clause}"
            " ORDER BY seq DESC LIMIT 21",
            ["capability", *parameters],
        ).fetchall()
        like.append(time.perf_counter() - started)
    scan.close()
    return fts, like


def vector_searches(
    catalog: SqliteCatalog, unit: np.ndarray, queries: np.ndarray
) -> tuple[list[float], list[float], float]:
    """Seconds per top-10 query (the catalog's, numpy brute force over `unit`) and recall@10."""
    catalog.search(AssetType.CAPABILITY, embedding=queries[0], limit=10)  # builds its index
    ours, brute, hits = [], [], 0
    for query in queries:
        started = time.perf_counter()
        rows, _ = catalog.search(AssetType.CAPABILITY, embedding=query, limit=10)
        ours.append(time.perf_counter() - started)
        started = time.perf_counter()
        scores = unit @ (query / np.linalg.norm(query))
        top = np.argpartition(-scores, 10)[:10]
        top = top[np.argsort(-scores[top])]
        brute.append(time.perf_counter() - started)
        expected = {f"capability-{i:032x}" for i in top}
        hits += len(expected & {row.listing_id for row in rows})
    return ours, brute, hits / (10 * len(queries))


def stepped_uses(buyer: Any, ledger: Any, listing_id: str, uses: int) -> dict[str, float]:
    """Mean ms of each step of a use, the same three the SDK's use_memory makes in turn."""
    from latentmas_mesh.client import market_calls as mc
    from latentmas_mesh.protocol.market import MARKET_SERVICE, UseRequest

    steps = {"quote": 0.0, "reserve": 0.0, "use": 0.0}
    for i in range(uses):
        request_id = f"stepped-{i}"
        started = time.perf_counter()
        quoted = buyer.quote(listing_id)
        steps["quote"] += time.perf_counter() - started
        started = time.perf_counter()
        event = mc.reservation(quoted, request_id)
        ledger.apply(event)
        steps["reserve"] += time.perf_counter() - started
        started = time.perf_counter()
        use = UseRequest(
            listing_id=listing_id, model=GEMMA, quote_id=quoted.quote.quote_id,
            reservation_id=event.event_id,
        )  # fmt: skip
        buyer.transport.call(MARKET_SERVICE, use, request_id=request_id)
        steps["use"] += time.perf_counter() - started
    return {name: round(total / uses * 1000, 2) for name, total in steps.items()}


def use_path(root: Path, uses: int) -> tuple[float, float, dict[str, float]]:
    """(uses/s, settlements/s, ms per step of a use) through a CURVE mesh of broker, ledger,
    align and market workers."""
    from latentmas_mesh.alignment import AlignmentQuality, geometry_from_registry
    from latentmas_mesh.alignment.kv_fit import fit_kv_arrays
    from latentmas_mesh.artifacts.kv_map_store import KVMapStore
    from latentmas_mesh.client import MeshClient, MeshKeys
    from latentmas_mesh.protocol.kv import KVCache, KVCacheMetadata
    from latentmas_mesh.protocol.ledger import SettleEvent
    from latentmas_mesh.settlement.ledger_client import LedgerClient
    from latentmas_mesh.testing.ledger_mesh import LedgerNet

    rng = np.random.default_rng(7)
    source, target = geometry_from_registry(SMOL), geometry_from_registry(GEMMA)
    z = rng.standard_normal((160, 8))

    def synthetic(geometry):
        shape = (geometry.layers, geometry.kv_heads, 8, geometry.head_dim)
        keys = np.einsum("nz,lhzd->lhnd", z, rng.standard_normal(shape)).astype(np.float32)
        values = np.einsum("nz,lhzd->lhnd", z, rng.standard_normal(shape)).astype(np.float32)
        return keys, values

    (sk, sv), (tk, tv) = synthetic(source), synthetic(target)
    positions = np.arange(160)
    aligner = fit_kv_arrays(
        {"keys": sk, "values": sv}, {"keys": tk, "values": tv}, source_geometry=source,
        target_geometry=target, positions=(positions, positions), estimator="learned",
        unified_dim=16, granularity="head",
    ).aligner  # fmt: skip
    aligner.exchange_quality_ = AlignmentQuality(0.9, 0.2, 0.8, 0.7, 6)  # a stated stand-in
    KVMapStore(root / "cache" / "kvmaps").put(aligner, source=SMOL, target=GEMMA, version="1.0.0")
    net = LedgerNet(root / "net", clients=("buyer", "creator"))
    net.extra_env = {
        "LATENTMAS_LEDGER_SERVICES": json.dumps([net.worker_identity("market")]),
        "LATENTMAS_CACHE_DIR": str(root / "cache"),
    }
    mesh = net.start()
    try:
        mesh.start_worker("align")
        mesh.start_worker("market")
        mesh.wait_for_workers(3, timeout_s=120)
        with net.transport("operator") as transport:
            LedgerClient(transport).deposit(net.identity("buyer"), 10**12)
        keys = {
            name: MeshKeys(net.root / "keys" / "clients" / f"{name}.key_secret",
                           net.root / "keys" / "broker" / "broker.key", net.ledger_keys_dir)
            for name in ("buyer", "creator")
        }  # fmt: skip
        shape = (source.layers, source.kv_heads, 2, source.head_dim)
        cache = KVCache(
            source_model=SMOL, keys=rng.standard_normal(shape).astype(np.float32),
            values=rng.standard_normal(shape).astype(np.float32),
            metadata=KVCacheMetadata(sequence_length=2, context_description="bench",
                                     token_count=2, generated_at="2026-12-04T00:00:00Z"),
        )  # fmt: skip
        with MeshClient(mesh.broker_url, keys=keys["creator"]) as creator:
            listing_id = creator.publish_memory(cache, SMOL, "bench asset").listing_id
        with MeshClient(mesh.broker_url, keys=keys["buyer"]) as buyer, \
                net.transport("buyer") as transport:  # fmt: skip
            ledger = LedgerClient(transport)
            buyer.use_memory(listing_id, GEMMA)  # warm: maps loaded, connections made
            ledger.apply(SettleEvent(event_id="warm", creator=net.identity("creator"),
                                     amount_units=100))  # fmt: skip
            started = time.perf_counter()
            for _ in range(uses):
                buyer.use_memory(listing_id, GEMMA)
            uses_s = time.perf_counter() - started
            step_ms = stepped_uses(buyer, ledger, listing_id, uses)
            started = time.perf_counter()
            for i in range(uses):
                ledger.apply(SettleEvent(event_id=f"settle-{i}", creator=net.identity("creator"),
                                         amount_units=100))  # fmt: skip
            settles_s = time.perf_counter() - started
    finally:
        net.stop()
    return uses / uses_s, uses / settles_s, step_ms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--listings", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--uses", type=int, default=60)
    parser.add_argument("--quick", action="store_true", help="10,000 listings, 60 queries, 10 uses")
    args = parser.parse_args()
    if args.quick:
        args.listings, args.queries, args.uses = 10_000, 60, 10
    rng = np.random.default_rng(20261204)
    wall = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-market-") as tmp:
        root = Path(tmp)
        started = time.perf_counter()
        words, weights = vocabulary(rng)
        catalog, unit = build_catalog(root, args.listings, rng, words, weights)
        load_s = time.perf_counter() - started
        texts = [" ".join(rng.choice(words, 2, p=weights)) for _ in range(args.queries)]
        fts, like = text_searches(catalog, texts)
        queries = (
            rng.standard_normal((args.queries, DIM)).astype(np.float32)
            + unit[rng.integers(0, len(unit), args.queries)] * 20
        )
        ours, brute, recall = vector_searches(catalog, unit, queries)
        catalog.close()
        uses_per_s, settles_per_s, step_ms = use_path(root, args.uses)
    figures = {
        "listings": args.listings,
        "load_s": round(load_s, 1),
        "text_search_p50_ms": round(percentile_ms(fts, 50), 3),
        "text_search_p99_ms": round(percentile_ms(fts, 99), 3),
        "like_scan_p50_ms": round(percentile_ms(like, 50), 3),
        "like_scan_p99_ms": round(percentile_ms(like, 99), 3),
        "text_vs_scan_p99": round(percentile_ms(fts, 99) / percentile_ms(like, 99), 4),
        "vector_search_p50_ms": round(percentile_ms(ours, 50), 3),
        "vector_search_p99_ms": round(percentile_ms(ours, 99), 3),
        "brute_force_p99_ms": round(percentile_ms(brute, 99), 3),
        "vector_vs_brute_p99": round(percentile_ms(ours, 99) / percentile_ms(brute, 99), 3),
        "vector_recall_at_10": round(recall, 4),
        "uses_per_s": round(uses_per_s, 2),
        "settlements_per_s": round(settles_per_s, 2),
        "uses_vs_settlements": round(uses_per_s / settles_per_s, 3),
        "use_step_ms": step_ms,
        "settlement_ms": round(1000 / settles_per_s, 2),
        "targets": TARGETS,
        "wall_s": round(time.perf_counter() - wall, 1),
    }
    print(f"market benchmark at {args.listings} listings (catalog loaded in {load_s:.1f} s)")
    print(f"{'figure':<34}{'ours':>12}{'reference':>12}{'ratio':>9}{'target':>9}")
    rows = (
        ("text search p99 ms (FTS5 vs LIKE)", figures["text_search_p99_ms"],
         figures["like_scan_p99_ms"], figures["text_vs_scan_p99"], "<=0.1"),
        ("top-10 vector p99 ms (vs numpy)", figures["vector_search_p99_ms"],
         figures["brute_force_p99_ms"], figures["vector_vs_brute_p99"], "<=1.5"),
        ("uses/s (vs settlements/s)", figures["uses_per_s"], figures["settlements_per_s"],
         figures["uses_vs_settlements"], ">=0.2"),
    )  # fmt: skip
    for name, value, reference, ratio, target in rows:
        print(f"{name:<34}{value:>12}{reference:>12}{ratio:>9}{target:>9}")
    print(f"recall@10 of the vector search against brute force: {recall:.4f}")
    print(
        "one use, step by step (ms): quote {quote}, reserve {reserve}, use {use} (the market's"
        " reservation check, alignment and post inside); one settlement".format(**step_ms)
        + f" {figures['settlement_ms']}"
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
