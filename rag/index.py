"""VectorIndex (the interface) and DenseIndex: a FAISS maximum-inner-product index over passage vectors.

Index kinds (flat, hnsw, ivfpq) are FAISS_FACTORIES entries; a new kind is one function and one entry.

Row i of the index is row i of the passage store beside it, so no separate id map is needed:
`add` appends to both in the same order.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable, Iterator, Protocol, Sequence

import numpy as np

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


def _ivfpq(x: np.ndarray, config: IndexConfig):
    import faiss

    d = x.shape[1]
    opq = f"OPQ{config.pq_m}," if config.opq else ""
    index = faiss.index_factory(d, f"{opq}IVF{config.ivf_nlist},PQ{config.pq_m}x{config.pq_nbits}", faiss.METRIC_INNER_PRODUCT)
    # The factory turns on polysemous training: it only reorders each PQ codebook for Hamming-distance
    # filtering (polysemous_ht), which rag never sets, so search results are the same without it
    # (tests/test_scale.py). It cost ~6 min of every 384-d build at m=96 on 2 cores, 4x the PQ training.
    faiss.downcast_index(faiss.extract_index_ivf(index)).do_polysemous_training = False
    if config.opq:  # OPQ learns its rotation with a PQ of its own: give it the index's code size
        rotation = faiss.downcast_VectorTransform(index.chain.at(0))
        rotation_pq = faiss.ProductQuantizer(d, config.pq_m, config.pq_nbits)
        rotation.pq = rotation_pq
    index.train(x)
    if config.opq:
        rotation.pq = None  # rotation_pq is freed with this frame
    return _with_refine(index, x, config)


# kind -> (sample [n, d] float32, config) -> an empty FAISS index trained on the sample.
# A new index kind is one function plus one entry here (and its parameters in IndexConfig).
FAISS_FACTORIES = {"flat": _flat, "hnsw": _hnsw, "ivfpq": _ivfpq}
KINDS = tuple(FAISS_FACTORIES)  # the CLI's choices


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


# Code sizes (bytes per vector) faiss-gpu's IVF-PQ can search; the automatic choice stays within them.
GPU_PQ_M = (1, 2, 3, 4, 8, 12, 16, 20, 24, 28, 32, 40, 48, 56, 64, 96)


def resolve_ivfpq(config: IndexConfig, n: int, dim: int) -> IndexConfig:
    """Concrete IVF-PQ parameters for n vectors of dimension dim (the zeros in `config` filled in).

    nlist ~ 4 sqrt(n) cells (faiss' guideline; 18k for 21M passages), nprobe = nlist / 8, at least 64
    (measured on the built-in corpus, 287 cells: recall@10 vs flat 0.82 at 64 probes, 0.94 with the sq8 refine);
    m = dim / 4 sub-quantizers of 8 bits, capped at 96 bytes (768-d DPR: 96 B vs 3,072 B flat);
    the training sample holds 64 vectors per cell (k-means needs >= 39), at least 65,536 for PQ.
    """
    nlist = config.ivf_nlist or max(1, min(65536, int(4 * math.sqrt(n)), n // 39))
    nprobe = config.ivf_nprobe or min(nlist, max(64, nlist // 8))
    m = config.pq_m or max([g for g in GPU_PQ_M if g <= max(1, dim // 4) and dim % g == 0])
    while dim % m:  # PQ needs m to divide the dimension
        m -= 1
    # k-means for a PQ codebook of 2^nbits centroids needs ~39 points per centroid.
    nbits = min(config.pq_nbits, max(1, int(math.log2(max(2, n // 39)))))
    train = min(n, config.train_sample or max(65_536, 64 * nlist))
    # OPQ below 8-bit codes (under ~10k vectors) crashes faiss 1.15 (heap corruption); such corpora get plain PQ.
    opq = config.opq and nbits == 8
    return IndexConfig(**{**asdict(config), "ivf_nlist": nlist, "ivf_nprobe": nprobe, "pq_m": m, "pq_nbits": nbits, "opq": opq, "train_sample": train})


def training_rows(n: int, config: IndexConfig) -> np.ndarray:
    """The rows an IVF-PQ index over n vectors trains on: a fixed sample, so the same corpus builds the same index."""
    if n <= config.train_sample:
        return np.arange(n)
    return np.sort(np.random.default_rng(0).choice(n, config.train_sample, replace=False))


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
        n, d = x.shape
        if config.kind == "ivfpq":
            config = resolve_ivfpq(config, n, d)
        dense = cls.trained(x[training_rows(n, config)] if config.kind == "ivfpq" else x[:0], config)
        dense.add(x)
        return dense

    @classmethod
    def build_streamed(cls, vectors: VectorBlocks, config: IndexConfig = IndexConfig()) -> "DenseIndex":
        """The index `build` makes over all of `vectors`, without them all in memory at once.

        IVF-PQ trains on the same fixed sample (`training_rows`, read from the blocks), then every
        kind is filled block by block: memory is the sample (IVF-PQ), one block and what FAISS holds.
        """
        n, d = len(vectors), vectors.dim
        if config.kind == "ivfpq":
            config = resolve_ivfpq(config, n, d)
        sample = vectors.take(training_rows(n, config)) if config.kind == "ivfpq" else np.zeros((0, d), np.float32)
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
        """An empty index, ready for `add`; IVF-PQ is trained on all of `sample` (resolve its parameters first).

        Building shard by shard: train once, then `add` each shard's vectors to its own `empty_copy()`.
        """
        x = _as_f32(sample)
        if config.kind == "ivfpq" and (not config.ivf_nlist or not config.pq_m):
            config = resolve_ivfpq(config, len(x), x.shape[1])
        return cls(FAISS_FACTORIES[config.kind](x, config), config)

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
            flags = (faiss.IO_FLAG_MMAP if config.kind == "ivfpq" else faiss.IO_FLAG_MMAP_IFC) | faiss.IO_FLAG_READ_ONLY
        index = faiss.read_index(str(path), flags)
        if stored_kind(index) != config.kind:  # its search parameters would not apply (or silently mean something else)
            raise RagError(f"{path} holds a {stored_kind(index)} FAISS index, the manifest says {config.kind}")
        return cls(index, config)

    def _apply_search_params(self) -> None:
        import faiss

        if self.config.kind == "hnsw":
            faiss.downcast_index(self._index).hnsw.efSearch = self.config.hnsw_ef_search
        elif self.config.kind == "ivfpq":
            faiss.extract_index_ivf(self._search_index).nprobe = self.config.ivf_nprobe
            if self.config.refine != "none":
                faiss.downcast_index(self._search_index).k_factor = self.config.refine_k_factor


def stored_kind(faiss_index) -> str:
    """The kind a FAISS index really is (flat, hnsw or ivfpq), whatever a manifest says."""
    import faiss

    name = type(faiss.downcast_index(faiss_index)).__name__
    if "HNSW" in name:
        return "hnsw"
    return "flat" if name in ("IndexFlatIP", "IndexFlat") else "ivfpq"  # else IVF-PQ, its OPQ pre-transform or its refine wrapper


def _with_refine(ivfpq, sample: np.ndarray, config: IndexConfig):
    """IVF-PQ wrapped in a refine stage: PQ finds refine_k_factor * k candidates, a finer copy re-scores them.

    PQ alone loses the exact order among close neighbours (recall@10 0.79 on the built-in corpus);
    an 8-bit scalar-quantized copy costs dim bytes per vector and restores it (0.94).
    """
    import faiss

    if config.refine == "none":
        return ivfpq
    d = sample.shape[1]
    fine = faiss.IndexFlatIP(d) if config.refine == "flat" else faiss.IndexScalarQuantizer(d, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
    fine.train(sample)
    index = faiss.IndexRefine(ivfpq, fine)  # both already trained: the PQ is not trained again
    ivfpq.this.disown()  # the IndexRefine owns and frees both
    fine.this.disown()
    index.own_fields = True
    index.own_refine_index = True
    return index


def _as_f32(x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim != 2:
        raise RagError(f"expected a 2-d array of vectors, got shape {x.shape}")
    return x


def _to_gpu(index, config: IndexConfig):
    """A GPU copy for searching when faiss-gpu sees a GPU; HNSW has no GPU version and stays on CPU."""
    import faiss

    if not config.use_gpu or config.kind == "hnsw" or not hasattr(faiss, "StandardGpuResources") or faiss.get_num_gpus() == 0:
        return index
    try:
        return faiss.index_cpu_to_all_gpus(index)
    except RuntimeError as e:  # e.g. a PQ code size faiss-gpu lacks: search on CPU instead
        import sys

        print(f"rag: searching on CPU, faiss-gpu cannot take this index: {str(e).splitlines()[-1]}", file=sys.stderr)
        return index

