"""Token alignment through character offsets, on known text."""

from __future__ import annotations

import numpy as np

from latentmas_mesh.alignment.pairing import PairingMode, pair_tokens
from latentmas_mesh.alignment.tokens import overlap_matrix, pooling_weights

TEXT = "unbelievable cats"
# Tokenizer A: "un" "believ" "able" " cats"; tokenizer B: <bos> "unbeliev" "able" " c" "ats"
A = [(0, 2), (2, 8), (8, 12), (12, 17)]
B = [(0, 0), (0, 8), (8, 12), (12, 14), (14, 17)]


def test_overlap_counts_shared_characters():
    """'unbeliev' shares 2 characters with 'un' and 6 with 'believ'; BOS shares none."""
    overlap = overlap_matrix(A, B)

    assert [[0, 0, 0, 0], [2, 6, 0, 0], [0, 0, 4, 0], [0, 0, 0, 2], [0, 0, 0, 3]] == (
        overlap.astype(int).tolist()
    )


def test_pooling_weights_are_overlap_shares_and_bos_is_uncovered():
    """Each covered target row sums to one; the empty BOS span is marked uncovered."""
    weights, covered = pooling_weights(A, B)

    np.testing.assert_allclose(weights[1], [0.25, 0.75, 0.0, 0.0])
    assert [False, True, True, True, True] == covered.tolist()
    np.testing.assert_allclose(weights[covered].sum(axis=1), 1.0)


def test_pairs_join_tokens_that_end_in_the_same_source_token():
    """Each target token pairs with the source token holding its last character."""
    pairs = pair_tokens(A, B, mode=PairingMode.COVERING)
    source_index, target_index = pairs.source_index, pairs.target_index

    assert [1, 2, 3, 4] == target_index.tolist()
    assert [1, 2, 3, 3] == source_index.tolist()
    assert "believ" == TEXT[slice(*A[source_index[0]])]
