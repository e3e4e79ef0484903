"""Passage embeddings for W-matrix anchors: what a model owner registers so the mesh can fit
vector maps (Appendix C's generate) without ever holding the model."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Final

import numpy as np
import torch
from numpy.typing import NDArray

from latentmas_mesh.anchors import AnchorPassage
from latentmas_mesh.integrations.hf._kv import tokenize_context
from latentmas_mesh.integrations.hf._load import LoadedModel

EMBEDDING_TOKENS_DEFAULT: Final = 256
"""Text tokens read per passage: enough for a passage's gist, cheap on two cores."""


def passage_embeddings(
    loaded: LoadedModel,
    passages: Sequence[AnchorPassage],
    *,
    tokens_max: int = EMBEDDING_TOKENS_DEFAULT,
    on_passage: Callable[[int, int], object] = lambda _done, _total: None,
) -> NDArray[np.float32]:
    """[n, hidden] float32: per passage, the mean of the last layer's hidden states over its
    text tokens (the start token left out). Rows pair across models passage by passage,
    whatever their tokenizers, which token-level rows would not."""
    rows = []
    for done, passage in enumerate(passages, start=1):
        tokens = tokenize_context(loaded, passage.text, tokens_max=tokens_max)
        with torch.inference_mode():
            out = loaded.model(torch.from_numpy(tokens.ids)[None, :], output_hidden_states=True)
        last = out.hidden_states[-1][0, 1:].to(torch.float32)
        rows.append(last.mean(dim=0).numpy())
        on_passage(done, len(passages))
    return np.stack(rows).astype(np.float32, copy=False)


__all__ = ["EMBEDDING_TOKENS_DEFAULT", "passage_embeddings"]
