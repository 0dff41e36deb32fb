"""VectorIndex (the interface) and DenseIndex: a FAISS maximum-inner-product index over passage vectors.

Index kinds (flat, hnsw, ivfpq) are INDEX_KINDS entries: what rag needs to know of each (how to make
one, whether it trains, its search parameters, how faiss maps it, whether faiss-gpu has it); a new
kind is its functions and one entry, and nothing else branches on the kind.

Row i of the index is row i of the passage store beside it, so no separate id map is needed:
`add` appends to both in the same order.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Protocol, Sequence

import numpy as np

from rag.ivfpq import build_ivfpq, resolve_ivfpq, set_ivfpq_search, training_rows  # noqa: F401 - resolve_ivfpq: callers of rag.index
from rag.types import RagError

REFINES = ("sq8", "flat", "none")


def _flat(x: np.ndarray, config: IndexConfig):
    import faiss

    return faiss.IndexFlatIP(x.shape[1])


def _hnsw(x: np.ndarray, config: IndexConfig):
    import faiss

    index = faiss.IndexHNSWFlat(x.shape[1], config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = config.hnsw_ef_construction
    return index


def _hnsw_search(index, search_index, config: IndexConfig) -> None:
    import faiss

    faiss.downcast_index(index).hnsw.efSearch = config.hnsw_ef_search


@dataclass(frozen=True)
class IndexConfig:
    kind: str = "flat"
    hnsw_m: int = 32  # graph degree
    hnsw_ef_construction: int = 200
    hnsw_ef_search: int = 256
    ivf_nlist: int = 0  # IVF cells; 0 = chosen from corpus size (~4 sqrt(n))
    ivf_nprobe: int = 0  # cells visited per query; 0 = nlist / 8, at least 64
    pq_m: int = 0  # PQ sub-quantizers (bytes per vector at 8 bits); 0 = dim / 4, at most 96
    pq_nbits: int = 8
    opq: bool = False  # rotate vectors (OPQ) before IVF-PQ: better recall at the same bytes per vector
    # "none" = PQ codes only, the default: 96 B/vector at 384-d (1/16 of flat), top-20 accuracy 19.5 vs flat's 19.6
    # on NQ-open dev (eval/bench_index.py); "sq8" (+dim B) or "flat" (+4 dim B) re-score the candidates: recall@20 vs flat 0.82 -> 0.94
    refine: str = "none"
    refine_k_factor: int = 4  # candidates re-scored per result wanted
    train_sample: int = 0  # vectors used to train IVF-PQ; 0 = 64 per IVF cell, at least 65,536
    use_gpu: bool = True  # when faiss-gpu and a GPU are present

    def __post_init__(self):
        if self.kind not in KINDS:
            raise RagError(f"unknown index kind {self.kind!r}; valid: {', '.join(KINDS)}")
        if self.refine not in REFINES:
            raise RagError(f"unknown refine {self.refine!r}; valid: {', '.join(REFINES)}")
        for name, entry in INDEX_KINDS.items():  # an option of another kind, set, is an error rather than ignored
            if name != self.kind and any(getattr(self, o) != IndexConfig.__dataclass_fields__[o].default for o in entry.options):
                raise RagError(f"{' and '.join('--' + o for o in entry.options)} apply to --kind {name}, not {self.kind}")


@dataclass(frozen=True)
class SearchResult:
    scores: np.ndarray  # [n_queries, k] float32, best first
    rows: np.ndarray  # [n_queries, k] int64 store rows; -1 where fewer than k passages exist


class VectorIndex(Protocol):
    """What every vector index is to the rest of rag (DenseIndex of any kind, ShardedIndex, RayShardedIndex).

    Row r of the index is row r of the passage store; rows are appended, never reordered.
    search: inner-product top-k, best first, row -1 where fewer than k vectors exist.
    reconstruct: the stored (for compressed kinds: decoded) vectors of the given rows.
    save/load: DenseIndex takes one file, ShardedIndex a folder / list of files; both replace files atomically.
    """

    config: IndexConfig

    @property
    def dim(self) -> int: ...

    def __len__(self) -> int: ...

    def add(self, embeddings: np.ndarray) -> None: ...

    def search(self, queries: np.ndarray, k: int) -> SearchResult: ...

    def reconstruct(self, rows) -> np.ndarray: ...


@dataclass(frozen=True)
class IndexKind:
    """One FAISS index kind, as rag uses it."""

    factory: Callable  # (sample [n, d] float32, config) -> an empty FAISS index, trained on the sample when it trains
    is_stored_as: Callable[[str], bool]  # the FAISS class name of a loaded index (downcast) -> is it this kind
    trains: bool = False  # needs a training sample, with parameters resolved from the corpus size first (`resolve`)
    resolve: Callable = lambda config, n, dim: config  # (config, n, dim) -> the config with concrete parameters
    set_search: Callable = lambda index, search_index, config: None  # search-time parameters onto (index, its search copy)
    mmap_flag: str = "IO_FLAG_MMAP_IFC"  # the faiss read flag that maps its vectors (IO_FLAG_MMAP reads flat vectors into memory)
    on_gpu: bool = True  # faiss-gpu has a version of it
    options: tuple[str, ...] = ()  # IndexConfig fields only this kind reads (the CLI's --opq, --refine): set for another kind, an error


# A new index kind is its functions and one entry here (and its parameters in IndexConfig).
INDEX_KINDS = {
    "flat": IndexKind(_flat, is_stored_as=lambda name: name in ("IndexFlatIP", "IndexFlat")),
    "hnsw": IndexKind(_hnsw, is_stored_as=lambda name: "HNSW" in name, set_search=_hnsw_search, on_gpu=False),
    # IVF-PQ, its OPQ pre-transform or its refine wrapper: what is neither flat nor HNSW
    "ivfpq": IndexKind(build_ivfpq, is_stored_as=lambda name: "HNSW" not in name and name not in ("IndexFlatIP", "IndexFlat"), trains=True,
                       resolve=resolve_ivfpq, set_search=set_ivfpq_search, mmap_flag="IO_FLAG_MMAP", options=("opq", "refine")),
}
KINDS = tuple(INDEX_KINDS)  # the CLI's choices


def training_sample(vectors, config: IndexConfig) -> np.ndarray:
    """What an index of `config`'s (resolved) kind trains on: the fixed sample of `vectors` (an array or
    VectorBlocks) for a kind that trains, else nothing."""
    if not INDEX_KINDS[config.kind].trains:
        return np.zeros((0, vectors.shape[1] if isinstance(vectors, np.ndarray) else vectors.dim), np.float32)
    rows = training_rows(len(vectors), config)
    return vectors[rows] if isinstance(vectors, np.ndarray) else vectors.take(rows)


class VectorBlocks:
    """Row blocks (rag.build's embedding shard files, or arrays) read as one [n, dim] matrix without loading it.

    `take` copies out only the sampled rows (IVF-PQ's training sample), `blocks` gives one block's
    rows at a time: a streamed build holds one block plus what FAISS holds. A file is memory-mapped
    only while it is read (np.load mmap_mode="r") and unmapped after, so its pages never pile up in
    the process's resident memory (they stay in the OS page cache, which the kernel can drop).
    """

    def __init__(self, arrays: Sequence[np.ndarray] = (), paths: Sequence[Path] = ()):
        self._arrays, self._paths = list(arrays), [Path(p) for p in paths]
        if bool(self._arrays) == bool(self._paths):
            raise RagError("no vectors to index" if not (self._arrays or self._paths) else "VectorBlocks takes arrays or paths, not both")
        shapes = [a.shape for a in self._arrays] or [self._block(i).shape for i in range(len(self._paths))]
        names = [str(p) for p in self._paths] or [f"block {i}" for i in range(len(shapes))]
        if len(shapes[0]) != 2:
            raise RagError(f"{names[0]}: expected a 2-d array of vectors, got shape {shapes[0]}")
        self.dim = int(shapes[0][1])
        for shape, name in zip(shapes, names):
            if len(shape) != 2 or shape[1] != self.dim:
                raise RagError(f"{name}: vectors of shape {shape}, the first block's are {self.dim}-d")
        self.starts = np.cumsum([0] + [shape[0] for shape in shapes])

    @classmethod
    def from_files(cls, paths: Sequence[Path]) -> "VectorBlocks":
        return cls(paths=paths)

    def _block(self, i: int) -> np.ndarray:
        return self._arrays[i] if self._arrays else np.load(self._paths[i], mmap_mode="r", allow_pickle=False)

    def __len__(self) -> int:
        return int(self.starts[-1])

    def take(self, rows: np.ndarray) -> np.ndarray:
        """The vectors at sorted `rows`, as one float32 array (only those rows are read)."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((len(rows), self.dim), np.float32)
        cuts = np.searchsorted(rows, self.starts)
        for i, (c0, c1) in enumerate(zip(cuts[:-1], cuts[1:])):
            if c1 > c0:
                out[c0:c1] = self._block(i)[rows[c0:c1] - self.starts[i]]
        return out

    def blocks(self, lo: int = 0, hi: int | None = None) -> Iterator[np.ndarray]:
        """Rows [lo, hi) in order, at most one block's rows at a time (float32)."""
        hi = len(self) if hi is None else hi
        for i, (s, e) in enumerate(zip(self.starts[:-1], self.starts[1:])):
            if s < hi and e > lo:
                yield _as_f32(self._block(i)[max(lo - s, 0) : hi - s])


class DenseIndex:
    def __init__(self, faiss_index, config: IndexConfig):
        self._index = faiss_index
        self.config = config
        self._search_index = _to_gpu(faiss_index, config)
        self._apply_search_params()

    @property
    def dim(self) -> int:
        return self._index.d

    def __len__(self) -> int:
        return self._index.ntotal

    @classmethod
    def build(cls, embeddings: np.ndarray, config: IndexConfig = IndexConfig()) -> "DenseIndex":
        x = _as_f32(embeddings)
        config = INDEX_KINDS[config.kind].resolve(config, *x.shape)
        dense = cls.trained(training_sample(x, config), config)
        dense.add(x)
        return dense

    @classmethod
    def build_streamed(cls, vectors: VectorBlocks, config: IndexConfig = IndexConfig()) -> "DenseIndex":
        """The index `build` makes over all of `vectors`, without them all in memory at once.

        IVF-PQ trains on the same fixed sample (`training_rows`, read from the blocks), then every
        kind is filled block by block: memory is the sample (IVF-PQ), one block and what FAISS holds.
        """
        config = INDEX_KINDS[config.kind].resolve(config, len(vectors), vectors.dim)
        sample = training_sample(vectors, config)
        dense = cls.trained(sample, config)
        del sample
        dense.add_blocks(vectors.blocks())
        return dense

    @classmethod
    def build_from_files(cls, paths: Sequence[Path], config: IndexConfig = IndexConfig()) -> "DenseIndex":
        """`build` over embedding shard files (rag.build's emb_*.npy), streamed: see build_streamed."""
        return cls.build_streamed(VectorBlocks.from_files(paths), config)

    @classmethod
    def trained(cls, sample: np.ndarray, config: IndexConfig) -> "DenseIndex":
        """An empty index, ready for `add`; a kind that trains (IVF-PQ) is trained on all of `sample`
        (resolve its parameters first: resolving here would size them for the sample, not the corpus).

        Building shard by shard: train once, then `add` each shard's vectors to its own `empty_copy()`.
        """
        x = _as_f32(sample)
        kind = INDEX_KINDS[config.kind]
        if kind.trains and (not config.ivf_nlist or not config.pq_m):
            config = kind.resolve(config, len(x), x.shape[1])
        return cls(kind.factory(x, config), config)

    def empty_copy(self) -> "DenseIndex":
        """A copy with the same (trained) parameters and no vectors."""
        import faiss

        index = faiss.clone_index(self._index)
        index.reset()
        return DenseIndex(index, self.config)

    def add(self, embeddings: np.ndarray) -> None:
        """Append vectors at rows len(self).. (IVF-PQ reuses its trained quantizers)."""
        self.add_blocks([embeddings])

    def add_blocks(self, blocks: Iterable[np.ndarray]) -> None:
        """`add` each block in turn; the GPU search copy (if any) is made once, after the last."""
        for block in blocks:
            x = _as_f32(block)
            if x.shape[1] != self.dim:
                raise RagError(f"cannot add {x.shape[1]}-d vectors to a {self.dim}-d index")
            self._index.add(x)
        self._search_index = _to_gpu(self._index, self.config)
        self._apply_search_params()

    def reconstruct(self, rows) -> np.ndarray:
        """The stored vectors at `rows` ([n, dim]; exact for flat and HNSW, decoded for compressed kinds)."""
        import faiss

        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) == 0:
            return np.zeros((0, self.dim), np.float32)
        if np.any((rows < 0) | (rows >= len(self))):
            raise RagError(f"rows outside the index (0..{len(self) - 1})")
        try:
            return self._reconstruct(rows)
        except RuntimeError:  # an IVF index maps rows to its lists only on request
            faiss.extract_index_ivf(self._index).make_direct_map()
            return self._reconstruct(rows)

    def _reconstruct(self, rows: np.ndarray) -> np.ndarray:
        if np.array_equal(rows, np.arange(rows[0], rows[0] + len(rows))):  # a run of rows: one call
            return self._index.reconstruct_n(int(rows[0]), len(rows))
        return np.stack([self._index.reconstruct(int(r)) for r in rows])

    def search(self, queries: np.ndarray, k: int) -> SearchResult:
        q = _as_f32(queries)
        if q.shape[1] != self.dim:
            raise RagError(f"query vectors are {q.shape[1]}-d, the index is {self.dim}-d")
        if len(q) == 0 or k <= 0:
            return SearchResult(np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64))
        scores, rows = self._search_index.search(q, k)
        return SearchResult(scores, rows)

    def save(self, path: str | Path) -> None:
        """Write the index by atomic rename: a crash mid-write leaves the previous file whole."""
        import faiss

        from rag.files import write_with

        write_with(Path(path), lambda tmp: faiss.write_index(self._index, tmp))

    @classmethod
    def load(cls, path: str | Path, config: IndexConfig, mmap: bool = False) -> "DenseIndex":
        """mmap=True maps the file instead of reading it: an index larger than RAM stays searchable.

        faiss maps IVF inverted lists with IO_FLAG_MMAP but reads flat/HNSW vectors into memory
        under that flag; those need IO_FLAG_MMAP_IFC. A mapped index is read-only (`add` fails).
        """
        import faiss

        if not Path(path).exists():
            raise RagError(f"no FAISS index at {path}")
        flags = 0
        if mmap:
            flags = getattr(faiss, INDEX_KINDS[config.kind].mmap_flag) | faiss.IO_FLAG_READ_ONLY
        index = faiss.read_index(str(path), flags)
        if stored_kind(index) != config.kind:  # its search parameters would not apply (or silently mean something else)
            raise RagError(f"{path} holds a {stored_kind(index)} FAISS index, the manifest says {config.kind}")
        return cls(index, config)

    def _apply_search_params(self) -> None:
        INDEX_KINDS[self.config.kind].set_search(self._index, self._search_index, self.config)


def stored_kind(faiss_index) -> str:
    """The kind a FAISS index really is (flat, hnsw or ivfpq), whatever a manifest says."""
    import faiss

    name = type(faiss.downcast_index(faiss_index)).__name__
    return next(kind for kind, entry in INDEX_KINDS.items() if entry.is_stored_as(name))


def _as_f32(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise RagError(f"expected a 2-d array of vectors, got shape {x.shape}")
    return x


def _to_gpu(index, config: IndexConfig):
    """A GPU copy for searching when faiss-gpu sees a GPU; HNSW has no GPU version and stays on CPU."""
    import faiss

    if not config.use_gpu or not INDEX_KINDS[config.kind].on_gpu or not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() == 0:
        return index
    try:
        return faiss.index_cpu_to_all_gpus(index)
    except RuntimeError as e:  # e.g. a PQ code size faiss-gpu lacks: search on CPU instead
        import sys

        print(f"rag: searching on CPU, faiss-gpu cannot take this index: {str(e).splitlines()[-1]}", file=sys.stderr)
        return index

