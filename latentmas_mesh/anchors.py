"""The shipped anchor corpus (spec 4.3): public-domain passages every model reads for fitting."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Final, Protocol

from latentmas_mesh.errors import InvalidRequest

ANCHOR_FILE: Final = "anchors.jsonl"
HELD_OUT_FRACTION_DEFAULT: Final = 0.25
ANCHOR_PASSAGES_MAX: Final = 100_000
KIND_FILE: Final = "text_kinds.jsonl"
TEXT_KINDS: Final = ("narrative", "technical", "code", "dialogue", "formal", "structured")
KIND_PASSAGES_MAX: Final = 100_000
_KIND_FIELDS: Final = ("id", "kind", "source", "title", "licence", "origin", "text")


@dataclass(frozen=True, slots=True)
class AnchorPassage:
    """One passage: continuous prose of one work, 220-420 words (see data/ANCHORS.md)."""

    id: str
    work: str
    author: str
    title: str
    year: int
    ebook: int
    text: str


def anchor_corpus_path() -> Path:
    """Where the shipped corpus lies inside the installed package."""
    return Path(str(files("latentmas_mesh").joinpath("data", ANCHOR_FILE)))


def load_anchor_passages(path: Path | None = None) -> tuple[AnchorPassage, ...]:
    """Every passage of the corpus at `path` (default: the shipped one), in file order.

    Raises InvalidRequest when a line is not a passage record, or the file holds more than
    ANCHOR_PASSAGES_MAX passages or repeats an id.
    """
    if path is None:
        return _shipped_passages()
    return _read_passages(path)


@cache
def _shipped_passages() -> tuple[AnchorPassage, ...]:
    return _read_passages(anchor_corpus_path())


def _read_passages(path: Path) -> tuple[AnchorPassage, ...]:
    passages: list[AnchorPassage] = []
    seen: set[str] = set()
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            if len(passages) >= ANCHOR_PASSAGES_MAX:
                raise InvalidRequest(f"{path}: more than {ANCHOR_PASSAGES_MAX} passages")
            passage = _passage_of(line, f"{path}:{number}")
            if passage.id in seen:
                raise InvalidRequest(f"{path}:{number}: passage id {passage.id!r} repeated")
            seen.add(passage.id)
            passages.append(passage)
    return tuple(passages)


def _passage_of(line: str, where: str) -> AnchorPassage:
    try:
        record = json.loads(line)
        return AnchorPassage(
            id=str(record["id"]),
            work=str(record["work"]),
            author=str(record["author"]),
            title=str(record["title"]),
            year=int(record["year"]),
            ebook=int(record["ebook"]),
            text=str(record["text"]),
        )
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidRequest(f"{where}: not an anchor passage record ({exc})") from exc


def anchor_corpus_sha256(path: Path | None = None) -> str:
    """Content hash of a corpus file: W-matrix metadata names the exact anchors it was fitted on."""
    data = (path or anchor_corpus_path()).read_bytes()
    return hashlib.sha256(data).hexdigest()


def split_anchor_passages(
    passages: tuple[AnchorPassage, ...],
    *,
    held_out_fraction: float = HELD_OUT_FRACTION_DEFAULT,
    seed: int = 0,
) -> tuple[tuple[AnchorPassage, ...], tuple[AnchorPassage, ...]]:
    """Split by passage into (fit, held_out), stratified by work, deterministic in `seed`.

    Every work contributes round(held_out_fraction x its passages) held-out passages, chosen by a
    hash of (seed, id), so a map is always measured on passages no row of its fit came from and
    on every kind of prose the corpus has. Order inside each part follows the input order.
    """
    if not 0.0 < held_out_fraction < 1.0:
        raise InvalidRequest(f"held_out_fraction must be in (0, 1), got {held_out_fraction}")
    by_work: dict[str, list[AnchorPassage]] = {}
    for passage in passages:
        by_work.setdefault(passage.work, []).append(passage)
    held_out_ids: set[str] = set()
    for group in by_work.values():
        count = round(held_out_fraction * len(group))
        ranked = sorted(group, key=lambda p: hashlib.sha256(f"{seed}:{p.id}".encode()).digest())
        held_out_ids.update(p.id for p in ranked[:count])
    fit = tuple(p for p in passages if p.id not in held_out_ids)
    held_out = tuple(p for p in passages if p.id in held_out_ids)
    return fit, held_out


def interleave_works(passages: tuple[AnchorPassage, ...]) -> tuple[AnchorPassage, ...]:
    """The passages ordered round-robin over works, so any prefix samples every work."""
    by_work: dict[str, list[AnchorPassage]] = {}
    for passage in passages:
        by_work.setdefault(passage.work, []).append(passage)
    rounds = max((len(group) for group in by_work.values()), default=0)
    return tuple(g[i] for i in range(rounds) for g in by_work.values() if i < len(g))


class Passage(Protocol):
    """What a model reads of a passage, anchor or kind: its stable id and its text."""

    @property
    def id(self) -> str: ...

    @property
    def text(self) -> str: ...


@dataclass(frozen=True, slots=True)
class KindPassage:
    """One passage of the kinds corpus: consecutive text of one source, labelled by its kind.

    The anchors are all 19th-century prose; these passages (data/TEXT_KINDS.md) let a map be
    fitted on some kinds of text and measured on a kind it never saw (leave one kind out).
    """

    id: str
    kind: str
    source: str
    title: str
    licence: str
    origin: str
    text: str


KIND_HELD_OUT_DEFAULT: Final = 10
"""Passages of each kind held out of every fit (`split_kind_passages`)."""


def kind_corpus_path() -> Path:
    """Where the shipped kinds corpus lies inside the installed package."""
    return Path(str(files("latentmas_mesh").joinpath("data", KIND_FILE)))


def load_kind_passages(path: Path | None = None) -> tuple[KindPassage, ...]:
    """Every passage of the kinds corpus at `path` (default: the shipped one), in file order.

    Raises InvalidRequest when a line is not a passage record (a field missing or not a string,
    a kind not in TEXT_KINDS, an id not `<kind>-<source>-...`), or the file holds more than
    KIND_PASSAGES_MAX passages or repeats an id: a measurement must not silently run on a
    corpus other than the one it names.
    """
    if path is None:
        return _shipped_kind_passages()
    return _read_kind_passages(path)


def split_kind_passages(
    held_out_per_kind: int = KIND_HELD_OUT_DEFAULT, path: Path | None = None
) -> tuple[dict[str, tuple[KindPassage, ...]], dict[str, tuple[KindPassage, ...]]]:
    """(fit, held_out) passages of each kind, split once for every user: each kind's passages
    are ordered by taking one from each of its sources in turn, its first `held_out_per_kind`
    are held out (measured, never fitted on, never used for a choice), the rest may be fitted.
    Any prefix of either part spreads over the kind's documents."""
    fit: dict[str, tuple[KindPassage, ...]] = {}
    held_out: dict[str, tuple[KindPassage, ...]] = {}
    passages = load_kind_passages(path)
    for kind in TEXT_KINDS:
        by_source: dict[str, list[KindPassage]] = {}
        for passage in passages:
            if passage.kind == kind:
                by_source.setdefault(passage.source, []).append(passage)
        queues = list(by_source.values())
        turn: list[KindPassage] = []
        while any(queues):
            turn.extend(queue.pop(0) for queue in queues if queue)
        held_out[kind], fit[kind] = tuple(turn[:held_out_per_kind]), tuple(turn[held_out_per_kind:])
    return fit, held_out


