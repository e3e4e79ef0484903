"""The shipped anchor corpus: real, licensed, well-formed, and split by passage."""

from __future__ import annotations

from pathlib import Path

import pytest

from latentmas_mesh.anchors import (
    anchor_corpus_path,
    anchor_corpus_sha256,
    load_anchor_passages,
    split_anchor_passages,
)
from latentmas_mesh.errors import InvalidRequest


class TestAnchorCorpus:
    def test_corpus_ships_four_hundred_passages_of_ten_works(self):
        """The package carries 400 passages, 40 from each of ten public-domain works."""
        passages = load_anchor_passages()

        assert 400 == len(passages)
        assert 10 == len({p.work for p in passages})

    def test_every_passage_is_prose_of_the_documented_length(self):
        """Each passage has 220 to 420 words and names no distributor."""
        passages = load_anchor_passages()

        assert all(220 <= len(p.text.split()) <= 420 for p in passages)
        assert not any("gutenberg" in p.text.lower() for p in passages)

    def test_licence_file_lies_next_to_the_corpus(self):
        """The source and licence of every work are recorded beside the data file."""
        readme = anchor_corpus_path().parent / "ANCHORS.md"
        works = {p.work for p in load_anchor_passages()}

        assert all(work in readme.read_text(encoding="utf-8") for work in works)

    def test_corpus_hash_is_stable_hex(self):
        """The content hash that W-matrix metadata records is a sha256 hex digest."""
        digest = anchor_corpus_sha256()

        assert 64 == len(digest)
        assert digest == anchor_corpus_sha256()

    def test_malformed_line_is_an_invalid_request(self, tmp_path: Path):
        """A corpus line that is not a passage record is refused with its line number."""
        bad = tmp_path / "anchors.jsonl"
        bad.write_text('{"id": "x"}\n', encoding="utf-8")

        with pytest.raises(InvalidRequest, match=":1:"):
            load_anchor_passages(bad)


class TestSplit:
    def test_split_is_by_passage_disjoint_and_complete(self):
        """Fit and held-out parts share no passage and together hold all of them."""
        passages = load_anchor_passages()

        fit, held_out = split_anchor_passages(passages)

        assert set() == {p.id for p in fit} & {p.id for p in held_out}
        assert len(passages) == len(fit) + len(held_out)

    def test_split_holds_out_a_quarter_of_every_work(self):
        """Each work gives 10 of its 40 passages to the held-out part by default."""
        _, held_out = split_anchor_passages(load_anchor_passages())
        per_work: dict[str, int] = {}
        for passage in held_out:
            per_work[passage.work] = per_work.get(passage.work, 0) + 1

        assert {10} == set(per_work.values())
        assert 10 == len(per_work)

    def test_split_depends_only_on_the_seed(self):
        """The same seed gives the same split; another seed another one."""
        passages = load_anchor_passages()

        first = split_anchor_passages(passages, seed=1)[1]
        again = split_anchor_passages(passages, seed=1)[1]
        other = split_anchor_passages(passages, seed=2)[1]

        assert first == again
        assert first != other

    def test_fraction_outside_the_open_unit_interval_is_refused(self):
        """A held-out fraction of 0 or 1 would leave nothing to fit or to measure."""
        with pytest.raises(InvalidRequest):
            split_anchor_passages(load_anchor_passages(), held_out_fraction=1.0)
