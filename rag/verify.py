"""`rag index verify`: every row and every file of an index folder checked, not a sample.

Opening an index (rag.index_folder.open_index) checks sizes, a sampled fingerprint and each passage
a search returns; this reads everything once: each row against its digest, each FAISS and digest
file against the sha256 of the last commit, and the BM25 index against the passage count.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from rag.index_folder import STORE, Manifest, check_file_sizes, file_sha256, load_dense, load_row_digests, repair_command, row_fingerprint
from rag.store import PassageStore
from rag.types import RagError

ROWS_NAMED = 5  # damaged rows named in the report; the rest are counted


@dataclass
class VerifyReport:
    folder: str
    rows: int
    damaged_rows: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    repair: str = ""
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems


def verify_index(path: str | Path, progress: bool = True) -> VerifyReport:
    """Check every row and file of the index at `path`; every problem found is listed, not only the first."""
    start = time.perf_counter()
    folder = Path(path)
    manifest = Manifest.read(folder)
    report = VerifyReport(str(folder), manifest.passages, repair=repair_command(folder, manifest.to_json()))
    _problem(report, lambda: check_file_sizes(folder, manifest))
    for name, expected in manifest.file_sha256.items():
        if (folder / name).exists() and file_sha256(folder / name) != expected:
            report.problems.append(f"{folder / name} is not the file of the last commit (its sha256 differs: changed in place)")
    with PassageStore(folder / STORE, readonly=True) as store:
        if manifest.row_digests:
            _problem(report, lambda: _check_rows(folder, manifest, store, report, progress))
        else:
            report.notes.append("built before row digests: passage ids, titles and texts are not covered; rebuild to cover them: " + report.repair)
        _problem(report, lambda: _check_vectors(folder, manifest, store))
    _check_bm25(folder, manifest, report)
    report.seconds = time.perf_counter() - start
    return report


def _problem(report: VerifyReport, check) -> None:
    """Run one check; its RagError becomes a line of the report (the checks after it still run)."""
    try:
        check()
    except RagError as e:
        report.problems.append(str(e).split(". Repair: ")[0])


def _check_rows(folder: Path, manifest: Manifest, store: PassageStore, report: VerifyReport, progress: bool) -> None:
    from tqdm import tqdm

    recorded = load_row_digests(folder, manifest)
    n, batch = manifest.passages, 65_536
    with tqdm(total=n, desc="verifying rows", unit=" rows", disable=not progress, file=sys.stderr) as bar:
        for lo in range(0, n, batch):
            hi = min(lo + batch, n)
            bad = lo + np.flatnonzero(store.digests(lo, hi) != recorded[lo:hi])
            for row in bad[: max(0, ROWS_NAMED - report.damaged_rows)]:
                report.problems.append(f"row {int(row):,} of {store.path} is not the passage recorded there (edited, or swapped with another row)")
            report.damaged_rows += len(bad)
            bar.update(hi - lo)
    if report.damaged_rows > ROWS_NAMED:
        report.problems.append(f"... {report.damaged_rows:,} damaged rows in all")


def _check_vectors(folder: Path, manifest: Manifest, store: PassageStore) -> None:
    dense = load_dense(folder, manifest)
    if len(dense) != manifest.passages or dense.dim != manifest.dim:
        raise RagError(f"its FAISS index holds {len(dense)} vectors of {dense.dim} dimensions, the manifest says {manifest.passages} of {manifest.dim}")
    if manifest.fingerprint and row_fingerprint(store, dense, manifest.passages) != manifest.fingerprint:
        raise RagError("its passage ids and vectors no longer line up at the sampled rows (a file was replaced or its rows reordered)")


def _check_bm25(folder: Path, manifest: Manifest, report: VerifyReport) -> None:
    from rag.bm25 import FOLDER as BM25_DIR, read_meta

    bm25 = folder / BM25_DIR
    if not bm25.exists():
        return
    if not bm25.is_dir():
        report.problems.append(f"{bm25} is a file, not a BM25 index folder: delete it, and `rag search --retriever bm25` rebuilds it")
        return
    meta = read_meta(bm25)
    if meta is None or meta.get("passages") != manifest.passages:
        report.notes.append(f"{bm25} is missing its metadata or covers {meta and meta.get('passages')} passages, not {manifest.passages:,}: the next BM25 search rebuilds it")
