"""Token pairing between two tokenizations of one text, through character offsets."""

from __future__ import annotations

import numpy as np
import pytest

from latentmas_mesh.errors import DimensionMismatch, InvalidRequest
from latentmas_mesh.integrations import PairingMode, pair_tokens

# "Hello world, sun" tokenised two ways; the start token has the empty span (0, 0).
SOURCE = [(0, 0), (0, 5), (5, 11), (11, 12), (12, 16)]  # Hello| world|,| sun
TARGET = [(0, 0), (0, 3), (3, 5), (5, 8), (8, 11), (11, 12), (12, 14), (14, 16)]


class TestPairTokens:
    def test_shared_end_pairs_tokens_that_end_at_the_same_character(self):
        """Only tokens whose spans end together (5, 11, 12, 16) are paired."""
        pairs = pair_tokens(SOURCE, TARGET)

        assert [1, 2, 3, 4] == pairs.source_index.tolist()
        assert [2, 4, 5, 7] == pairs.target_index.tolist()

    def test_covering_gives_every_target_token_the_source_token_around_its_end(self):
        """Each target token is paired with the source token covering its last character."""
        pairs = pair_tokens(SOURCE, TARGET, mode=PairingMode.COVERING)

        assert [1, 1, 2, 2, 3, 4, 4] == pairs.source_index.tolist()
        assert [1, 2, 3, 4, 5, 6, 7] == pairs.target_index.tolist()

    def test_pieces_of_one_character_pair_through_their_last_piece(self):
        """A byte-level split of one character (two tokens, one span) pairs only its last piece."""
        source = [(0, 1), (0, 1), (1, 4)]
        target = [(0, 1), (1, 4)]

        pairs = pair_tokens(source, target)

        assert [1, 2] == pairs.source_index.tolist()
        assert [0, 1] == pairs.target_index.tolist()

    def test_wrong_shape_is_a_dimension_mismatch(self):
        """Offsets must be [tokens, 2]."""
        with pytest.raises(DimensionMismatch):
            pair_tokens(np.zeros((3, 3), dtype=np.int64), TARGET)

    def test_spans_out_of_text_order_are_refused(self):
        """Offsets must follow the text; reversed spans are an invalid request."""
        with pytest.raises(InvalidRequest):
            pair_tokens([(4, 8), (0, 4)], TARGET)
