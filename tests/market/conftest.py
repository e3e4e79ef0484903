"""A market service in process over real parts: the catalog and blob store on disk, the real
ledger service (SQLite), the real alignment service with synthetic KV maps."""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import psycopg
import pytest

from latentmas_mesh.catalog import BlobStore, Quotas, open_catalog
from latentmas_mesh.codec import Decoded
from latentmas_mesh.ledger.sqlite import SqliteLedgerStore
from latentmas_mesh.market import PriceSchedule
from latentmas_mesh.protocol import type_name_of
from latentmas_mesh.protocol.align import AlignKVCacheRequest, AlignKVCacheResponse
from latentmas_mesh.protocol.ledger import (
    DepositEvent,
    OpenAccountRequest,
    Quote,
    QuoteRequest,
    ReserveEvent,
)
from latentmas_mesh.protocol.v1 import AlignVectorRequest, AlignVectorResponse
from latentmas_mesh.registry import default_registry
from latentmas_mesh.services.alignment import AlignmentService
from latentmas_mesh.services.ledger import LedgerPolicy, LedgerService
from latentmas_mesh.services.market import MarketPolicy, MarketService
from latentmas_mesh.services.quotes import LocalQuoter, Pricing, QuoteSigner
from latentmas_mesh.settlement.ledger_client import raise_for_result
from latentmas_mesh.settlement.outbox import Outbox
from latentmas_mesh.settlement.payments import Payments
from tests.workers_align.conftest import GEMMA, SMOL, fitted_smol_to_gemma, make_service
from tests.workers_align.test_payments import Clock, InProcessLedger

MARKET, OPERATOR = "market-worker", "op"
CREATOR, BUYER, OTHER, VALIDATOR = "creator-1", "buyer-1", "buyer-2", "validator-1"
FUNDS = 100_000
QUOTE_KEY = b"q" * 32
__all__ = ["GEMMA", "OPERATOR", "SMOL"]


class ServiceAligner:
    """The market's Aligner over an AlignmentService in process (a worker goes through the
    broker to `latentmas.align`; the same messages, the same answers)."""

    def __init__(self, service: AlignmentService) -> None:
        self.service = service

    def align_kv(self, cache, target, *, min_quality):
        request = AlignKVCacheRequest(kv_cache=cache, target_model=target, min_quality=min_quality)
        reply = self.service.handle_align(request, MARKET, "market-align")
        assert isinstance(reply, AlignKVCacheResponse)
        return reply.aligned_kv_cache, reply.alignment_quality

    def align_vector(self, vector, source, target):
        request = AlignVectorRequest(vector=vector, source_model=source, target_model=target)
        reply = self.service.handle_align(request, MARKET, "market-align")
        assert isinstance(reply, AlignVectorResponse)
        return reply.aligned_vector, reply.alignment_quality


class QuotingLedger(InProcessLedger):
    """The market's view of the ledger: quotes, reservations, events (as the market worker)."""

    def quote(self, request: QuoteRequest) -> Quote:
        return self.service.handle(request, self.identity)


@dataclass
class Market:
    """The service and what a test reads around it."""

    service: MarketService
    ledger: LedgerService
    outbox: Outbox
    alignment: AlignmentService
    clock: Clock

    def call(self, message, identity, request_id="r-1"):
        decoded = Decoded(message=message, request_id=request_id, type_name=type_name_of(message))
        return self.service.handle(decoded, identity)

    def reserve(self, quote: Quote, payer: str = BUYER, event_id: str = "res-1") -> str:
        event = ReserveEvent(event_id=event_id, quote=quote, expires_at_ms=quote.expires_at_ms)
        (result,) = InProcessLedger(self.ledger, payer).send_events([event])
        raise_for_result(result)  # e.g. InsufficientFunds, as the SDK raises it
        return event_id

    def balance(self, account: str) -> int:
        return InProcessLedger(self.ledger, OPERATOR).balance(account)

    def drain(self) -> None:
        self.outbox.drain(InProcessLedger(self.ledger, MARKET).send_events, deadline_s=5)


def build_market(
    tmp_path, *, quotas: Quotas | None = None, local_quotes: bool = False, catalog_url: str = ""
) -> Market:
    clock = Clock()
    policy = LedgerPolicy(
        quote_key=QUOTE_KEY, services=frozenset({MARKET}), operators=frozenset({OPERATOR})
    )
    ledger = LedgerService(SqliteLedgerStore(tmp_path / "ledger.db"), policy, clock=clock)
    operator = InProcessLedger(ledger, OPERATOR)
    operator.send_events([
        DepositEvent(event_id="fund-buyer", agent_id=BUYER, amount_units=FUNDS),
        DepositEvent(event_id="fund-other", agent_id=OTHER, amount_units=FUNDS),
    ])  # fmt: skip
    ledger.handle(OpenAccountRequest(kind="agent", owner=CREATOR), OPERATOR)
    ledger.handle(OpenAccountRequest(kind="validator", owner=VALIDATOR), OPERATOR)
    alignment = make_service(tmp_path / "align")
    alignment.kv_maps.put(
        fitted_smol_to_gemma(np.random.default_rng(5)), source=SMOL, target=GEMMA, version="1.0.0"
    )
    outbox = Outbox(tmp_path / "market-outbox.sqlite3")
    catalog = open_catalog(
        catalog_url or str(tmp_path / "catalog.db"), BlobStore(tmp_path / "blobs"),
        quotas=quotas or Quotas(),
    )  # fmt: skip
    signer = QuoteSigner(key=QUOTE_KEY, pricing=Pricing(PriceSchedule(), default_registry()))
    service = MarketService(
        catalog,
        quoter=LocalQuoter(signer, clock) if local_quotes else QuotingLedger(ledger, MARKET),
        payments=Payments(outbox, InProcessLedger(ledger, MARKET)),
        aligner=ServiceAligner(alignment),
        clock=clock,
        policy=MarketPolicy(validators=frozenset({VALIDATOR})),
    )
    return Market(service, ledger, outbox, alignment, clock)


_schemas = itertools.count()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def catalog_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """Where a test's catalog lives: "" (a SQLite file of the test), or a fresh PostgreSQL
    schema, dropped afterwards: the same behaviour suite runs on both backends."""
    if request.param == "sqlite":
        yield ""
        return
    dsn = request.getfixturevalue("postgres_dsn")
    schema = f"market_{os.getpid()}_{next(_schemas)}"
    yield f"{dsn}#{schema}"
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@pytest.fixture
def market(tmp_path, catalog_url) -> Iterator[Market]:
    built = build_market(tmp_path, catalog_url=catalog_url)
    yield built
    built.service.catalog.close()
