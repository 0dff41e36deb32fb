"""BM25Index: the sparse baseline, built from an index folder's PassageStore and saved beside it.

indexes/NAME/bm25/
    bm25.json                 format, passages covered, the sources they came from, BM25Config
    params.index.json ...     bm25s' own files: vocabulary and the CSC score matrix (no pickles)

Row i of the BM25 matrix is row i of the passage store, as for the FAISS index. Scoring is
bm25s (sparse matrices, one query at a time in numpy); eval/bm25_oracle.py's `reference_scorer` gives
the same scores from rank-bm25, the slow pure-Python baseline that tests and eval/ compare against.

Parameterization: BM25Config's defaults are DPR's BM25 baseline (Lucene BM25, k1=0.9, b=0.4,
Lucene's English stopwords, Porter/Snowball stemming). bm25s' "lucene" method scores
idf = log(1 + (N - df + 0.5) / (df + 0.5)) and tf / (tf + k1 (1 - b + b |d| / avgdl)); rank-bm25's
BM25Okapi has the same tf part times (k1 + 1) and idf = log((N - df + 0.5) / (df + 0.5)), floored
at epsilon * mean idf. The oracle swaps in the matching idf and divides by (k1 + 1), so
both give the same scores and rankings (bm25s "robertson" is BM25Okapi with epsilon=0).
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import sys
import threading
import unicodedata
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

from rag.files import ArtifactKind, fresh_scratch, is_scratch, publish_folder, remove_scratch
from rag.index import SearchResult
from rag.store import PassageStore
from rag.types import Passage, RagError

FORMAT = "rag-bm25 v1"
META = "bm25.json"
BM25_KIND = ArtifactKind("a BM25 index", META, FORMAT)
FOLDER = "bm25"  # inside an index folder
METHODS = ("lucene", "robertson", "atire")  # bm25s methods with a rank-bm25 equivalent

_WORD = re.compile(r"[^\W_]+")  # letters and digits: punctuation and underscores split words


@dataclass(frozen=True)
class BM25Config:
    k1: float = 0.9  # DPR's BM25 baseline (Lucene via Anserini)
    b: float = 0.4
    method: str = "lucene"
    stopwords: str | None = "en"  # Lucene's 33 English stopwords (bm25s.stopwords.STOPWORDS_EN), or None
    stemmer: str | None = "english"  # a PyStemmer (Snowball) language, or None

    def __post_init__(self):
        if self.method not in METHODS:
            raise RagError(f"unknown BM25 method {self.method!r}; valid: {', '.join(METHODS)}")


class Tokenizer:
    """Lowercase, split on anything that is not a letter or digit, drop stopwords, stem."""

    def __init__(self, config: BM25Config = BM25Config()):
        self.stopwords: frozenset[str] = frozenset()
        if config.stopwords == "en":
            from bm25s.stopwords import STOPWORDS_EN

            self.stopwords = frozenset(STOPWORDS_EN)
        elif config.stopwords is not None:
            raise RagError(f"unknown stopword list {config.stopwords!r}; valid: en, or none")
        self._stem = None
        self._lock = threading.Lock()
        if config.stemmer:
            import Stemmer

            try:
                self._stem = Stemmer.Stemmer(config.stemmer).stemWords
            except KeyError as e:
                raise RagError(f"unknown stemmer language {config.stemmer!r}; valid: {', '.join(Stemmer.algorithms())}") from e

    def __call__(self, text: str) -> list[str]:
        words = [w for w in _words(text) if w not in self.stopwords]
        if not self._stem:
            return words
        with self._lock:  # a PyStemmer stemmer is not thread-safe (the demo searches from worker threads)
            return self._stem(words)

    def ids(self, text: str, vocab: dict[str, int], cache: dict[str, int]) -> list[int]:
        """[vocab.setdefault(t, len(vocab)) for t in self(text)], with each word stemmed once per `cache`
        (word -> its token's id, -1 for a stopword): 1.6x faster over Wikipedia passages, same ids."""
        words = _words(text)
        new = [w for w in dict.fromkeys(words) if w not in cache]
        if new:
            kept = [w for w in new if w not in self.stopwords]
            for w in new:
                cache[w] = -1
            if self._stem:
                with self._lock:
                    stems = self._stem(kept)
            else:
                stems = kept
            for w, stem in zip(kept, stems):
                cache[w] = vocab.setdefault(stem, len(vocab))
        return [i for i in map(cache.__getitem__, words) if i >= 0]


def _words(text: str) -> list[str]:
    """Lowercased runs of letters and digits (NFKC first): what Tokenizer filters and stems."""
    return _WORD.findall(unicodedata.normalize("NFKC", text).lower())


def passage_tokens_text(p: Passage) -> str:
    """What BM25 indexes for a passage: title and text (as Pyserini's DPR Wikipedia index does)."""
    return f"{p.title} {p.text}" if p.title else p.text


class BM25Index:
    def __init__(self, model, config: BM25Config, passages: int, sources: list[str]):
        self._model = model  # a bm25s.BM25
        self.config = config
        self.passages = passages  # store rows [0, passages) are indexed
        self.sources = sources  # sha256 of each corpus the store was filled from, in order
        self.tokenize = Tokenizer(config)
        self.folder: Path | None = None  # where its files are, when they are files (memory-mapped)

    def __len__(self) -> int:
        return self.passages

    @classmethod
    def build(cls, texts: Iterable[str], config: BM25Config = BM25Config(), sources: list[str] | None = None, progress: bool = False,
              into: Path | None = None) -> "BM25Index":
        """Index texts in order: text i is row i. Written to the scratch folder `into` (then memory-mapped:
        what a search touches is read, the rest stays on disk) or, without one, held in memory.

        The files are written in memory that does not grow with the corpus (rag.bm25_build): bm25s'
        own index() held ~1.9 KB a passage at its peak, 40 GB for a 21M-passage Wikipedia."""
        import tempfile

        if into is not None:
            return cls._write_and_load(texts, config, sources, progress, Path(into), mmap=True)
        with tempfile.TemporaryDirectory(prefix="rag-bm25-") as scratch:  # ours alone, removed once loaded into memory
            bm25 = cls._write_and_load(texts, config, sources, progress, Path(scratch), mmap=False)
        bm25.folder = None  # held in memory: no files behind it
        return bm25

    @classmethod
    def _write_and_load(cls, texts: Iterable[str], config: BM25Config, sources: list[str] | None, progress: bool, folder: Path, mmap: bool) -> "BM25Index":
        from rag.bm25_build import write_bm25_files

        _, n = write_bm25_files(texts, Tokenizer(config), config, folder, progress)
        if not n:
            raise RagError("cannot build a BM25 index over no passages")
        (folder / META).write_text(json.dumps({"format": FORMAT, "passages": n, "sources": list(sources or []), "config": asdict(config)}, indent=2))
        return cls.load(folder, mmap=mmap)

    @classmethod
    def build_from_store(cls, store: PassageStore, config: BM25Config = BM25Config(), sources: list[str] | None = None, progress: bool = False,
                         into: Path | None = None) -> "BM25Index":
        texts = (passage_tokens_text(p) for batch in store.iter_batches(4096) for p in batch)
        return cls.build(texts, config, sources, progress, into)

    def search(self, questions: list[str], k: int) -> SearchResult:
        """Top-k store rows per question, best first; rows -1 (score 0) where fewer passages share a word with it."""
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:  # bm25s would take a negative k from the end
            raise RagError(f"k must be a whole number of 1 or more, not {k!r}")
        k_eff = min(k, self.passages)
        scores = np.zeros((len(questions), max(k, 0)), np.float32)
        rows = np.full((len(questions), max(k, 0)), -1, np.int64)
        if k_eff <= 0 or not questions:
            return SearchResult(scores, rows)
        found_rows, found_scores = self._model.retrieve([self.tokenize(q) for q in questions], k=k_eff, show_progress=False)
        matched = found_scores > 0  # a passage with no question word in common is no BM25 hit
        scores[:, :k_eff] = np.where(matched, found_scores, 0)
        rows[:, :k_eff] = np.where(matched, found_rows, -1)
        return SearchResult(scores, rows)

    def save(self, folder: str | Path) -> None:
        """Write to `folder` atomically: a half-written index is never found there. An index built into
        a scratch folder is published by renaming it (its memory maps stay valid: same files)."""
        folder = Path(folder)
        if self.folder is not None and self.folder != folder and is_scratch(self.folder):
            publish_folder(self.folder, folder, BM25_KIND)
            self.folder = folder
            return
        if self.folder == folder:
            return
        tmp = fresh_scratch(folder.with_name(f"{folder.name}.tmp{os.getpid()}"), BM25_KIND)
        try:
            self._model.save(str(tmp), show_progress=False)
            meta = {"format": FORMAT, "passages": self.passages, "sources": self.sources, "config": asdict(self.config)}
            (tmp / META).write_text(json.dumps(meta, indent=2))
        except BaseException:
            remove_scratch(tmp, BM25_KIND)
            raise
        publish_folder(tmp, folder, BM25_KIND)

    @classmethod
    def load(cls, folder: str | Path, mmap: bool = True) -> "BM25Index":
        """`mmap`: the score matrix memory-mapped (a search reads the columns of its terms; 1 GB at 654k passages)."""
        import bm25s

        folder = Path(folder)
        meta = read_meta(folder)
        if meta is None:
            raise RagError(f"{folder} is not a BM25 index (no readable {META} with format {FORMAT!r})")
        model = bm25s.BM25.load(str(folder), show_progress=False, mmap=mmap)
        bm25 = cls(model, BM25Config(**meta["config"]), meta["passages"], meta["sources"])
        bm25.folder = folder
        return bm25


def read_meta(folder: Path) -> dict | None:
    try:
        meta = json.loads((folder / META).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):  # missing, unreadable, or `folder` is a file
        return None
    return meta if meta.get("format") == FORMAT else None


def bm25_for_index(index, config: BM25Config = BM25Config(), progress: bool = True, save: bool | None = None, explain_missing: bool = True) -> BM25Index:
    """The BM25 index of an opened IndexFolder: loaded from NAME/bm25/, or built from its store
    (explain_missing=False: a fresh build expects it missing and does not say so).

    It is rebuilt when missing or stale (the store holds other passages than it covers, e.g.
    after `rag index add`, or it was built with another config). A rebuilt index is saved to
    NAME/bm25/ when `save` is True, or None and the folder is writable; otherwise it lives in
    memory only and the folder is left untouched. Building needs no encoder.
    """
    folder = Path(index.path) / FOLDER
    sources = [s.sha256 for s in index.manifest.sources]
    meta = read_meta(folder)
    why = "missing" if meta is None else "stale"
    if meta is not None and meta["passages"] == len(index.store) and meta["sources"] == sources and meta["config"] == asdict(config):
        try:
            return BM25Index.load(folder)
        except (OSError, ValueError, KeyError) as e:  # a damaged folder is rebuilt like a missing one
            why = f"unreadable ({e})"
    if progress and not (why == "missing" and explain_missing is False):
        print(f"BM25 index for {index.path} is {why}: building it from {len(index.store)} stored passages", file=sys.stderr)
    def in_memory() -> BM25Index:
        return BM25Index.build_from_store(index.store, config, sources, progress)

    if folder.exists() and not folder.is_dir():  # never replaced: rag did not write it
        print(f"BM25 index kept in memory only: {folder} is a file, not a BM25 index folder (move it away to have the index saved there)", file=sys.stderr)
        return in_memory()
    if not (save or (save is None and os.access(index.path, os.W_OK))):
        return in_memory()
    scratch = folder.with_name(f"{folder.name}.tmp{os.getpid()}")
    try:
        bm25 = BM25Index.build_from_store(index.store, config, sources, progress, into=fresh_scratch(scratch, BM25_KIND))
        bm25.save(folder)
    except OSError as e:
        with contextlib.suppress(OSError, RagError):  # a half-written scratch folder of ours is not left behind
            remove_scratch(scratch, BM25_KIND)
        if save:
            raise RagError(f"cannot save the BM25 index to {folder}: {e}") from e
        print(f"BM25 index kept in memory only: cannot write {folder} ({e})", file=sys.stderr)
        return in_memory()
    return bm25
