"""The shipped kinds corpus: six labelled kinds of text, licensed, bounded, and validated."""

from __future__ import annotations

import json
import re
import shutil
import unicodedata
from collections import Counter
from pathlib import Path

import pytest

from latentmas_mesh.anchors import (
    TEXT_KINDS,
    KindPassage,
    kind_corpus_path,
    kind_corpus_sha256,
    load_kind_passages,
)
from latentmas_mesh.errors import InvalidRequest

ALLOWED_LICENCES = {
    "LicenseRef-Public-Domain",
    "CC0-1.0",
    "PSF-2.0",
    "MIT",
    "BSD-3-Clause",
    "Apache-2.0",
    "Zlib",
}


def _record(**changes: str) -> dict[str, str]:
    record = {
        "id": "code-demo-000",
        "kind": "code",
        "source": "demo",
        "title": "A demo",
        "licence": "MIT",
        "origin": "/nowhere/demo.py",
        "text": "x = 1\n",
    }
    record.update(changes)
    return record


def _write(path: Path, *lines: object) -> Path:
    path.write_text(
        "".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines),
        encoding="utf-8",
    )
    return path


class TestShippedCorpus:
    def test_corpus_loads_as_kind_passages(self):
        """The package carries the corpus and every line is a KindPassage."""
        passages = load_kind_passages()

        assert passages
        assert all(isinstance(p, KindPassage) for p in passages)
        assert passages is load_kind_passages()  # the shipped corpus is read once

    def test_every_kind_has_forty_passages_from_three_sources(self):
        """Leave-one-kind-out needs each kind well represented and not from one document."""
        passages = load_kind_passages()

        for kind in TEXT_KINDS:
            of_kind = [p for p in passages if p.kind == kind]
            assert len(of_kind) >= 40, kind
            assert len({p.source for p in of_kind}) >= 3, kind
        assert set(TEXT_KINDS) == {p.kind for p in passages}

    def test_passages_have_the_documented_length(self):
        """Code has 40 to 120 lines; every other kind 150 to 400 words."""
        for passage in load_kind_passages():
            if passage.kind == "code":
                assert 40 <= len(passage.text.split("\n")) <= 120, passage.id
            else:
                assert 150 <= len(passage.text.split()) <= 400, passage.id

    def test_text_is_normalised(self):
        """NFC, no trailing spaces, no leading or trailing blank lines."""
        for passage in load_kind_passages():
            text = passage.text
            assert unicodedata.normalize("NFC", text) == text, passage.id
            assert all(line == line.rstrip() for line in text.split("\n")), passage.id
            assert text == text.strip("\n"), passage.id

    def test_ids_are_unique_and_numbered_per_source(self):
        """Ids are `<kind>-<source>-<NNN>`, numbered 000, 001, ... within each source."""
        passages = load_kind_passages()
        per_source: Counter[str] = Counter()

        for passage in passages:
            expected = f"{passage.kind}-{passage.source}-{per_source[passage.source]:03d}"
            assert expected == passage.id
            assert re.fullmatch(r"[a-z]+-[a-z0-9.\-]+-\d{3}", passage.id)
            per_source[passage.source] += 1
        assert len(passages) == len({p.id for p in passages})

    def test_every_source_is_one_document_of_one_kind(self):
        """A source keeps one kind, title, licence and origin across its passages."""
        described: dict[str, tuple[str, str, str, str]] = {}
        for p in load_kind_passages():
            described.setdefault(p.source, (p.kind, p.title, p.licence, p.origin))
            assert described[p.source] == (p.kind, p.title, p.licence, p.origin)

    def test_every_licence_is_permissive_or_public_domain(self):
        """Only licences that allow redistributing excerpts are used."""
        assert {p.licence for p in load_kind_passages()} <= ALLOWED_LICENCES

    def test_every_source_is_documented_beside_the_corpus(self):
        """TEXT_KINDS.md lists each source with its licence and origin."""
        readme = (kind_corpus_path().parent / "TEXT_KINDS.md").read_text(encoding="utf-8")

        for p in load_kind_passages():
            assert f"`{p.source}`" in readme
            assert p.origin in readme

    def test_corpus_is_small_enough_to_ship(self):
        """The data file stays under 3 MB."""
        assert kind_corpus_path().stat().st_size < 3_000_000


