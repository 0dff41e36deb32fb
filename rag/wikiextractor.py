"""WikiExtractor output (`WikiExtractor.py --compress`) -> passages: folders AA/, AB/, ... of `wiki_NN`
or `wiki_NN.bz2` files, each a run of <doc> blocks of plain text, one paragraph a line:

    <doc id="12" url="http://en.wikipedia.org/wiki?curid=12" title="Anarchism">
    Anarchism                      <- the title again: dropped

    Anarchism is a political ...   <- paragraphs: kept
    Etymology and terminology.     <- a section heading: dropped (see `is_heading`)
    The term "anarchism" is ...
    </doc>

"""
from __future__ import annotations

import html
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from rag.corpus_files import Lines, bad, clip, read_errors, split_passages, wiki_files
from rag.types import Passage, RagError

# Annotations name rag.corpus.ReadReport as a string: rag.corpus imports this module.

_DOC_START = re.compile(r"<doc[\s>]")
_ATTRIBUTE = re.compile(r'(\w+)="([^"]*)"')

# A heading is a short line ending in "." (WikiExtractor ends every heading with one) with no
# other sentence punctuation (. ? ! ;) inside, that does not start in lower case (that is a
# sentence's tail after a dropped formula or list) and has no auxiliary verb. Measured on 30 of
# the shared files: of ~7,500 short "."-lines, the ~170 with one of these verbs are one-sentence
# paragraphs ("Makro is in Eccles."), kept; of the rest, dropped, about 1 in 100 is a sentence
# too, mostly of 7-10 words ("Cossiga died on 17 August 2010 from respiratory problems."): a
# verb list cannot know every verb. Lines without a final "." are kept: on this data they are
# text ("instead of" inside a sentence, a quote's lead-in ending in ":"), not headings.
HEADING_MAX_WORDS = 10
_INNER_STOP = re.compile(r"[.?!;]")
_VERB = re.compile(r"\b(is|are|was|were|be|been|being|has|have|had|do|does|did|will|would|can|could|may|might|shall|should|must)\b", re.IGNORECASE)


def is_heading(line: str) -> bool:
    s = line.strip()
    return (
        bool(s)
        and len(s.split()) <= HEADING_MAX_WORDS
        and s.endswith(".")
        and not _INNER_STOP.search(s[:-1])
        and not s[0].islower()
        and not _VERB.search(s)
    )


@dataclass
class _Doc:
    """The <doc> block being read: where it starts, its page id and title, its kept lines."""

    line: int
    page_id: str
    title: str
    lines: list[str] = field(default_factory=list)

    def text(self) -> str:
        body = [s for s in self.lines if s]
        if body and body[0] == self.title:  # WikiExtractor repeats the title as the first line
            body = body[1:]
        return " ".join(s for s in body if not is_heading(s))


def read_wikiextractor(path: Path, split: SplitConfig, on_error: str, report: ReadReport) -> Iterator[tuple[str, Passage]]:
    """A folder of WikiExtractor output (its wiki_NN files in sorted path order) or one wiki_NN file."""
    files = wiki_files(path) if path.is_dir() else [path]
    if not files:
        raise RagError(f"{path}: no wiki_NN or wiki_NN.bz2 files (WikiExtractor output) in this folder")
    for file in files:
        yield from _read_file(file, split, on_error, report)


def _read_file(path: Path, split: SplitConfig, on_error: str, report: ReadReport) -> Iterator[tuple[str, Passage]]:
    lines = Lines(path, on_error, report)
    doc: _Doc | None = None
    inside = False  # between a <doc> line and its </doc>, also when the <doc> line was bad and skipped
    start = 0
    with read_errors(path):
        try:
            for line in lines:
                s = line.strip()
                if _DOC_START.match(s):
                    if inside:
                        bad(report, on_error, f"{path}:{start}", f"<doc> not closed: a new <doc> starts at line {lines.line} before </doc>")
                    inside, start, doc = True, lines.line, _parse_doc_line(s, lines.line)
                    if doc is None:
                        bad(report, on_error, f"{path}:{start}", f"<doc> line without an id and a title: {clip(s)}")
                elif s == "</doc>" and inside:
                    if doc is not None and (text := doc.text()):
                        report.documents += 1
                        where = f"{path}:{doc.line}"
                        yield from ((where, p) for p in split_passages(doc.page_id, doc.title, text, split))
                    inside, doc = False, None
                elif doc is not None:
                    doc.lines.append(s)
                elif s and not inside:
                    bad(report, on_error, f"{path}:{lines.line}", f"text outside a <doc> block: {clip(s)}")
        except EOFError as e:  # a .bz2 cut short: name the last line read, not just the file
            raise RagError(f"{path}:{lines.line}: file is truncated ({e}); read {report.documents} documents") from e
    if inside:
        bad(report, on_error, f"{path}:{start}", f"<doc> not closed: the file ends at line {lines.line} before </doc>")


def _parse_doc_line(s: str, line: int) -> _Doc | None:
    """`<doc id="12" url="..." title="Anarchism">` -> a _Doc; None without a non-empty id and title."""
    attributes = {k: html.unescape(v) for k, v in _ATTRIBUTE.findall(s)}
    page_id, title = attributes.get("id", "").strip(), attributes.get("title", "").strip()
    if not s.endswith(">") or not page_id or not title:
        return None
    return _Doc(line, page_id, title)
