"""Rebuild latentmas_mesh/data/anchors.jsonl from plain-text public-domain books (one-off tool).

Usage: python scripts/build_anchor_corpus.py SOURCE_DIR [OUT_FILE]

SOURCE_DIR holds the books named in WORKS as `<file>.txt`, each a plain-text edition with a
`*** START OF ...` / `*** END OF ...` wrapper. Everything outside the wrapper (the distributor's
header, licence and trademark text) is dropped, as is any paragraph naming the distributor; what is
kept is the authors' public-domain text only. Passages are runs of consecutive prose paragraphs
(no headings, verse, tables or notes) of ANCHOR_WORDS_MIN..ANCHOR_WORDS_MAX words, sampled evenly
through each book, so each passage is continuous text a model can be scored on.
"""

from __future__ import annotations

import json
import re
import sys
import unicodedata
from pathlib import Path

# (file stem, work id, author, title, first published, ebook number of the edition used, the
# author's first words: editors' prefaces and introductions before them are skipped)
WORKS: tuple[tuple[str, str, str, str, int, int, str], ...] = (
    (
        "pride_and_prejudice",
        "austen-pride",
        "Jane Austen",
        "Pride and Prejudice",
        1813,
        1342,
        "It is a truth universally acknowledged",
    ),
    (
        "moby_dick",
        "melville-moby-dick",
        "Herman Melville",
        "Moby-Dick; or, The Whale",
        1851,
        2701,
        "Call me Ishmael.",
    ),
    (
        "tale_of_two_cities",
        "dickens-two-cities",
        "Charles Dickens",
        "A Tale of Two Cities",
        1859,
        98,
        "It was the best of times",
    ),
    (
        "frankenstein",
        "shelley-frankenstein",
        "Mary Shelley",
        "Frankenstein",
        1818,
        84,
        "You will rejoice to hear",
    ),
    (
        "walden",
        "thoreau-walden",
        "Henry David Thoreau",
        "Walden",
        1854,
        205,
        "When I wrote the following pages",
    ),
    (
        "on_liberty",
        "mill-liberty",
        "John Stuart Mill",
        "On Liberty",
        1859,
        34901,
        "The subject of this Essay",
    ),
    (
        "sherlock_holmes",
        "doyle-holmes",
        "Arthur Conan Doyle",
        "The Adventures of Sherlock Holmes",
        1892,
        1661,
        "To Sherlock Holmes she is always",
    ),
    (
        "time_machine",
        "wells-time-machine",
        "H. G. Wells",
        "The Time Machine",
        1895,
        35,
        "The Time Traveller (for so",
    ),
    (
        "jekyll_and_hyde",
        "stevenson-jekyll",
        "Robert Louis Stevenson",
        "The Strange Case of Dr. Jekyll and Mr. Hyde",
        1886,
        43,
        "Mr. Utterson the lawyer",
    ),
    (
        "how_the_other_half_lives",
        "riis-other-half",
        "Jacob A. Riis",
        "How the Other Half Lives",
        1890,
        45502,
        "Long ago it was said",
    ),
)
ANCHOR_WORDS_MIN = 220
ANCHOR_WORDS_MAX = 420
PARAGRAPH_WORDS_MIN = 25
PASSAGES_PER_WORK_MAX = 40
_DROP = re.compile(r"gutenberg|pgdp|http|www\.|transcriber|\[|\]|illustration", re.IGNORECASE)
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"'”’)]*\s+")


def body_of(raw: str, first_words: str) -> str:
    """The author's text: from `first_words` to the END marker, with plain line ends."""
    text = raw.replace("\r\n", "\n")
    start = re.search(r"^\*\*\* ?START OF.*$", text, re.MULTILINE)
    end = re.search(r"^\*\*\* ?END OF.*$", text, re.MULTILINE)
    if start is None or end is None:
        raise SystemExit("no START/END markers: not a supported plain-text edition")
    body = text[start.end() : end.start()]
    begin = body.find(first_words)
    if begin < 0:
        raise SystemExit(f"first words {first_words!r} not found")
    return body[body.rfind("\n", 0, begin) + 1 :]


def prose_paragraphs(body: str) -> list[str | None]:
    """Paragraphs unwrapped to one line; None marks a break (heading, verse, note, table)."""
    out: list[str | None] = []
    for block in re.split(r"\n\s*\n", body):
        lines = [line for line in block.split("\n") if line.strip()]
        if not lines:
            continue
        indented = sum(line.startswith("    ") for line in lines) > len(lines) // 2
        text = " ".join(line.strip() for line in lines)
        text = re.sub(r"_(.+?)_", r"\1", text)
        text = unicodedata.normalize("NFC", re.sub(r"\s+", " ", text)).strip()
        words = len(text.split())
        letters = [c for c in text if c.isalpha()]
        shouting = bool(letters) and sum(c.isupper() for c in letters) > 0.5 * len(letters)
        if indented or shouting or words < PARAGRAPH_WORDS_MIN or _DROP.search(text):
            out.append(None)
        else:
            out.append(text)
    return out


def passages_of(paragraphs: list[str | None]) -> list[str]:
    """Runs of consecutive prose paragraphs cut to ANCHOR_WORDS_MIN..ANCHOR_WORDS_MAX words."""
    passages: list[str] = []
    run: list[str] = []
    for paragraph in [*paragraphs, None]:
        if paragraph is None:
            run = []
            continue
        run.append(paragraph)
        joined = "\n\n".join(run)
        if len(joined.split()) >= ANCHOR_WORDS_MIN:
            passages.append(_trim(joined))
            run = []
    return passages


def _trim(text: str) -> str:
    """Cut a too-long passage at the last sentence end before ANCHOR_WORDS_MAX words."""
    if len(text.split()) <= ANCHOR_WORDS_MAX:
        return text
    kept = ""
    for piece in _SENTENCE_END.split(text):
        candidate = f"{kept} {piece}".strip() if kept else piece
        if len(candidate.split()) > ANCHOR_WORDS_MAX:
            break
        kept = candidate
    if len(kept.split()) >= ANCHOR_WORDS_MIN:
        return kept
    return " ".join(text.split()[:ANCHOR_WORDS_MAX])


def evenly(items: list[str], count: int) -> list[str]:
    """`count` items spread evenly through `items` (all of them if there are fewer)."""
    if len(items) <= count:
        return items
    return [items[(i * len(items)) // count] for i in range(count)]


def main(source_dir: Path, out_file: Path) -> None:
    records: list[dict[str, object]] = []
    for stem, work, author, title, year, ebook, first_words in WORKS:
        raw = (source_dir / f"{stem}.txt").read_text(encoding="utf-8-sig")
        passages = passages_of(prose_paragraphs(body_of(raw, first_words)))
        chosen = evenly(passages, PASSAGES_PER_WORK_MAX)
        for index, text in enumerate(chosen):
            records.append(
                {
                    "id": f"{work}-{index:03d}",
                    "work": work,
                    "author": author,
                    "title": title,
                    "year": year,
                    "ebook": ebook,
                    "text": text,
                }
            )
        print(f"{work:24s} {len(chosen):4d} passages", file=sys.stderr)
    with out_file.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    print(f"{len(records)} passages -> {out_file}", file=sys.stderr)


if __name__ == "__main__":
    default_out = Path(__file__).resolve().parents[1] / "latentmas_mesh" / "data" / "anchors.jsonl"
    main(Path(sys.argv[1]), Path(sys.argv[2]) if len(sys.argv) > 2 else default_out)
