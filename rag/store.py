"""PassageStore: passages on disk in SQLite, addressed by row (the FAISS row) and by passage id.

Memory does not grow with the corpus: rows are written and read in batches, and only the
passages a search returns are ever loaded by id or row.
"""
from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from rag.types import Hit, Passage, RagError

FORMAT = "rag-passages v1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS passages (
    row   INTEGER PRIMARY KEY,   -- 0-based, equals the row of the passage's vector in the index
    id    TEXT NOT NULL UNIQUE,
    title TEXT NOT NULL,
    text  TEXT NOT NULL
);
"""


class PassageStore:
    def __init__(self, path: str | Path, readonly: bool = False, rows: int | None = None):
        """rows: the rows an index's manifest committed; rows past them (an add in flight) are not seen."""
        self.path = Path(path)
        if readonly and not self.path.exists():
            raise RagError(f"no passage store at {self.path}")
        uri = f"file:{self.path}?mode=ro" if readonly else f"file:{self.path}"
        # check_same_thread=False: the demo's worker threads read; all reads are plain SELECTs.
        # timeout: a reader waits out the moment a concurrent `rag index add` commits.
        self._db = sqlite3.connect(uri, uri=True, check_same_thread=False, timeout=60)
        if not readonly:
            self._db.execute("PRAGMA cache_size=-262144")  # 256 MB: a large add keeps its pages in memory, not locking readers out early
            self._db.executescript(_SCHEMA)
            self._db.execute("INSERT OR IGNORE INTO meta VALUES ('format', ?)", (FORMAT,))
            self._db.commit()
        try:
            found = self._db.execute("SELECT value FROM meta WHERE key='format'").fetchone()
        except sqlite3.DatabaseError as e:  # truncated or not SQLite: sqlite3.DatabaseError subclasses stay catchable by callers
            raise RagError(f"{self.path} cannot be read as a passage store ({e}): the file is damaged or not a passage store") from e
        if not found or found[0] != FORMAT:
            raise RagError(f"{self.path} is not a {FORMAT!r} passage store (found {found and found[0]!r})")
        self._rows = None
        self._digests: np.ndarray | None = None  # set by seal(): every row read is checked against it
        self._damage_hint = ""
        if rows is not None:
            if self._count() < rows:
                raise RagError(f"{self.path} holds {self._count()} passages, its index says {rows}: the store was truncated or replaced")
            self._rows = rows

    def _count(self) -> int:
        return self._db.execute("SELECT COUNT(*) FROM passages").fetchone()[0]

    def __len__(self) -> int:
        return self._count() if self._rows is None else self._rows

    def seal(self, digests: np.ndarray, damage_hint: str = "") -> None:
        """From now on every passage read is checked against `digests` (row_digest of each row, as
        recorded when the index was committed): an edited or swapped row is an error, never an answer."""
        self._digests, self._damage_hint = digests, damage_hint

    def _checked(self, row: int, passage: Passage) -> Passage:
        if self._digests is not None and row < len(self._digests) and row_digest(row, passage) != self._digests[row]:
            raise RagError(f"{self.path} is damaged: row {row:,} ({passage.id!r}) is not the passage recorded there when the index was committed "
                           f"(its id, title or text was edited, or rows were swapped). {self._damage_hint}".rstrip())
        return passage

    def add(self, passages: Iterable[Passage], batch_size: int = 10_000) -> int:
        """Append passages at rows len(self).. ; returns how many were added.

        All or nothing: a duplicate id rolls back the whole call, so a failed add leaves the
        store exactly as it was.
        """
        start = len(self)
        row = start
        try:
            batch: list[tuple] = []
            for p in passages:
                batch.append((row, p.id, p.title, p.text))
                row += 1
                if len(batch) >= batch_size:
                    self._db.executemany("INSERT INTO passages VALUES (?,?,?,?)", batch)
                    batch = []
            self._db.executemany("INSERT INTO passages VALUES (?,?,?,?)", batch)
            self._db.commit()
        except sqlite3.IntegrityError as e:
            # Looked up before the rollback: the earlier batches of this call are still there to be
            # found (after it, a duplicate of a passage 10,000+ back in the same add went unnamed).
            problem = _conflict_in(self._db, batch, start)
            self._db.rollback()
            raise RagError(f"{problem} while adding to {self.path}; nothing was added") from e
        except BaseException:
            self._db.rollback()
            raise
        return row - start

    def get_rows(self, rows: Sequence[int]) -> list[Passage]:
        """Passages at the given rows, in that order (rows may repeat)."""
        wanted = sorted({int(r) for r in rows})
        found: dict[int, Passage] = {}
        for i in range(0, len(wanted), 900):  # SQLite caps bound parameters per statement
            chunk = wanted[i : i + 900]
            q = f"SELECT row, id, title, text FROM passages WHERE row IN ({','.join('?' * len(chunk))})"
            for r, pid, title, text in self._db.execute(q, chunk):
                found[r] = self._checked(r, Passage(pid, title, text))
        missing = [r for r in wanted if r not in found]
        if missing:
            damage = f" is damaged: its index has rows {missing[:5]}, the store does not. {self._damage_hint}".rstrip() if self._rows is not None and max(missing) < self._rows else ""
            raise RagError(f"{self.path}{damage}" if damage else f"rows {missing[:5]} not in {self.path} ({len(self)} passages)")
        return [found[int(r)] for r in rows]

    def hits(self, result) -> list[list[Hit]]:
        """A search result's rows and scores (rag.index.SearchResult; row -1 = none) -> ranked Hits.

        Each distinct passage is fetched once, however many questions it answers.
        """
        valid = sorted({int(r) for r in result.rows.ravel() if r >= 0})
        passages = dict(zip(valid, self.get_rows(valid)))
        return [
            [Hit(passages[int(r)], float(s), rank) for rank, (r, s) in enumerate(((r, s) for r, s in zip(rows, scores) if r >= 0), 1)]
            for rows, scores in zip(result.rows, result.scores)
        ]

    def has(self, passage_id: str) -> bool:
        found = self._db.execute("SELECT row FROM passages WHERE id=?", (passage_id,)).fetchone()
        return found is not None and (self._rows is None or found[0] < self._rows)

    def get(self, passage_id: str) -> Passage:
        found = self._db.execute("SELECT row, id, title, text FROM passages WHERE id=?", (passage_id,)).fetchone()
        if found is None:
            raise RagError(f"passage {passage_id!r} not in {self.path}")
        return self._checked(found[0], Passage(*found[1:]))

    def iter_batches(self, batch_size: int = 1024, start: int = 0, stop: int | None = None) -> Iterator[list[Passage]]:
        """Passages in row order, rows [start, stop), `batch_size` at a time."""
        stop = len(self) if stop is None else stop
        for lo in range(start, stop, batch_size):
            hi = min(lo + batch_size, stop)
            cur = self._db.execute("SELECT row, id, title, text FROM passages WHERE row >= ? AND row < ? ORDER BY row", (lo, hi))
            batch = [self._checked(r, Passage(*rest)) for r, *rest in cur]
            if len(batch) != hi - lo:  # a row deleted or renumbered: the batch would shift every row after it
                raise RagError(f"{self.path} is damaged: rows {lo:,}-{hi - 1:,} should hold {hi - lo} passages, found {len(batch)}. {self._damage_hint}".rstrip())
            yield batch

    def digests(self, start: int = 0, stop: int | None = None, batch_size: int = 4096) -> np.ndarray:
        """row_digest of rows [start, stop), read unchecked (what a commit records)."""
        sealed, self._digests = self._digests, None
        try:
            return np.fromiter((row_digest(lo + i, p) for lo, batch in zip(range(start, stop if stop is not None else len(self), batch_size),
                                                                          self.iter_batches(batch_size, start, stop)) for i, p in enumerate(batch)),
                               dtype=np.uint64)
        finally:
            self._digests = sealed

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "PassageStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def row_digest(row: int, passage: Passage) -> np.uint64:
    """8 bytes of BLAKE2b over a row's number, id, title and text: a swap or an edit changes it."""
    data = f"{row}\x1f{passage.id}\x1f{passage.title}\x1f{passage.text}".encode()
    return np.uint64(int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little"))


def _conflict_in(db: sqlite3.Connection, batch: list[tuple], start: int) -> str:
    """Why the failed insert of `batch` (inside the add's open transaction) broke a UNIQUE constraint.

    The passages of the batch before the failing one were inserted at their own rows, so the first
    passage whose id the store holds at another row is the duplicate.
    """
    for row, pid, _, _ in batch:
        found = db.execute("SELECT row FROM passages WHERE id=?", (pid,)).fetchone()
        if found is not None and found[0] != row:
            return f"duplicate passage id {pid!r} (passage {row - start + 1:,} of this add; row {found[0]:,} has it already)"
    return "the new rows collide with rows already in the store (past the rows its index counts)"
