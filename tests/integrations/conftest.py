"""Session-wide real models for the integration tests: loaded once, shared by every test."""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from latentmas_mesh.integrations.hf import LoadedModel

MODEL_A = "smollm2-135m-instruct"
MODEL_B = "gemma-3-270m"


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread() -> None:
    """One intra-op thread: on a shared 2-core machine more threads thrash (5-10x slower)."""
    if importlib.util.find_spec("torch") is None:
        return  # the pure tests of this area run without the hf extra
    import torch

    torch.set_num_threads(1)


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
