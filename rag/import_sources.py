"""What `rag index import` reads (rag.importers writes it): passages with their pre-computed vectors.

Each source streams `Chunk`s in row order and checks its inputs when it is made, before anything
is written: a matrix (.npy, .safetensors) beside a passage file, wiki_dpr (parquet, a `save_to_disk`
folder, or the hub), and a pyserini FAISS index folder whose texts are looked up by id.
A source has: kind, name, inputs (files read), rows (or None), precision, note, state(), extra(),
origin_format(origin) and chunks(size, scratch).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Iterator

import numpy as np

from rag.corpus import CORPUS_READERS, ReadReport, SplitConfig, _SeenIds, detect_format
from rag.corpus_files import clip
from rag.types import Passage, RagError

PASSAGE_FORMATS = ("dpr-tsv", "jsonl", "csv", "hf")  # one record = one passage, so row i of a matrix can be record i
WIKI_DPR_COLUMNS = ("id", "text", "title", "embeddings")
PRECISIONS = {"float16": "fp16", "F16": "fp16", "BF16": "bf16"}  # else fp32 (float64 is stored as float32)


@dataclass
class Chunk:
    origin: str  # the input file these rows come from (one manifest source each)
    where: str  # for messages: "psgs.tsv passages 1-65,536"
    passages: list[Passage]
    vectors: np.ndarray  # [len(passages), dim], float


def stat_record(path: Path) -> list:
    st = path.stat()
    return [str(path.resolve()), st.st_size, int(st.st_mtime)]


def brief(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[-1][:300]


# --- passage files -----------------------------------------------------------------------------


def passage_format(path: str | Path, fmt: str = "auto") -> str:
    path = Path(path)
    if not path.exists():
        raise RagError(f"{path}: no such passage file (nothing was written)")
    fmt = detect_format(path) if fmt == "auto" else fmt
    if fmt not in PASSAGE_FORMATS:
        raise RagError(f"{path}: format {fmt}, whose records are split into passages; an import needs one passage a record: {', '.join(PASSAGE_FORMATS)}")
    return fmt


def read_passage_rows(path: Path, fmt: str) -> Iterator[Passage]:
    """The file's records as passages, one each, in file order: DPR tsv ids, titles and texts as they are;
    JSONL/CSV/parquet records with their own `id` (else their 0-based position) and whitespace-joined text.
    A duplicate id is named by file and line; no record can be skipped (its vector would pair with the next text)."""
    whole = SplitConfig(words_per_passage=sys.maxsize)  # never split: a record is a passage
    read = 0
    try:
        with _SeenIds() as seen:
            for where, p in CORPUS_READERS[fmt](Path(path), whole, "raise", ReadReport()):
                p = p if fmt == "dpr-tsv" else Passage(p.id.removesuffix("-0"), p.title, p.text)  # split_passages numbers the one block "-0"
                if not seen.first(p.id):
                    raise RagError(f"{where}: duplicate passage id {clip(repr(p.id))}")
                read += 1
                yield p
    except RagError as e:
        raise RagError(str(e).replace(" (use --skip-bad to skip bad records)", "")) from e
    if read == 0:
        raise RagError(f"no passages read from {path} (format {fmt}); is it empty?")


# --- a matrix beside a passage file -------------------------------------------------------------


@dataclass
class Matrix:
    path: Path
    rows: int
    dim: int
    dtype: str
    tensor: str | None
    read: object  # (lo, hi) -> np.ndarray of rows [lo, hi)
    handle: object = None  # the open file the reads go through (safetensors)


def open_matrix(path: str | Path, tensor: str | None = None) -> Matrix:
    path = Path(path)
    if not path.is_file():
        raise RagError(f"{path}: no such vectors file (nothing was written)")
    if path.suffix == ".npy":
        return _open_npy(path)
    if path.suffix == ".safetensors":
        return _open_safetensors(path, tensor)
    raise RagError(f"{path}: vectors must be a .npy or .safetensors file (rag never unpickles, so .pt, .pkl and .npz files are not read)")


def _open_npy(path: Path) -> Matrix:
    """Memory-mapped, allow_pickle=False; an object array (readable only by unpickling) is refused from its header."""
    fmt = np.lib.format
    try:
        with open(path, "rb") as f:
            version = fmt.read_magic(f)
            header = {(1, 0): fmt.read_array_header_1_0, (2, 0): fmt.read_array_header_2_0}.get(version)
            dtype = header(f)[2] if header else None
    except (ValueError, OSError) as e:
        raise RagError(f"{path}: not a .npy file ({brief(e)})") from e
    if dtype is not None and dtype.hasobject:
        raise RagError(f"{path} holds Python objects (dtype {dtype}), which only unpickling can read; rag never unpickles: "
                       "save the vectors as a float matrix, np.save(path, np.asarray(vectors, dtype=np.float32))")
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as e:  # e.g. an object array under a newer header version
        raise RagError(f"{path} cannot be read without unpickling or is damaged ({brief(e)}); rag never unpickles") from e
    _check_matrix(path, array.shape, array.dtype.kind == "f", str(array.dtype))
    return Matrix(path, array.shape[0], array.shape[1], str(array.dtype), None, lambda lo, hi: array[lo:hi])


def _open_safetensors(path: Path, tensor: str | None) -> Matrix:
    from safetensors import safe_open

    try:
        f = safe_open(str(path), framework="numpy")
        names = list(f.keys())
    except Exception as e:  # safetensors raises its own error types for a bad header
        raise RagError(f"{path}: not a safetensors file ({brief(e)})") from e
    shapes = ", ".join(f"{n} {f.get_slice(n).get_shape()} {f.get_slice(n).get_dtype()}" for n in names[:8])
    if tensor is None and len(names) != 1:
        raise RagError(f"{path} holds {len(names)} tensors ({shapes or 'none'}): name the one holding the vectors with --tensor NAME")
    tensor = tensor if tensor is not None else names[0]
    if tensor not in names:
        raise RagError(f"{path} has no tensor {tensor!r}; it holds {shapes}")
    part = f.get_slice(tensor)
    shape, dtype = tuple(part.get_shape()), part.get_dtype()
    _check_matrix(path, shape, dtype in ("F16", "BF16", "F32", "F64"), dtype, f" (tensor {tensor!r})")
    read = lambda lo, hi: part[lo:hi]  # noqa: E731
    if dtype == "BF16":  # numpy has no bfloat16: torch reads it
        part_pt = safe_open(str(path), framework="pt").get_slice(tensor)
        read = lambda lo, hi: part_pt[lo:hi].float().numpy()  # noqa: E731
    return Matrix(path, shape[0], shape[1], dtype, tensor, read, handle=f)


def _check_matrix(path: Path, shape: tuple, is_float: bool, dtype: str, what: str = "") -> None:
    if len(shape) != 2:
        raise RagError(f"{path}{what}: an array of shape {shape} ({len(shape)}-d); the vectors must be a 2-d matrix, one row per passage")
    if not is_float:
        raise RagError(f"{path}{what}: dtype {dtype}; the vectors must be floating point (float16, bfloat16, float32 or float64)")
    if 0 in shape:
        raise RagError(f"{path}{what}: an empty matrix of shape {shape}")


class MatrixSource:
    """Row i of a .npy/.safetensors matrix is passage i of a passage file."""

    kind, note = "vectors", ""

    def __init__(self, vectors: str | Path, passages: str | Path, fmt: str = "auto", tensor: str | None = None):
        self.matrix = open_matrix(vectors, tensor)
        self.passages = Path(passages)
        self.fmt = passage_format(self.passages, fmt)
        self.name, self.inputs, self.rows = str(vectors), [Path(vectors), self.passages], self.matrix.rows
        self.precision = PRECISIONS.get(self.matrix.dtype, "fp32")

    def state(self) -> dict:
        return {"vectors": stat_record(self.matrix.path), "tensor": self.matrix.tensor, "passages": stat_record(self.passages), "format": self.fmt}

    def extra(self) -> dict:
        m = self.matrix
        return {"from": "vectors", "vectors": str(m.path.resolve()), "tensor": m.tensor, "dtype": m.dtype, "shape": [m.rows, m.dim], "passages": str(self.passages.resolve())}

    def origin_format(self, origin: str) -> str:
        return self.fmt

    def chunks(self, size: int, scratch: Path) -> Iterator[Chunk]:
        n, origin = self.matrix.rows, str(self.passages.resolve())
        passages = read_passage_rows(self.passages, self.fmt)
        for lo in range(0, n, size):
            hi = min(n, lo + size)
            batch = list(islice(passages, hi - lo))
            if len(batch) < hi - lo:
                raise RagError(f"{self.matrix.path} has {n:,} rows but {self.passages} only {lo + len(batch):,} passages: row i of the vectors must be passage i of the file")
            yield Chunk(origin, f"{self.passages} passages {lo + 1:,}-{hi:,}", batch, self.matrix.read(lo, hi))
        more = sum(1 for _ in passages)
        if more:
            raise RagError(f"{self.passages} has {n + more:,} passages but {self.matrix.path} only {n:,} rows: row i of the vectors must be passage i of the file")


# --- wiki_dpr: parquet files, a save_to_disk folder, the hub ------------------------------------------


class WikiDprSource:
    """Rows with columns id, text, title and embeddings (a list of floats), read in record batches."""

    note, precision = "", "fp32"

    def __init__(self, kind: str, name: str, inputs: list[Path], rows: int | None, batches, state: dict, extra: dict):
        self.kind, self.name, self.inputs, self.rows, self._batches, self._state = kind, name, inputs, rows, batches, state
        self._extra = {"from": kind, **extra}

    @classmethod
    def from_paths(cls, paths: list[str]) -> "WikiDprSource":
        paths = [Path(p) for p in paths]
        for path in paths:
            if not path.exists():
                raise RagError(f"{path}: no such file or folder (nothing was written)")
        saved = [p for p in paths if p.is_dir() and ((p / "dataset_info.json").exists() or (p / "dataset_dict.json").exists())]
        if saved:
            if len(paths) != 1:
                raise RagError(f"{saved[0]} is a dataset saved with save_to_disk: import it alone")
            return cls._saved(saved[0])
        files = sorted({f for p in paths for f in ([p] if p.is_file() else p.rglob("*.parquet"))})
        if not files:
            raise RagError(f"no .parquet files in {', '.join(map(str, paths))}")
        import pyarrow.parquet as pq

        rows = 0
        for path in files:
            try:
                meta = pq.ParquetFile(path)
            except Exception as e:  # pyarrow.ArrowInvalid and friends: not a parquet file
                raise RagError(f"{path}: not a parquet file ({brief(e)})") from e
            check_columns(meta.schema_arrow, str(path))
            rows += meta.metadata.num_rows

        def batches(size: int):
            for path in files:
                for batch in pq.ParquetFile(path).iter_batches(batch_size=size, columns=list(WIKI_DPR_COLUMNS)):
                    yield str(path.resolve()), str(path), batch

        return cls("wiki-dpr", str(paths[0]), files, rows, batches, {"files": [stat_record(f) for f in files]}, {"files": [str(f.resolve()) for f in files]})

    @classmethod
    def _saved(cls, folder: Path) -> "WikiDprSource":
        import datasets

        try:
            ds = datasets.load_from_disk(str(folder))
        except (FileNotFoundError, ValueError) as e:
            raise RagError(f"{folder}: not a dataset saved with save_to_disk ({brief(e)})") from e
        if isinstance(ds, datasets.DatasetDict):
            if len(ds) != 1:
                raise RagError(f"{folder}: a DatasetDict with splits {list(ds)}; save the one split to import")
            ds = next(iter(ds.values()))
        check_columns(ds.data.schema, str(folder))
        ds = ds.select_columns(list(WIKI_DPR_COLUMNS)).with_format("arrow")
        origin = str(folder.resolve())
        return cls("wiki-dpr", str(folder), [folder], len(ds), lambda size: ((origin, str(folder), t) for t in ds.iter(batch_size=size)),
                   {"dataset": stat_record(folder)}, {"dataset": origin})

    @classmethod
    def from_hub(cls, name: str, config: str, split: str = "train") -> "WikiDprSource":
        """Streamed with datasets.load_dataset(streaming=True): nothing is downloaded whole; needs a network."""
        import datasets

        try:
            ds = datasets.load_dataset(name, config, split=split, streaming=True)
        except Exception as e:  # offline, unknown dataset or config: datasets raises many kinds
            raise RagError(f"cannot stream {name} ({config}, {split}) from the Hugging Face hub: {brief(e)}. Without a network, download its parquet "
                           f"files where one exists and import them with --wiki-dpr FILES (nothing was written)") from e
        origin = f"hf:{name}:{config}:{split}"

        def batches(size: int):
            try:
                for table in ds.with_format("arrow").iter(batch_size=size):
                    check_columns(table.schema, origin)  # a stream's schema shows with its rows
                    yield origin, origin, table
            except OSError as e:  # the connection dropped midway
                raise RagError(f"streaming {origin} failed: {brief(e)}; rerun the import to start over") from e

        return cls("hub", origin, [], None, batches, {"hub": [name, config, split]}, {"hub": {"dataset": name, "config": config, "split": split}})

    def state(self) -> dict:
        return self._state

    def extra(self) -> dict:
        return self._extra

    def origin_format(self, origin: str) -> str:
        return "hf"

    def chunks(self, size: int, scratch: Path) -> Iterator[Chunk]:
        starts: dict[str, int] = {}
        for origin, shown, batch in self._batches(size):
            start = starts.get(origin, 0)
            starts[origin] = start + batch.num_rows
            if batch.num_rows:
                yield arrow_chunk(batch, origin, shown, start)


def check_columns(schema, where: str) -> None:
    import pyarrow as pa

    missing = [c for c in WIKI_DPR_COLUMNS if c not in schema.names]
    if missing:
        raise RagError(f"{where}: no column {', '.join(map(repr, missing))}; wiki_dpr rows have the columns id, text, title and embeddings "
                       f"(a list of floats per passage); this has {', '.join(schema.names) or 'none'}")
    kind = schema.field("embeddings").type
    listed = pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_fixed_size_list(kind)
    if not listed or not pa.types.is_floating(kind.value_type):
        raise RagError(f"{where}: column 'embeddings' is {kind}, not a list of floats per passage")


def arrow_chunk(batch, origin: str, shown: str, start: int) -> Chunk:
    """A record batch or table of wiki_dpr rows -> passages and their [n, dim] vectors, checked row by row."""
    import pyarrow.compute as pc

    column = lambda name: batch.column(name).combine_chunks() if hasattr(batch.column(name), "combine_chunks") else batch.column(name)  # noqa: E731
    ids, texts, titles = (column(c).to_pylist() for c in ("id", "text", "title"))
    passages = []
    for i, (pid, text, title) in enumerate(zip(ids, texts, titles)):
        if pid is None or not str(pid).strip():
            raise RagError(f"{shown} row {start + i:,}: no id")
        if text is None or not str(text).strip():
            raise RagError(f"{shown} row {start + i:,} (id {clip(repr(str(pid)))}): no text")
        passages.append(Passage(str(pid), "" if title is None else str(title), str(text)))
    embeddings = column("embeddings")
    if embeddings.null_count:
        first = embeddings.is_null().to_numpy(zero_copy_only=False).argmax()
        raise RagError(f"{shown} row {start + first:,} (id {passages[first].id!r}): no embedding")
    lengths = pc.list_value_length(embeddings).to_numpy(zero_copy_only=False)
    dim = int(lengths[0])
    unequal = np.flatnonzero(lengths != dim)
    if dim == 0 or len(unequal):
        row = int(unequal[0]) if len(unequal) else 0
        raise RagError(f"{shown} row {start + row:,} (id {passages[row].id!r}): an embedding of {lengths[row]} values, row {start:,} has {dim}: "
                       "embeddings of unequal length (or empty)")
    values = pc.list_flatten(embeddings).to_numpy(zero_copy_only=False)
    return Chunk(origin, f"{shown} rows {start:,}-{start + len(passages) - 1:,}", passages, values.reshape(len(passages), dim))


def batched(items, size: int):
    items = iter(items)
    while batch := list(islice(items, size)):
        yield batch
