"""Retrievers: `retrieve(questions, k) -> list[list[Hit]]`, one list of ranked hits per question.

dense   question vectors -> FAISS inner-product search (DenseRetriever)
bm25    question words -> BM25 over the same passage store (BM25Retriever)
hybrid  both, fused per question (HybridRetriever): reciprocal-rank fusion or a linear mix of
        min-max normalized scores, `HybridConfig.dense_weight` on the dense side.
`load_retriever(index, kind)` is the one place a retriever is chosen.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from rag.encoders import Encoder
from rag.index_folder import IndexFolder
from rag.types import Hit, RagError

if TYPE_CHECKING:
    from rag.bm25 import BM25Index

FUSIONS = ("rrf", "linear")


class Retriever(Protocol):
    def retrieve(self, questions: list[str], k: int) -> list[list[Hit]]: ...


def check_k(k: int) -> int:
    """k must be a whole number of 1 or more: a negative k slices off the end of a ranking instead
    (hybrid search with k = -5 returned all but the last 5 of its ~124 fused candidates)."""
    if isinstance(k, bool) or not isinstance(k, numbers.Integral) or k < 1:
        raise RagError(f"k must be a whole number of 1 or more, not {k!r}")
    return int(k)


class DenseRetriever:
    """Questions -> query vectors -> FAISS inner-product search over the index's passages."""

    def __init__(self, index: IndexFolder, encoder: Encoder | None = None):
        self.index = index
        self.encoder = encoder or index.load_encoder()

    def retrieve(self, questions: list[str], k: int) -> list[list[Hit]]:
        k = check_k(k)
        return self.index.search(self.encoder.encode_queries(list(questions)), k)


class BM25Retriever:
    """Question words -> BM25 over the index's passage store (NAME/bm25/, built on first use if missing)."""

    def __init__(self, index: IndexFolder, bm25: BM25Index | None = None):
        from rag.bm25 import bm25_for_index

        self.index = index
        self.bm25 = bm25 if bm25 is not None else bm25_for_index(index)

    def retrieve(self, questions: list[str], k: int) -> list[list[Hit]]:
        return self.index.store.hits(self.bm25.search(list(questions), check_k(k)))


@dataclass(frozen=True)
class HybridConfig:
    # Defaults chosen by eval/tune_pipeline.py on held-out training questions (never a report set): linear
    # w=0.8 led the hybrids there (top-20 25.1 with the shipped retriever; RRF w=0.5, the old default, 22.2).
    fusion: str = "linear"  # "rrf": sum of w / (rrf_k + rank); "linear": sum of w * min-max normalized score
    dense_weight: float = 0.8  # w for dense, 1 - w for BM25
    rrf_k: int = 60  # Cormack et al.'s constant
    depth: int = 100  # candidates taken from each retriever per question (at least k)

    def __post_init__(self):
        if self.fusion not in FUSIONS:
            raise RagError(f"unknown fusion {self.fusion!r}; valid: {', '.join(FUSIONS)}")
        if not 0.0 <= self.dense_weight <= 1.0:
            raise RagError(f"dense_weight must be within [0, 1], not {self.dense_weight}")


class HybridRetriever:
    """Dense and BM25 candidates for each question, fused into one ranking by `fuse`."""

    def __init__(self, dense: Retriever, bm25: Retriever, config: HybridConfig = HybridConfig()):
        self.dense, self.bm25, self.config = dense, bm25, config

    def retrieve(self, questions: list[str], k: int) -> list[list[Hit]]:
        depth = max(check_k(k), self.config.depth)
        dense_hits = self.dense.retrieve(list(questions), depth)
        bm25_hits = self.bm25.retrieve(list(questions), depth)
        return [fuse(d, b, k, self.config) for d, b in zip(dense_hits, bm25_hits)]


def fuse(dense: list[Hit], bm25: list[Hit], k: int, config: HybridConfig = HybridConfig()) -> list[Hit]:
    """One question's two ranked lists -> the top k by fused score (ties: better best rank, then id).

    A passage missing from one list gets nothing from that side: 0 for RRF, the normalized
    minimum (0) for linear fusion.
    """
    k = check_k(k)
    weights = (config.dense_weight, 1.0 - config.dense_weight)
    fused: dict[str, float] = {}
    best_rank: dict[str, int] = {}
    passages = {}
    for weight, hits in zip(weights, (dense, bm25)):
        contributions = _rrf(hits, config.rrf_k) if config.fusion == "rrf" else _min_max(hits)
        for hit, value in zip(hits, contributions):
            pid = hit.passage.id
            passages[pid] = hit.passage
            fused[pid] = fused.get(pid, 0.0) + weight * value
            best_rank[pid] = min(best_rank.get(pid, hit.rank), hit.rank)
    order = sorted(fused, key=lambda pid: (-fused[pid], best_rank[pid], pid))[:k]
    return [Hit(passages[pid], fused[pid], rank) for rank, pid in enumerate(order, 1)]


def _rrf(hits: list[Hit], rrf_k: int) -> list[float]:
    return [1.0 / (rrf_k + h.rank) for h in hits]


def _min_max(hits: list[Hit]) -> list[float]:
    if not hits:
        return []
    lo, hi = min(h.score for h in hits), max(h.score for h in hits)
    return [(h.score - lo) / (hi - lo) if hi > lo else 1.0 for h in hits]


def load_retriever(index: IndexFolder | str, kind: str = "dense", encoder: Encoder | None = None, config: HybridConfig | None = None) -> Retriever:
    """The retriever of `kind` (a RETRIEVERS name) over an index (opened, or its folder's path); `config` tunes the hybrid's fusion."""
    if kind not in RETRIEVER_FACTORIES:
        raise RagError(f"unknown retriever {kind!r}; valid: {', '.join(RETRIEVERS)}")
    if isinstance(index, str):
        from rag.index_folder import open_index

        index = open_index(index)
    return RETRIEVER_FACTORIES[kind](index, encoder, config or HybridConfig())


# name -> factory(index, encoder, hybrid config): a new retriever is one class plus one entry here.
RETRIEVER_FACTORIES = {
    "dense": lambda index, encoder, config: DenseRetriever(index, encoder),
    "bm25": lambda index, encoder, config: BM25Retriever(index),
    "hybrid": lambda index, encoder, config: HybridRetriever(DenseRetriever(index, encoder), BM25Retriever(index), config),
}
RETRIEVERS = tuple(RETRIEVER_FACTORIES)  # the CLI's and the demo's choices