class TestValidation:
    def test_a_good_file_loads(self, tmp_path: Path):
        """A well-formed temporary corpus loads in file order, blank lines skipped."""
        path = _write(
            tmp_path / "kinds.jsonl",
            _record(),
            "",
            _record(id="formal-x-000", kind="formal", source="x"),
        )

        passages = load_kind_passages(path)

        assert ["code-demo-000", "formal-x-000"] == [p.id for p in passages]

    @pytest.mark.parametrize(
        "line",
        [
            "not json",
            "[1, 2]",
            json.dumps({k: v for k, v in _record().items() if k != "licence"}),
            json.dumps({**_record(), "text": 3}),
            json.dumps(_record(text="")),
            json.dumps(_record(kind="poetry", id="poetry-demo-000")),
            json.dumps(_record(id="code-other-000")),
        ],
        ids=[
            "not-json",
            "not-object",
            "missing-field",
            "not-string",
            "empty",
            "unknown-kind",
            "id-mismatch",
        ],
    )
    def test_bad_record_is_an_invalid_request(self, tmp_path: Path, line: str):
        """A line that is not a kind passage record is refused with its line number."""
        path = _write(tmp_path / "kinds.jsonl", _record(), line)

        with pytest.raises(InvalidRequest, match=":2:"):
            load_kind_passages(path)

    def test_repeated_id_is_an_invalid_request(self, tmp_path: Path):
        """Two passages with one id are refused."""
        path = _write(tmp_path / "kinds.jsonl", _record(), _record(text="y = 2"))

        with pytest.raises(InvalidRequest, match="repeated"):
            load_kind_passages(path)

    def test_too_many_passages_is_an_invalid_request(self, tmp_path: Path, monkeypatch):
        """The number of passages read is bounded."""
        monkeypatch.setattr("latentmas_mesh.anchors.KIND_PASSAGES_MAX", 1)
        path = _write(tmp_path / "kinds.jsonl", _record(), _record(id="code-demo-001"))

        with pytest.raises(InvalidRequest, match="more than 1 passages"):
            load_kind_passages(path)


class TestHash:
    def test_hash_is_stable_hex(self):
        """The shipped corpus hashes to the same sha256 hex digest on every call."""
        digest = kind_corpus_sha256()

        assert re.fullmatch(r"[0-9a-f]{64}", digest)
        assert digest == kind_corpus_sha256()
        assert digest == kind_corpus_sha256(kind_corpus_path())

    def test_hash_changes_with_the_file(self, tmp_path: Path):
        """Changing one byte of a corpus changes its hash."""
        copy = tmp_path / "kinds.jsonl"
        shutil.copyfile(kind_corpus_path(), copy)
        before = kind_corpus_sha256(copy)

        copy.write_bytes(copy.read_bytes().replace(b"a", b"b", 1))

        assert kind_corpus_sha256() == before
        assert before != kind_corpus_sha256(copy)


def test_the_kind_split_holds_out_the_same_passages_for_every_fit():
    """Each kind's first held-out passages spread over its sources; fit and held-out never
    share a passage; the split is the same at every call."""
    from latentmas_mesh.anchors import TEXT_KINDS, split_kind_passages

    fit, held_out = split_kind_passages(10)
    again_fit, again_held_out = split_kind_passages(10)

    for kind in TEXT_KINDS:
        assert 10 == len(held_out[kind])
        assert not {p.id for p in fit[kind]} & {p.id for p in held_out[kind]}
        assert len({p.source for p in held_out[kind][:3]}) == 3
        assert {kind} == {p.kind for p in (*fit[kind], *held_out[kind])}
    assert (fit, held_out) == (again_fit, again_held_out)
