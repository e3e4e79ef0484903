"""Fixtures for the registry tests: the shipped registry and a writer for operator files."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from latentmas_mesh.registry import Registry, load_registry


@pytest.fixture(scope="session")
def registry() -> Registry:
    """The shipped registry with no operator file."""
    return load_registry()


@pytest.fixture
def write_extra(tmp_path: Path) -> Callable[[Any], Path]:
    """Write a JSON document (or raw text) as an operator registry file and return its path."""

    def write(document: Any) -> Path:
        path = tmp_path / "extra-models.json"
        text = document if isinstance(document, str) else json.dumps(document)
        path.write_text(text, encoding="utf-8")
        return path

    return write


def open_entry(name: str, **overrides: Any) -> dict[str, Any]:
    """A valid open-model entry for operator files; `overrides` replace top-level fields."""
    entry: dict[str, Any] = {
        "name": name,
        "family": "acme",
        "aliases": [f"acme/{name}"],
        "hf_repo": f"acme/{name}",
        "architecture": "llama",
        "open_weights": True,
        "kv_export": True,
        "attention": "gqa",
        "num_layers": 4,
        "num_attention_heads": 8,
        "num_kv_heads": 2,
        "head_dim": 16,
        "hidden_size": 128,
        "positional": {"kind": "rope", "rope_theta": 10000.0, "rotary_convention": "half"},
        "capability_tier": 1,
        "source": {
            "kind": "config.json",
            "repo": f"acme/{name}",
            "file": "config.json",
            "verified": True,
        },
    }
    entry.update(overrides)
    return entry
