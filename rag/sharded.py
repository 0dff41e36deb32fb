"""ShardedIndex: one FAISS index per contiguous block of store rows; search fans out and merges top-k.

Shard i holds rows [offset_i, offset_i + len_i) of the passage store. Every shard returns its own
top-k, so the merged top-k is exact: a sharded flat index answers exactly as one flat index does, and
a sharded IVF-PQ index (one training shared by all shards) as the unsharded IVF-PQ index does.

An index folder keeps the shards as index_shards/00000.faiss, 00001.faiss, ... (DenseIndex files);
the manifest's `index_shards` says how many. `rag.distributed.RayShardedIndex` holds them in Ray actors.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from rag.index import INDEX_KINDS, DenseIndex, IndexConfig, SearchResult, VectorBlocks, training_sample
from rag.types import RagError

SHARD_DIR = "index_shards"
MISSING_SCORE = -np.finfo(np.float32).max  # what FAISS reports beside row -1


def shard_files(folder: Path, n_shards: int) -> list[Path]:
    return [Path(folder) / f"{i:05d}.faiss" for i in range(n_shards)]


class ShardedIndex:
    """DenseIndex's interface (build/add/search/save/load, len, dim, config) over several DenseIndexes."""

    def __init__(self, shards: Sequence[DenseIndex], config: IndexConfig):
        if not shards:
            raise RagError("a sharded index needs at least one shard")
        self.shards = list(shards)
        self.config = config

    @property
    def dim(self) -> int:
        return self.shards[0].dim

    def shard_sizes(self) -> list[int]:
        return [len(s) for s in self.shards]

    def __len__(self) -> int:
        return sum(self.shard_sizes())

    @classmethod
    def build(cls, embeddings: np.ndarray, config: IndexConfig = IndexConfig(), n_shards: int = 2) -> "ShardedIndex":
        return cls.build_streamed(VectorBlocks([embeddings]), config, n_shards)

    @classmethod
    def build_from_files(cls, paths: Sequence[Path], config: IndexConfig, n_shards: int) -> "ShardedIndex":
        """From embedding shard files (rag.build's emb_*.npy), streamed file by file (see build_streamed)."""
        return cls.build_streamed(VectorBlocks.from_files(paths), config, n_shards)

    @classmethod
    def build_streamed(cls, vectors: VectorBlocks, config: IndexConfig, n_shards: int) -> "ShardedIndex":
        """Shards get equal row ranges, each filled block by block: memory is IVF-PQ's training sample,
        one block and what FAISS holds (as DenseIndex.build_streamed)."""
        n, dim = len(vectors), vectors.dim
        if n_shards < 1 or n_shards > max(n, 1):
            raise RagError(f"cannot split {n} passages into {n_shards} index shards")
        config = INDEX_KINDS[config.kind].resolve(config, n, dim)
        sample = training_sample(vectors, config)  # one training over the whole corpus, shared by every shard
        template = DenseIndex.trained(sample, config)
        del sample
        shards = []
        bounds = np.linspace(0, n, n_shards + 1).astype(int)
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            shard = template.empty_copy()
            shard.add_blocks(vectors.blocks(int(lo), int(hi)))
            shards.append(shard)
        return cls(shards, template.config)

    def add(self, embeddings: np.ndarray) -> None:
        """Append vectors at rows len(self).. : they go to the last shard."""
        self.shards[-1].add(embeddings)

    def reconstruct(self, rows) -> np.ndarray:
        """The vectors at store rows `rows`, fetched from the shard that holds each."""
        offsets = np.cumsum([0] + self.shard_sizes())
        rows = np.asarray(rows, dtype=np.int64)
        shard = np.searchsorted(offsets, rows, side="right") - 1
        out = np.zeros((len(rows), self.dim), np.float32)
        for s in np.unique(shard):
            picked = shard == s
            out[picked] = self._reconstruct_shard(int(s), rows[picked] - offsets[s])
        return out

    def _reconstruct_shard(self, shard: int, rows: np.ndarray) -> np.ndarray:
        return self.shards[shard].reconstruct(rows)

    def search(self, queries: np.ndarray, k: int) -> SearchResult:
        return merge_top_k(self._shard_results(queries, k), self.shard_sizes(), k)

    def _shard_results(self, queries: np.ndarray, k: int) -> list[SearchResult]:
        return [s.search(queries, k) for s in self.shards]

    def save(self, folder: str | Path) -> None:
        """Each shard to its own file, each by atomic rename."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        for shard, path in zip(self.shards, shard_files(folder, len(self.shards))):
            shard.save(path)

    @classmethod
    def load(cls, paths: Sequence[Path], config: IndexConfig, mmap: bool = False) -> "ShardedIndex":
        return cls([DenseIndex.load(p, config, mmap=mmap) for p in paths], config)


def merge_top_k(results: Sequence[SearchResult], sizes: Sequence[int], k: int) -> SearchResult:
    """The best k of every shard's top-k, shard rows turned into store rows; ties keep row order."""
    offsets = np.cumsum([0] + list(sizes[:-1]))
    rows = np.concatenate([np.where(r.rows >= 0, r.rows + off, -1) for r, off in zip(results, offsets)], axis=1)
    scores = np.concatenate([r.scores for r in results], axis=1).astype(np.float32)
    keyed = np.where(rows >= 0, scores, -np.inf)
    order = np.argsort(-keyed, axis=1, kind="stable")[:, :k]
    top_rows = np.take_along_axis(rows, order, axis=1)
    top_scores = np.where(top_rows >= 0, np.take_along_axis(scores, order, axis=1), MISSING_SCORE)
    return SearchResult(np.ascontiguousarray(top_scores, np.float32), np.ascontiguousarray(top_rows, np.int64))
