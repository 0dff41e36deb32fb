"""Corpus input under the formats: which files a corpus path names, their bytes and lines, and
how a bad record is reported (stop, or skip and count). Shared by rag.corpus and rag.wikiextractor;
imports neither, so both import it at the top.
"""
from __future__ import annotations

import bz2
import codecs
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from rag.types import Passage, RagError

# Annotations name rag.corpus's ReadReport and SplitConfig as strings: rag.corpus imports this module.

@dataclass(frozen=True)
class SplitConfig:
    """DPR splits articles into disjoint 100-word blocks; a tail shorter than `min_words` joins the block before it."""

    words_per_passage: int = 100
    min_words: int = 20


def split_passages(doc_id: str, title: str, text: str, config: SplitConfig = SplitConfig()) -> list[Passage]:
    words = text.split()
    n = config.words_per_passage
    chunks = [words[i : i + n] for i in range(0, len(words), n)]
    if len(chunks) > 1 and len(chunks[-1]) < config.min_words:
        chunks[-2].extend(chunks.pop())
    return [Passage(f"{doc_id}-{i}", title, " ".join(c)) for i, c in enumerate(chunks)]


WIKI_FILE = re.compile(r"wiki_\d{2,}(\.bz2)?")  # WikiExtractor's files, AA/wiki_00 ..., .bz2 with --compress
_FOLDER_KINDS = {".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv"}


# --- bad input ------------------------------------------------------------------------------------


def clip(text: str, limit: int = 200) -> str:
    """Input quoted in a message, cut to `limit` characters: a 1 MB line must not become a 1 MB error."""
    return text if len(text) <= limit else text[:limit] + "..."


def bad(report: ReadReport, on_error: str, where: str, what: str) -> None:
    msg = f"{where}: {what}"
    if on_error == "raise":
        raise RagError(msg + " (use --skip-bad to skip bad records)")
    report.skipped.append(msg)


# --- a file's bytes and lines ---------------------------------------------------------------------


def open_bytes(path: Path):
    if path.suffix == ".bz2":
        return bz2.open(path, "rb")
    if path.suffix == ".gz":
        import gzip

        return gzip.open(path, "rb")
    return open(path, "rb")


@dataclass
class Lines:
    """A text file's lines, decoded from UTF-8 one line at a time.

    Decoding per line (not by a text-mode file, which decodes 8 KB chunks) names a bad byte by
    its line and its offset in the file, and lets `on_error="skip"` drop that line and read on.
    `line` is the 1-based number of the line last read: a CSV record's line even when the csv
    module reads several lines for it or a bad line was skipped.
    """

    path: Path
    on_error: str
    report: ReadReport
    line: int = 0

    def __iter__(self) -> Iterator[str]:
        offset = 0  # bytes before this line (of the uncompressed text for .bz2/.gz)
        unpacked = " of the uncompressed text" if self.path.suffix in (".bz2", ".gz") else ""
        with open_bytes(self.path) as f:
            for self.line, raw in enumerate(f, 1):
                try:
                    # Files saved by Windows tools start with a BOM; left in, it hides the first field name.
                    text = raw[len(codecs.BOM_UTF8) :].decode("utf-8") if self.line == 1 and raw.startswith(codecs.BOM_UTF8) else raw.decode("utf-8")
                except UnicodeDecodeError as e:
                    bad(self.report, self.on_error, f"{self.path}:{self.line}", f"not UTF-8 text ({e.reason}: byte 0x{raw[e.start]:02x} at byte {offset + e.start}{unpacked})")
                else:
                    yield text
                offset += len(raw)


class read_errors:
    """Turns a broken compressed stream or an unreadable file into a RagError naming the file."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self):
        return self

    def __exit__(self, typ, e, tb):
        if isinstance(e, EOFError):
            raise RagError(f"{self.path}: file is truncated ({e})") from e
        if isinstance(e, OSError):
            raise RagError(f"{self.path}: cannot read ({e})") from e
        return False


# --- which files a corpus names ------------------------------------------------------------------


def folder_format(folder: Path) -> str:
    """WikiExtractor output, a folder of only .jsonl/.json or only .csv files, else a dataset saved by `save_to_disk`."""
    if wiki_files(folder):
        return "wikiextractor"
    kinds = {_FOLDER_KINDS.get(_suffix(p)) for p in folder_files(folder)}
    return kinds.pop() if len(kinds) == 1 and None not in kinds else "hf"  # save_to_disk writes .arrow beside its .json


def _suffix(path: Path) -> str:
    """The suffix under a compression suffix: 'a.jsonl.gz' -> '.jsonl'."""
    return Path(path.name.lower().removesuffix(".bz2").removesuffix(".gz")).suffix


def folder_files(folder: Path) -> list[Path]:
    """A folder's files at any depth in sorted path order, less hidden ones (.DS_Store, .gitattributes)."""
    files = (p for p in files_under(folder) if not any(part.startswith(".") for part in p.relative_to(folder).parts))
    return sorted(files, key=lambda p: p.relative_to(folder).parts)


def files_under(folder: Path) -> Iterator[Path]:
    """Every file at any depth under `folder`, through links to folders too (a corpus put together
    from links to parts of another: Path.rglob does not follow them), each real folder once, so a
    link back up the tree cannot loop."""
    seen: set[str] = set()
    for root, dirs, names in os.walk(folder, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:
            dirs.clear()
            continue
        seen.add(real)
        yield from (Path(root) / name for name in names if (Path(root) / name).is_file())


def is_wiki_file(path: Path) -> bool:
    return WIKI_FILE.fullmatch(path.name) is not None


def wiki_files(folder: Path) -> list[Path]:
    """The wiki_NN files at any depth under `folder`, in sorted path order (AA/wiki_00, ..., AB/wiki_00, ...)."""
    return sorted((p for p in files_under(folder) if is_wiki_file(p)), key=lambda p: p.relative_to(folder).parts)


def each_file(read: Callable) -> Callable:
    """A reader that takes a folder too: its files in sorted path order, each error naming its own file.

    A record without an id is named by its file and its position there ('part-1.jsonl:0'), as
    positions alone repeat from file to file.
    """

    def read_files(path: Path, split: SplitConfig, on_error: str, report: ReadReport) -> Iterator[tuple[str, Passage]]:
        if not path.is_dir():
            yield from read(path, split, on_error, report)
            return
        for file in folder_files(path):
            yield from read(file, split, on_error, report, prefix=f"{file.relative_to(path).as_posix()}:")

    return read_files
