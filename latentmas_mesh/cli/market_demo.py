"""The main job's second half: a market story through a CURVE mesh (broker, ledger, align and
market workers) between agents running the two real models, told as it happens."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Final

from latentmas_mesh.cli.exchange_demo import held_out_passage, split_passage
from latentmas_mesh.client import MeshClient, MeshKeys
from latentmas_mesh.integrations.hf import (
    LoadedModel,
    continuation_nll,
    extract_kv_cache,
    greedy_continue,
    inject_kv_cache,
    prefill_cache,
    start_entry_cache,
    tokenize_context,
    without_start_entry,
)
from latentmas_mesh.ledger import ESCROW_ACCOUNT, FUNDING_ACCOUNT, PLATFORM_ACCOUNT
from latentmas_mesh.market import split_revenue
from latentmas_mesh.protocol.kv import KVCache
from latentmas_mesh.protocol.market import ReasoningChain, ReasoningStep
from latentmas_mesh.services.alignment_settings import AlignmentSettings
from latentmas_mesh.settlement.ledger_client import LedgerClient
from latentmas_mesh.testing.ledger_mesh import LedgerNet

FUNDS: Final = 10_000
CHAIN_PASSAGE, VALIDATION_PASSAGE = 2, 3
"""Held-out anchor passages: the one the chain reads, the one the validator measures on."""
CONTEXT_TOKENS, NEW_TOKENS, SCORED_TOKENS = 96, 24, 32
TIMEOUT_MS: Final = 120_000
Say = Callable[[str], None]


def run_market_story(sender: LoadedModel, receiver: LoadedModel, say: Say) -> dict[str, object]:
    """smol-agent publishes a reasoning chain of its model; a validator measures the pair's
    maps on a held-out passage through the alignment service and attests; gemma-agent finds
    the chain, buys it and continues from it in its own model; the ledger shows the split."""
    with tempfile.TemporaryDirectory(prefix="latentmas-market-") as tmp:
        root = Path(tmp)
        net = LedgerNet(root, clients=("smol-agent", "gemma-agent", "validator"))
        net.extra_env = {
            "LATENTMAS_LEDGER_SERVICES": json.dumps([net.worker_identity("market")]),
            "LATENTMAS_CACHE_DIR": str(AlignmentSettings().cache_dir.resolve()),  # make run's maps
            "LATENTMAS_MARKET_VALIDATORS": json.dumps([net.identity("validator")]),
            "LATENTMAS_MARKET_CATALOG_FILE": str(root / "market" / "catalog.sqlite3"),
            "LATENTMAS_MARKET_BLOBS_DIR": str(root / "market" / "blobs"),
            "LATENTMAS_MARKET_OUTBOX": str(root / "market" / "outbox.sqlite3"),
        }
        mesh = net.start()
        try:
            mesh.start_worker("align")
            mesh.start_worker("market")
            mesh.wait_for_workers(3, timeout_s=120)
            return _story(net, sender, receiver, say)
        finally:
            net.stop()


def _client(net: LedgerNet, name: str) -> MeshClient:
    keys = MeshKeys(
        net.root / "keys" / "clients" / f"{name}.key_secret",
        net.root / "keys" / "broker" / "broker.key",
        net.ledger_keys_dir,
    )
    assert net.mesh is not None
    return MeshClient(net.mesh.broker_url, keys=keys, timeout_ms=TIMEOUT_MS)


def _story(
    net: LedgerNet, sender: LoadedModel, receiver: LoadedModel, say: Say
) -> dict[str, object]:
    names = {"smol": net.identity("smol-agent"), "gemma": net.identity("gemma-agent"),
             "validator": net.identity("validator")}  # fmt: skip
    with net.transport("operator") as transport:
        operator = LedgerClient(transport)
        operator.deposit(names["gemma"], FUNDS)
        operator.open_account("validator", names["validator"])
        say(f"operator funds gemma-agent with {FUNDS} credits and registers a validator")
        with _client(net, "smol-agent") as smol, _client(net, "gemma-agent") as gemma, \
                _client(net, "validator") as validator:  # fmt: skip
            chain, title = _reasoning_chain(sender)
            listed = smol.publish_reasoning_chain(chain, title, tags=("novel", "reading"))
            say(f"smol-agent ({sender.name}) publishes reasoning chain {listed.listing_id}:"
                f" {len(chain.steps)} steps, {listed.tokens} tokens, its KV snapshot included;"
                f" listed at {listed.price_units} credits")  # fmt: skip
            measured = _validate(validator, sender, receiver)
            method = f"NLL-gain retention on held-out passage {VALIDATION_PASSAGE}"
            attested = validator.attest(listed.listing_id, receiver.name, measured, method)
            say(f"validator measures {sender.name} -> {receiver.name} on a held-out passage"
                f" through the alignment service: retention {measured:.3f}; attests")  # fmt: skip
            found = gemma.search("reasoning", q=title.split("'")[1], model=sender.name)
            chain_id = found.listings[0].listing_id
            quote = gemma.quote(chain_id)
            factors = quote.factors
            say(f"gemma-agent finds {chain_id} (reputation {found.listings[0].reputation:.2f});"
                f" quote {quote.quote.price_units} credits = {factors.base_units} x (1 + 0.30 x"
                f" {factors.tokens:.3f} tokens + 0.25 x {factors.tier:.2f} tier + 0.25 x"
                f" {factors.quality:.3f} quality + 0.20 x {factors.uniqueness:.2f}"
                " uniqueness)")  # fmt: skip
            delivery = gemma.use_reasoning_chain(chain_id, receiver.name)
            quality = delivery.quality
            say(f"gemma-agent buys it and receives the chain in {delivery.chain.model}'s space:"
                f" charged {delivery.charged_units}; the maps' held-out retention"
                f" {quality.information_retention if quality else float('nan'):.3f}")  # fmt: skip
            continuation = _continue_from(receiver, delivery.chain)
            say(f"{receiver.name} continues from the bought step: {continuation!r}")
        balances = {
            account: operator.balance(account).balance_units
            for account in (f"agent:{names['gemma']}", f"agent:{names['smol']}", PLATFORM_ACCOUNT,
                            f"validator:{names['validator']}", ESCROW_ACCOUNT, FUNDING_ACCOUNT)
        }  # fmt: skip
    split = split_revenue(delivery.charged_units, [names["validator"]])
    shown = dict(zip(("gemma-agent", "smol-agent (creator)", "platform", "validator", "escrow",
                      "funding"), balances.values(), strict=True))  # fmt: skip
    say("ledger balances: " + ", ".join(f"{name} {units}" for name, units in shown.items()))
    paid = (shown["smol-agent (creator)"], shown["platform"], shown["validator"])
    exact = paid == (split.creator_units, split.platform_units, split.validators_units)
    say(f"split of {delivery.charged_units}: creator {paid[0]} (80%), platform {paid[1]} (15%),"
        f" validator {paid[2]} (5%) — {'exactly the rule' if exact else 'NOT the rule'};"
        f" all balances sum to {sum(balances.values())} (zero-sum)")  # fmt: skip
    return {"chain_id": chain_id, "price_units": delivery.charged_units,
            "validator_retention": round(measured, 4), "balances": shown,
            "split_exact": exact, "zero_sum": sum(balances.values()) == 0,
            "listing_quality": attested.listing_quality}  # fmt: skip


def _reasoning_chain(sender: LoadedModel) -> tuple[ReasoningChain, str]:
    """Two steps of the sender: it reads a held-out passage (its KV snapshot kept), then writes
    its own continuation."""
    passage = held_out_passage(CHAIN_PASSAGE)
    context, prompt, _ = split_passage(sender, passage.text, CONTEXT_TOKENS)
    snapshot = without_start_entry(
        extract_kv_cache(sender, context, context_description=passage.title)
    )
    cache = prefill_cache(sender, tokenize_context(sender, context))
    written = greedy_continue(sender, cache, tokenize_context(sender, prompt).ids[1:], NEW_TOKENS)
    steps = (
        ReasoningStep(text=context, tokens=snapshot.metadata.sequence_length, kv_cache=snapshot),
        ReasoningStep(text=prompt + str(sender.tokenizer.decode(written)), tokens=len(written)),
    )
    return ReasoningChain(model=sender.name, steps=steps), f"A reading of '{passage.title}'"


def _validate(client: MeshClient, sender: LoadedModel, receiver: LoadedModel) -> float:
    """The validator's own measurement: a held-out passage's cache aligned through the mesh,
    the receiver's NLL gain from it as a share of its own cache's (clamped to [0, 1])."""
    passage = held_out_passage(VALIDATION_PASSAGE)
    context, prompt, rest = split_passage(sender, passage.text, CONTEXT_TOKENS)
    sent = without_start_entry(extract_kv_cache(sender, context))
    aligned = client.exchange_memory(sent, sender.name, receiver.name).kv_aligned
    truth = tokenize_context(receiver, prompt + rest).ids[1:][: SCORED_TOKENS + 1]
    nll = {
        name: continuation_nll(receiver, cache, truth[:-1], truth[1:])
        for name, cache in (
            ("none", start_entry_cache(receiver)),
            ("aligned", inject_kv_cache(receiver, aligned)),
            ("own", prefill_cache(receiver, tokenize_context(receiver, context))),
        )
    }
    gain = nll["none"] - nll["own"]
    retention = 0.0 if gain <= 0 else (nll["none"] - nll["aligned"]) / gain
    return float(min(1.0, max(0.0, retention)))


def _continue_from(receiver: LoadedModel, chain: ReasoningChain) -> str:
    """The receiver's greedy continuation of the bought chain's first step, from its aligned
    snapshot (prompted with the opening of the chain's second step)."""
    snapshot = chain.steps[0].kv_cache
    if not isinstance(snapshot, KVCache):
        return ""
    prompt = " " + chain.steps[1].text.split()[0]  # the word the sender was prompted with
    ids = tokenize_context(receiver, prompt).ids[1:]
    written = greedy_continue(receiver, inject_kv_cache(receiver, snapshot), ids, NEW_TOKENS)
    return str(receiver.tokenizer.decode(written))


__all__ = ["run_market_story"]
