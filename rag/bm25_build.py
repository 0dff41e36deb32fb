"""Building a BM25 index in memory that does not grow with the corpus: bm25s' own files, written to disk.

bm25s.BM25.index holds every token of the corpus in RAM, then the (document, term, score) triplets,
then a sorted copy of them: about 1.9 KB a passage at its peak here (1.74 GB for the 654,689
passages of the 2015 Wikipedia extract; ~40 GB for DPR's 21M). This writes the same files
(data/indices/indptr.csc.index.npy, vocab.index.json, params.index.json) with a bounded footprint:

  pass 1  tokenize each passage once; its distinct terms and their counts go to a scratch file on disk
          (12 bytes a (term, document, tf) entry); the vocabulary, the document frequencies and the
          document lengths stay in RAM (4 bytes a passage, ~100 bytes a distinct term).
  pass 2  the score matrix, column by column (a column is a term), in slices of at most
          `entries_in_ram` entries: each slice is read out of the scratch file, scored, placed in
          bm25s' CSC order (documents ascending within a term) and appended to the .npy files.

Scores are bm25s' formulas (its idf and tf parts, rag.bm25.BM25Config's method), computed in float64
and stored in float32 as bm25s stores them; tests/test_bm25.py checks the files against bm25s' own.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Iterable

import numpy as np

# One slice of the score matrix in RAM: 64M entries = 512 MB (float32 score + int32 document).
ENTRIES_IN_RAM = 64 * 2**20
DOCS_PER_CHUNK = 4096
SCRATCH = "postings.tmp"  # (term, doc, tf) int32 triplets, deleted when the matrix is written

IDF = {
    "lucene": lambda df, n: np.log(1 + (n - df + 0.5) / (df + 0.5)),
    "robertson": lambda df, n: np.log(np.maximum(1.0, (n - df + 0.5) / (df + 0.5))),  # bm25s floors the ratio at 1
    "atire": lambda df, n: np.log(n / df),
}


def tf_part(method: str, tf: np.ndarray, length: np.ndarray, avg: float, k1: float, b: float) -> np.ndarray:
    norm = k1 * ((1 - b) + b * length / avg)
    return tf * (k1 + 1) / (tf + norm) if method == "atire" else tf / (norm + tf)


def write_bm25_files(texts: Iterable[str], tokenize, config, folder: Path,
                     progress: bool = False, entries_in_ram: int = ENTRIES_IN_RAM) -> tuple[dict, int]:
    """bm25s' index files for `texts` (text i is document i) in `folder`, tokenized by `tokenize` (a
    rag.bm25.Tokenizer); returns (vocabulary, documents)."""
    vocab: dict[str, int] = {}
    cache: dict[str, int] = {}  # word -> token id (rag.bm25.Tokenizer.ids)
    df = np.zeros(1024, np.int64)
    lengths: list[np.ndarray] = []
    scratch = folder / SCRATCH
    with open(scratch, "wb") as postings:
        for chunk in _chunks(_progress(texts, progress)):
            terms, docs, tfs, chunk_lengths = _count(chunk, tokenize, vocab, cache, base=sum(len(x) for x in lengths))
            if len(vocab) > len(df):
                df = np.concatenate([df, np.zeros(max(len(vocab), 2 * len(df)) - len(df), np.int64)])
            df += np.bincount(terms, minlength=len(df))
            np.stack([terms, docs, tfs], axis=1).astype(np.int32).tofile(postings)
            lengths.append(chunk_lengths)
    n_docs = sum(len(x) for x in lengths)
    if not n_docs:
        scratch.unlink()
        return vocab, 0
    length = np.concatenate(lengths)
    df = df[: len(vocab)]
    idf = np.where(df > 0, IDF[config.method](df.astype(np.float64), n_docs), 0.0)
    indptr = np.concatenate([[0], np.cumsum(df)])
    _write_matrix(scratch, indptr, idf, length, config, folder, entries_in_ram)
    scratch.unlink()
    np.save(folder / "indptr.csc.index.npy", indptr.astype(np.int32 if indptr[-1] < 2**31 else np.int64))
    vocab_file = dict(vocab)
    vocab_file[""] = len(vocab)  # bm25s' empty token, last, as its index() adds it
    (folder / "vocab.index.json").write_text(json.dumps(vocab_file, ensure_ascii=False))
    params = {"k1": config.k1, "b": config.b, "delta": 0.5, "method": config.method, "idf_method": config.method,
              "dtype": "float32", "int_dtype": "int32", "num_docs": n_docs, "version": _bm25s_version(), "backend": "numpy"}
    (folder / "params.index.json").write_text(json.dumps(params, indent=4))
    return vocab_file, n_docs


def _progress(texts, progress: bool):
    from tqdm import tqdm

    return tqdm(texts, desc="BM25: tokenizing passages", unit=" passages", disable=not progress, file=sys.stderr)


def _chunks(texts) -> Iterable[list[str]]:
    chunk: list[str] = []
    for text in texts:
        chunk.append(text)
        if len(chunk) == DOCS_PER_CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _count(chunk: list[str], tokenize, vocab: dict, cache: dict, base: int):
    """(term, document, tf) of each distinct term of each text, documents numbered from `base`; lengths."""
    ids = [np.array(tokenize.ids(text, vocab, cache), dtype=np.int64) for text in chunk]
    lengths = np.array([len(x) for x in ids], np.int32)
    flat = np.concatenate(ids) if ids else np.zeros(0, np.int64)
    doc = np.repeat(np.arange(len(chunk), dtype=np.int64), lengths)
    keys, tfs = np.unique((doc << 32) | flat, return_counts=True)  # sorted by document, then term
    return keys & 0xFFFFFFFF, (keys >> 32) + base, tfs, lengths


def _write_matrix(scratch: Path, indptr: np.ndarray, idf: np.ndarray, length: np.ndarray, config, folder: Path, entries_in_ram: int) -> None:
    """data.csc / indices.csc in slices of whole columns, each gathered from the postings file in one pass.

    Plain reads and appends, no memory maps: mapped pages would count in the process's resident
    memory up to the files' size, which is what this module exists to avoid."""
    nnz = int(indptr[-1])
    avg = float(length.mean())
    with open(folder / "data.csc.index.npy", "wb") as data, open(folder / "indices.csc.index.npy", "wb") as indices:
        for out, dtype in ((data, "<f4"), (indices, "<i4")):
            np.lib.format.write_array_header_2_0(out, {"descr": dtype, "fortran_order": False, "shape": (nnz,)})
        lo = 0
        while lo < len(idf):
            hi = min(len(idf), max(lo + 1, int(np.searchsorted(indptr, indptr[lo] + entries_in_ram, side="right")) - 1))
            scores, docs = _column_slice(scratch, lo, hi, indptr, idf, length, avg, config)
            data.write(scores.tobytes())
            indices.write(docs.tobytes())
            lo = hi


