"""DenseIndex: a FAISS maximum-inner-product index over passage vectors.

Row i of the index is row i of the passage store beside it, so no separate id map is needed:
`add` appends to both in the same order.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from rag.types import RagError

KINDS = ("flat", "hnsw", "ivfpq")


@dataclass(frozen=True)
class IndexConfig:
    kind: str = "flat"
    hnsw_m: int = 32  # graph degree
    hnsw_ef_construction: int = 200
    hnsw_ef_search: int = 256
    ivf_nlist: int = 0  # IVF cells; 0 = chosen from corpus size (~4 sqrt(n))
    ivf_nprobe: int = 0  # cells visited per query; 0 = nlist / 8, at least 16
    pq_m: int = 0  # PQ sub-quantizers (bytes per vector at 8 bits); 0 = dim / 4
    pq_nbits: int = 8
    train_sample: int = 100_000  # vectors used to train IVF-PQ
    use_gpu: bool = True  # when faiss-gpu and a GPU are present

    def __post_init__(self):
        if self.kind not in KINDS:
            raise RagError(f"unknown index kind {self.kind!r}; valid: {', '.join(KINDS)}")


@dataclass(frozen=True)
class SearchResult:
    scores: np.ndarray  # [n_queries, k] float32, best first
    rows: np.ndarray  # [n_queries, k] int64 store rows; -1 where fewer than k passages exist


def resolve_ivfpq(config: IndexConfig, n: int, dim: int) -> IndexConfig:
    """Concrete IVF-PQ parameters for n vectors of dimension dim (the zeros in `config` filled in)."""
    nlist = config.ivf_nlist or max(1, min(65536, int(4 * math.sqrt(n)), n // 39))
    nprobe = config.ivf_nprobe or min(nlist, max(16, nlist // 8))
    m = config.pq_m or dim // 4
    while dim % m:  # PQ needs m to divide the dimension
        m -= 1
    # k-means for a PQ codebook of 2^nbits centroids needs ~39 points per centroid.
    nbits = min(config.pq_nbits, max(1, int(math.log2(max(2, n // 39)))))
    return IndexConfig(**{**asdict(config), "ivf_nlist": nlist, "ivf_nprobe": nprobe, "pq_m": m, "pq_nbits": nbits})


class DenseIndex:
    def __init__(self, faiss_index, config: IndexConfig):
        self._index = faiss_index
        self.config = config
        self._search_index = _to_gpu(faiss_index, config)

    @property
    def dim(self) -> int:
        return self._index.d

    def __len__(self) -> int:
        return self._index.ntotal

    @classmethod
    def build(cls, embeddings: np.ndarray, config: IndexConfig = IndexConfig()) -> "DenseIndex":
        import faiss

        x = _as_f32(embeddings)
        n, d = x.shape
        if config.kind == "flat":
            index = faiss.IndexFlatIP(d)
        elif config.kind == "hnsw":
            index = faiss.IndexHNSWFlat(d, config.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = config.hnsw_ef_construction
        else:
            config = resolve_ivfpq(config, n, d)
            quantizer = faiss.IndexFlatIP(d)
            index = faiss.IndexIVFPQ(quantizer, d, config.ivf_nlist, config.pq_m, config.pq_nbits, faiss.METRIC_INNER_PRODUCT)
            rng = np.random.default_rng(0)  # a fixed sample: the same corpus builds the same index
            sample = x if n <= config.train_sample else x[np.sort(rng.choice(n, config.train_sample, replace=False))]
            index.train(sample)
        index.add(x)
        dense = cls(index, config)
        dense._apply_search_params()
        return dense

    def add(self, embeddings: np.ndarray) -> None:
        """Append vectors at rows len(self).. (IVF-PQ reuses its trained quantizers)."""
        x = _as_f32(embeddings)
        if x.shape[1] != self.dim:
            raise RagError(f"cannot add {x.shape[1]}-d vectors to a {self.dim}-d index")
        self._index.add(x)
        self._search_index = _to_gpu(self._index, self.config)
        self._apply_search_params()

    def search(self, queries: np.ndarray, k: int) -> SearchResult:
        q = _as_f32(queries)
        if q.shape[1] != self.dim:
            raise RagError(f"query vectors are {q.shape[1]}-d, the index is {self.dim}-d")
        if len(q) == 0 or k <= 0:
            return SearchResult(np.zeros((len(q), 0), np.float32), np.zeros((len(q), 0), np.int64))
        scores, rows = self._search_index.search(q, k)
        return SearchResult(scores, rows)

    def save(self, path: str | Path) -> None:
        import faiss

        faiss.write_index(self._index, str(path))

    @classmethod
    def load(cls, path: str | Path, config: IndexConfig, mmap: bool = False) -> "DenseIndex":
        """mmap=True maps the file instead of reading it: an index larger than RAM stays searchable."""
        import faiss

        if not Path(path).exists():
            raise RagError(f"no FAISS index at {path}")
        flags = faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY if mmap else 0
        dense = cls(faiss.read_index(str(path), flags), config)
        dense._apply_search_params()
        return dense

    def _apply_search_params(self) -> None:
        import faiss

        if self.config.kind == "hnsw":
            faiss.downcast_index(self._index).hnsw.efSearch = self.config.hnsw_ef_search
        elif self.config.kind == "ivfpq":
            faiss.extract_index_ivf(self._search_index).nprobe = self.config.ivf_nprobe


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
    return faiss.index_cpu_to_all_gpus(index)
