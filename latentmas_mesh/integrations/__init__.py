"""Integrations with model frameworks; `integrations.hf` needs the `hf` extra, this package not."""

from __future__ import annotations

from latentmas_mesh.alignment.pairing import PairingMode, TokenPairs, pair_tokens

__all__ = ["PairingMode", "TokenPairs", "pair_tokens"]
