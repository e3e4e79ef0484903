"""Passage embeddings of the real models: the rows a model owner registers for W-matrices."""

from __future__ import annotations

import numpy as np
import pytest

from latentmas_mesh.anchors import load_anchor_passages
from latentmas_mesh.integrations.hf import passage_embeddings

pytestmark = pytest.mark.slow


def test_one_row_per_passage_of_the_models_hidden_width(model_a, model_b):
    """Three passages: [3, hidden] float32 for each model, finite, one distinct row each; the
    token budget changes what is read."""
    passages = load_anchor_passages()[:3]
    seen = []

    rows_a = passage_embeddings(
        model_a, passages, tokens_max=32, on_passage=lambda d, t: seen.append((d, t))
    )
    rows_b = passage_embeddings(model_b, passages, tokens_max=32)
    shorter = passage_embeddings(model_a, passages[:1], tokens_max=8)

    assert ((3, model_a.model.config.hidden_size), np.float32) == (rows_a.shape, rows_a.dtype)
    assert (3, model_b.model.config.hidden_size) == rows_b.shape
    assert np.isfinite(rows_a).all()
    assert np.isfinite(rows_b).all()
    assert 3 == len({row.tobytes() for row in rows_a})
    assert not np.allclose(shorter[0], rows_a[0])
    assert [(1, 3), (2, 3), (3, 3)] == seen
