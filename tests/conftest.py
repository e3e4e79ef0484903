"""Fixtures shared by every test area; each area keeps its own in tests/<area>/conftest.py."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from latentmas_mesh.testing.postgres import PostgresUnavailable, TemporaryPostgres

if TYPE_CHECKING:
    from latentmas_mesh.integrations.hf import LoadedModel

MODEL_A = "smollm2-135m-instruct"
MODEL_B = "gemma-3-270m"


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """Start a PostgreSQL cluster on a free loopback port in a temp dir; stop and delete it."""
    try:
        cluster = TemporaryPostgres()
        dsn = cluster.start()
    except PostgresUnavailable as error:
        pytest.fail(str(error), pytrace=False)
    try:
        yield dsn
    finally:
        cluster.stop()


@pytest.fixture
def rng() -> np.random.Generator:
    """A seeded generator so that every failure reproduces."""
    return np.random.default_rng(20260125)


@pytest.fixture(scope="module")
def one_thread_each() -> Iterator[None]:
    """One BLAS and one torch thread for a module that runs the real models: on a shared
    2-core machine more threads thrash (5-10x)."""
    torch = None
    if importlib.util.find_spec("torch") is not None:  # pure tests run without the hf extra
        import torch
    threads = torch.get_num_threads() if torch is not None else 0
    if torch is not None:
        torch.set_num_threads(1)
    with threadpool_limits(limits=1, user_api="blas"):
        yield
    if torch is not None:
        torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def model_a() -> LoadedModel:
    """SmolLM2-135M-Instruct (llama: 30 layers, 3 KV heads, head_dim 64)."""
    from latentmas_mesh.integrations.hf import load_model

    return load_model(MODEL_A)


@pytest.fixture(scope="session")
def model_b() -> LoadedModel:
    """Gemma-3-270M (gemma3_text: 18 layers, 1 KV head, head_dim 256, sliding windows)."""
    from latentmas_mesh.integrations.hf import load_model

    return load_model(MODEL_B)
