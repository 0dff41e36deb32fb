"""A pyserini pre-built FAISS index folder as a `rag index import` source (rag.import_sources: the others).

The folder holds `index` (a FAISS file) and `docid` (the passage id of row i on line i); the texts come
from a passage file such as psgs_w100.tsv, in any order. The file is too large to hold in memory at
21M passages, so it is keyed by id in a temporary SQLite table in NAME.partial/, and the store is then
written in docid order by one join.
"""
from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Iterator

from rag.corpus_files import clip
from rag.import_sources import Chunk, batched, brief, passage_format, read_passage_rows, stat_record
from rag.types import Passage, RagError

BY_ID = "passages.sqlite-byid"  # the passage file keyed by id, in NAME.partial/ while importing (an index folder's own name pattern)


class PyseriniSource:
    """`index` (a FAISS file whose vectors can be read back) and `docid` (row i's passage id, one a line);
    the texts come from a passage file in any order, looked up by id through a temporary SQLite table."""

    kind, precision = "pyserini", "fp32"

    def __init__(self, folder: str | Path, passages: str | Path, fmt: str = "auto"):
        self.folder = Path(folder)
        self.index_file, self.docid = self.folder / "index", self.folder / "docid"
        if not self.index_file.is_file() or not self.docid.is_file():
            found = ", ".join(sorted(p.name for p in self.folder.iterdir())) if self.folder.is_dir() else "nothing"
            raise RagError(f"{self.folder} is not a pyserini FAISS index folder: it needs the files `index` and `docid` (it holds {found or 'nothing'})")
        self.passages = Path(passages)
        self.fmt = passage_format(self.passages, fmt)
        self.index, self.note = read_faiss_vectors(self.index_file)
        self.name, self.inputs, self.rows = str(self.folder), [self.folder, self.passages], self.index.ntotal

    def state(self) -> dict:
        return {"index": stat_record(self.index_file), "docid": stat_record(self.docid), "passages": stat_record(self.passages), "format": self.fmt}

    def extra(self) -> dict:
        import faiss

        return {"from": "pyserini", "folder": str(self.folder.resolve()), "faiss": type(faiss.downcast_index(self.index)).__name__, "passages": str(self.passages.resolve())}

    def origin_format(self, origin: str) -> str:
        return self.fmt

    def chunks(self, size: int, scratch: Path) -> Iterator[Chunk]:
        path = scratch / BY_ID
        path.unlink(missing_ok=True)
        db = sqlite3.connect(path)
        try:
            db.executescript("PRAGMA journal_mode=OFF; PRAGMA synchronous=OFF;"
                             "CREATE TABLE docids (line INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE);"
                             "CREATE TABLE byid (id TEXT PRIMARY KEY, title TEXT NOT NULL, text TEXT NOT NULL) WITHOUT ROWID;")
            self._load_docids(db)
            for batch in batched(read_passage_rows(self.passages, self.fmt), 10_000):
                db.executemany("INSERT INTO byid VALUES (?,?,?)", [(p.id, p.title, p.text) for p in batch])  # ids unique: the reader checks
            self._check_missing(db)
            rows, lo, origin = db.execute("SELECT p.id, p.title, p.text FROM docids d JOIN byid p ON p.id = d.id ORDER BY d.line"), 0, str(self.passages.resolve())
            while found := rows.fetchmany(size):
                hi = lo + len(found)
                yield Chunk(origin, f"{self.docid} lines {lo + 1:,}-{hi:,}", [Passage(*r) for r in found], self.index.reconstruct_n(lo, hi - lo))
                lo = hi
        finally:
            db.close()
            path.unlink(missing_ok=True)

    def _load_docids(self, db: sqlite3.Connection) -> None:
        with open(self.docid, encoding="utf-8") as f:
            try:
                for batch in batched(((n, line.strip()) for n, line in enumerate(f, 1)), 10_000):
                    empty = next((n for n, pid in batch if not pid), None)
                    if empty is not None:
                        raise RagError(f"{self.docid}:{empty}: an empty line where a passage id should be")
                    try:
                        db.executemany("INSERT INTO docids VALUES (?,?)", batch)
                    except sqlite3.IntegrityError:  # the rows before the duplicate are in: it is the first id found at another line
                        n, pid, first = next((n, pid, found[0]) for n, pid in batch
                                             if (found := db.execute("SELECT line FROM docids WHERE id=?", (pid,)).fetchone()) and found[0] != n)
                        raise RagError(f"{self.docid}:{n}: duplicate passage id {clip(repr(pid))} (line {first:,} has it already)") from None
            except UnicodeDecodeError as e:
                raise RagError(f"{self.docid}: not UTF-8 text ({e})") from e
        count = db.execute("SELECT COUNT(*) FROM docids").fetchone()[0]
        if count != self.index.ntotal:
            raise RagError(f"{self.docid} has {count:,} ids but {self.index_file} holds {self.index.ntotal:,} vectors: line i must name the passage of row i")

    def _check_missing(self, db: sqlite3.Connection) -> None:
        query = "FROM docids d WHERE NOT EXISTS (SELECT 1 FROM byid p WHERE p.id = d.id)"
        missing = db.execute(f"SELECT COUNT(*) {query}").fetchone()[0]
        if missing:
            first = ", ".join(f"{clip(repr(pid))} (line {line:,})" for line, pid in db.execute(f"SELECT d.line, d.id {query} ORDER BY d.line LIMIT 5"))
            raise RagError(f"{self.passages} has no passage for {missing:,} of the {self.index.ntotal:,} ids in {self.docid}: {first}"
                           f"{' ...' if missing > 5 else ''}. Use the passage file the index was built from")


def read_faiss_vectors(path: Path):
    """A FAISS index whose stored vectors can be read back (reconstruct), ranking by inner product; and a note when they are approximations."""
    import faiss

    try:
        index = faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY)  # flat vectors mapped, not read into memory
    except RuntimeError:
        try:
            index = faiss.read_index(str(path))
        except RuntimeError as e:
            raise RagError(f"{path}: not a FAISS index ({brief(e)})") from e
    name = type(faiss.downcast_index(index)).__name__
    if index.metric_type != faiss.METRIC_INNER_PRODUCT:
        raise RagError(f"{path} is a FAISS {name} ranking by L2 distance; rag ranks by inner product, so its order would differ: import an inner-product index (IndexFlatIP)")
    if index.ntotal == 0:
        raise RagError(f"{path}: a FAISS index with no vectors")
    try:
        index.reconstruct(0)  # one row: reconstruct_n of a kind that cannot reconstruct aborts the process (faiss throws inside OpenMP)
    except RuntimeError:
        try:
            faiss.extract_index_ivf(index).make_direct_map()
            index.reconstruct(0)
        except RuntimeError:
            raise RagError(f"{path} is a FAISS {name} whose vectors cannot be read back (not reconstructable), and rag builds its index from the vectors: "
                           "import a flat one (IndexFlatIP, pyserini's brute-force '-bf' indexes), or the vectors themselves with --vectors") from None
    exact = name in ("IndexFlatIP", "IndexFlat", "IndexHNSWFlat")
    return index, "" if exact else f"{path} is a FAISS {name}: its vectors are decoded approximations of the originals"