@cache
def _shipped_kind_passages() -> tuple[KindPassage, ...]:
    return _read_kind_passages(kind_corpus_path())


def _read_kind_passages(path: Path) -> tuple[KindPassage, ...]:
    passages: list[KindPassage] = []
    seen: set[str] = set()
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            if len(passages) >= KIND_PASSAGES_MAX:
                raise InvalidRequest(f"{path}: more than {KIND_PASSAGES_MAX} passages")
            passage = _kind_passage_of(line, f"{path}:{number}")
            if passage.id in seen:
                raise InvalidRequest(f"{path}:{number}: passage id {passage.id!r} repeated")
            seen.add(passage.id)
            passages.append(passage)
    return tuple(passages)


def _kind_passage_of(line: str, where: str) -> KindPassage:
    try:
        record = json.loads(line)
    except ValueError as exc:
        raise InvalidRequest(f"{where}: not a kind passage record ({exc})") from exc
    if not isinstance(record, dict):
        raise InvalidRequest(f"{where}: not a kind passage record (not a JSON object)")
    values: dict[str, str] = {}
    for field in _KIND_FIELDS:
        value = record.get(field)
        if not isinstance(value, str) or not value:
            raise InvalidRequest(f"{where}: field {field!r} missing or not a non-empty string")
        values[field] = value
    passage = KindPassage(**values)
    if passage.kind not in TEXT_KINDS:
        raise InvalidRequest(f"{where}: unknown kind {passage.kind!r}, not one of {TEXT_KINDS}")
    if not passage.id.startswith(f"{passage.kind}-{passage.source}-"):
        raise InvalidRequest(f"{where}: id {passage.id!r} does not name its kind and source")
    return passage


def kind_corpus_sha256(path: Path | None = None) -> str:
    """Content hash of a kinds corpus file, so a measurement names the exact passages it used."""
    data = (path or kind_corpus_path()).read_bytes()
    return hashlib.sha256(data).hexdigest()


__all__ = [
    "ANCHOR_FILE",
    "HELD_OUT_FRACTION_DEFAULT",
    "KIND_FILE",
    "KIND_HELD_OUT_DEFAULT",
    "KIND_PASSAGES_MAX",
    "TEXT_KINDS",
    "AnchorPassage",
    "KindPassage",
    "Passage",
    "anchor_corpus_path",
    "anchor_corpus_sha256",
    "interleave_works",
    "kind_corpus_path",
    "kind_corpus_sha256",
    "load_anchor_passages",
    "load_kind_passages",
    "split_anchor_passages",
    "split_kind_passages",
]
