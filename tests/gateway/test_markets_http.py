"""The markets and long-term memory over HTTP, through the gateway and the real mesh: publish,
search, quote, use with Idempotency-Key (charged once), attest, withdraw, remember/recall/forget,
and who may do what."""

from __future__ import annotations

import os

import httpx
import numpy as np
import pytest

from latentmas_mesh.agents import AgentRegistry
from latentmas_mesh.market import split_revenue
from tests.gateway.conftest import JSON_BODY_BYTES_MAX, cache_json, error_of, running_site
from tests.workers_align.conftest import GEMMA, SMOL, kv_cache

API = "/api/latentmas"
MEMORY = f"{API}/markets/memory/listings"
LONG_TERM = f"{API}/memory/long-term"


@pytest.fixture(
    scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def market_site(request, tmp_path_factory):
    """The package's gateway (SQLite catalog), or one whose market keeps its catalog in a
    PostgreSQL schema: every test below runs against both."""
    if request.param == "sqlite":
        yield request.getfixturevalue("site")
        return
    url = f"{request.getfixturevalue('postgres_dsn')}#market_http_{os.getpid()}"
    root = tmp_path_factory.mktemp("gateway-postgres")
    with running_site(root, {"LATENTMAS_MARKET_CATALOG_URL": url}) as running:
        yield running


def balance(client) -> int:
    return client.get(f"{API}/ledger/balance").json()["balance_units"]


def publish(site, rng, title="Lease agreement, clause 12"):
    with site.client("bob") as bob:
        body = {"title": title, "description": "termination notice", "tags": ["legal"],
                "kv_cache": cache_json(kv_cache(SMOL, rng))}  # fmt: skip
        response = bob.post(MEMORY, json=body)
    assert 201 == response.status_code, response.text
    return response.json()


class TestMarketsOverHttp:
    def test_publish_search_quote_use_and_the_split(self, market_site, rng):
        listed = publish(market_site, rng)
        listing_id = listed["listing_id"]
        with market_site.client("ops") as ops:
            attested = ops.post(f"{MEMORY}/{listing_id}/attestations",
                                json={"model": GEMMA, "quality": 0.8})  # fmt: skip
        with market_site.client("alice") as alice, market_site.client("bob") as bob:
            found = alice.get(MEMORY, params={"q": "lease termination"}).json()
            quote = alice.post(f"{MEMORY}/{listing_id}/quote").json()
            before, bob_before = balance(alice), balance(bob)
            headers = {"Idempotency-Key": "use-lease-1"}
            body = {"quote_id": quote["quote"]["quote_id"], "model": GEMMA}
            used = alice.post(f"{MEMORY}/{listing_id}/use", json=body, headers=headers)
            again = alice.post(f"{MEMORY}/{listing_id}/use", json=body, headers=headers)
            after, bob_after = balance(alice), balance(bob)

        price = quote["quote"]["price_units"]
        split = split_revenue(price, [market_site.agent_id("ops")])
        assert 201 == attested.status_code, attested.text
        assert [listing_id] == [row["listing_id"] for row in found["listings"]]
        assert "kv_cache" not in found["listings"][0]
        assert {"tokens", "tier", "quality", "uniqueness"} <= set(quote["factors"])
        assert 200 == used.status_code, used.text
        assert GEMMA == used.json()["kv_cache"]["source_model"]
        assert used.json() == again.json()
        assert (before - price, bob_before + split.creator_units) == (after, bob_after)

    def test_nobody_else_withdraws_and_the_payload_is_never_shown_unpaid(self, market_site, rng):
        listed = publish(market_site, rng, title="private notes")
        url = f"{MEMORY}/{listed['listing_id']}"
        with market_site.client("alice") as alice, market_site.client("bob") as bob:
            refused = alice.delete(url)
            read = alice.get(url)
            withdrawn = bob.delete(url)
            quote_after = alice.post(f"{url}/quote")
            wrong_market = alice.get(f"{API}/markets/capability/listings/{listed['listing_id']}")

        assert (403, "UNAUTHORIZED") == error_of(refused)
        assert 200 == read.status_code
        assert "kv_cache" not in read.json()
        assert withdrawn.json()["withdrawn"] is True
        assert (404, "NOT_FOUND") == error_of(quote_after)
        assert (404, "NOT_FOUND") == error_of(wrong_market)

    def test_a_buyer_without_funds_gets_402_and_nothing_is_charged(self, market_site, rng):
        listed = publish(market_site, rng, title="costly")
        url = f"{MEMORY}/{listed['listing_id']}"
        with AgentRegistry(market_site.state_dir) as registry:  # a new agent, never funded
            carol = registry.add("carol-unfunded")
        headers = {"authorization": f"Bearer {carol.token}"}
        with httpx.Client(base_url=market_site.url, headers=headers, timeout=60) as buyer:
            quote = buyer.post(f"{url}/quote").json()
            body = {"quote_id": quote["quote"]["quote_id"], "model": GEMMA}
            refused = buyer.post(f"{url}/use", json=body)
            after = balance(buyer)

        assert (402, "INSUFFICIENT_FUNDS") == error_of(refused)
        assert 0 == after

    def test_hostile_listings_are_refused_with_typed_errors(self, market_site, rng):
        cache = cache_json(kv_cache(SMOL, rng))
        with market_site.client("bob") as bob:
            lying_cache = {**cache, "source_model": GEMMA}
            lying = bob.post(MEMORY, json={"title": "x", "kv_cache": lying_cache})
            nobody = {"title": "x", "model": "nobody", "embedding": [0.1] * 4}
            unknown = bob.post(f"{API}/markets/capability/listings", json=nobody)
            untitled = bob.post(MEMORY, json={"title": "", "kv_cache": cache})
            oversize = bob.post(MEMORY, content=b" " * (JSON_BODY_BYTES_MAX + 1),
                                headers={"content-type": "application/json"})  # fmt: skip
            anonymous = bob.post(MEMORY, json={"title": "x", "kv_cache": cache},
                                 headers={"authorization": ""})  # fmt: skip

        assert (413, "PAYLOAD_TOO_LARGE") == error_of(oversize)
        assert (422, "DIMENSION_MISMATCH") == error_of(lying)
        assert (404, "MODEL_NOT_SUPPORTED") == error_of(unknown)
        assert (400, "INVALID_REQUEST") == error_of(untitled)
        assert 401 == anonymous.status_code


class TestLongTermMemoryOverHttp:
    def test_remember_recall_and_forget_are_the_owners_alone(self, market_site):
        with market_site.client("alice") as alice, market_site.client("bob") as bob:
            made = alice.post(LONG_TERM, json={"text": "the supplier prefers invoices by email",
                                               "embedding": list(np.ones(4))})  # fmt: skip
            memory_id = made.json()["memory_id"]
            mine = alice.get(LONG_TERM, params={"q": "supplier invoices"}).json()
            theirs = bob.get(LONG_TERM, params={"q": "supplier"}).json()
            stranger = bob.delete(f"{LONG_TERM}/{memory_id}")
            forgotten = alice.delete(f"{LONG_TERM}/{memory_id}")
            gone = alice.get(LONG_TERM, params={"q": "supplier"}).json()

        assert 201 == made.status_code, made.text
        assert [memory_id] == [m["memory_id"] for m in mine["memories"]]
        assert [] == theirs["memories"]
        assert (404, "NOT_FOUND") == error_of(stranger)
        assert forgotten.json()["forgotten"] is True
        assert [] == gone["memories"]