def _column_slice(scratch: Path, lo: int, hi: int, indptr, idf, length, avg: float, config):
    """Scores and documents of columns (terms) [lo, hi), in CSC order."""
    start = int(indptr[lo])
    scores = np.empty(int(indptr[hi]) - start, np.float32)
    docs_out = np.empty(len(scores), np.int32)
    cursor = indptr[lo:hi] - start  # the next free place of each column in the slice
    rows = 4 * 2**20
    with open(scratch, "rb") as postings:
        while True:
            block = np.fromfile(postings, dtype=np.int32, count=3 * rows).reshape(-1, 3)
            if not len(block):
                break
            keep = block[(block[:, 0] >= lo) & (block[:, 0] < hi)]  # documents ascending: each column fills in order
            keep = keep[np.argsort(keep[:, 0], kind="stable")]
            terms, docs = keep[:, 0].astype(np.int64), keep[:, 1]
            run_start = np.searchsorted(terms, terms, side="left")  # where each term's run begins in `keep`
            places = cursor[terms - lo] + (np.arange(len(terms)) - run_start)
            tf = keep[:, 2].astype(np.float64)
            scores[places] = idf[terms] * tf_part(config.method, tf, length[docs].astype(np.float64), avg, config.k1, config.b)
            docs_out[places] = docs
            cursor += np.bincount(terms - lo, minlength=hi - lo)
    return scores, docs_out


def _bm25s_version() -> str:
    import bm25s

    return bm25s.__version__
