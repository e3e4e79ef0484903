"""Fixtures shared by every test area; each area keeps its own in tests/<area>/conftest.py."""

from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded generator so that every failure reproduces."""
    return np.random.default_rng(20260125)
