"""The integration tests run the real models (tests/conftest.py's model_a and model_b) with one
thread each, module by module."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module", autouse=True)
def _one_thread_each(one_thread_each: None) -> None:
    """Every module of this folder runs under `one_thread_each`."""
