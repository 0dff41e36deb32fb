"""Retrievers over a real small index: dense, BM25, hybrid fusion, and the one place they are chosen."""
from __future__ import annotations

import pytest

from rag.retrieve import BM25Retriever, DenseRetriever, HybridConfig, HybridRetriever, fuse, load_retriever
from rag.types import Hit, Passage, RagError


def _ranked(*scored: tuple[str, float]) -> list[Hit]:
    return [Hit(Passage(pid, pid, f"text of {pid}"), score, rank) for rank, (pid, score) in enumerate(scored, 1)]


def _ids(hits: list[Hit]) -> list[str]:
    return [h.passage.id for h in hits]


def test_rrf_order_differs_from_both_inputs():
    dense = _ranked(("A", 0.9), ("B", 0.8), ("C", 0.7))
    bm25 = _ranked(("C", 12.0), ("D", 11.0), ("B", 10.0))
    fused = fuse(dense, bm25, 4, HybridConfig(fusion="rrf", dense_weight=0.5, rrf_k=60))
    # 0.5 x: C 1/63 + 1/61, B 1/62 + 1/63, A 1/61, D 1/62
    assert _ids(fused) == ["C", "B", "A", "D"]
    assert _ids(fused) != _ids(dense) and _ids(fused)[:3] != _ids(bm25)
    assert fused[0].score == pytest.approx(0.5 / 63 + 0.5 / 61)
    assert [h.rank for h in fused] == [1, 2, 3, 4]


def test_linear_fusion_normalizes_scores_and_weights_them():
    dense = _ranked(("A", 0.90), ("B", 0.85), ("C", 0.50))  # normalized: A 1, B 0.875, C 0
    bm25 = _ranked(("C", 20.0), ("B", 15.0), ("A", 10.0))  # normalized: C 1, B 0.5, A 0
    fused = fuse(dense, bm25, 3, HybridConfig(fusion="linear", dense_weight=0.5))
    assert _ids(fused) == ["B", "A", "C"]  # B 0.6875, A 0.5, C 0.5 (tie: A has the better best rank)
    assert [h.score for h in fused] == pytest.approx([0.6875, 0.5, 0.5])
    assert _ids(fuse(dense, bm25, 3, HybridConfig(fusion="linear", dense_weight=0.8))) == ["A", "B", "C"]
    assert _ids(fuse(dense, bm25, 3, HybridConfig(fusion="linear", dense_weight=0.2))) == ["C", "B", "A"]


def test_hybrid_config_is_checked():
    with pytest.raises(RagError, match="rrf, linear"):
        HybridConfig(fusion="max")
    with pytest.raises(RagError, match="dense_weight"):
        HybridConfig(dense_weight=1.5)


def test_load_retriever_kinds(small_index_copy, encoder):
    index = small_index_copy
    question = ["who wrote the novel don quixote"]
    dense, bm25 = load_retriever(index, "dense", encoder), load_retriever(index, "bm25")
    hybrid = load_retriever(index, "hybrid", encoder, HybridConfig(fusion="linear", dense_weight=0.3))
    assert isinstance(dense, DenseRetriever) and isinstance(bm25, BM25Retriever) and isinstance(hybrid, HybridRetriever)
    for retriever in (dense, bm25, hybrid):  # each finds the article the question is about
        assert retriever.retrieve(question, 3)[0][0].passage.title == "Don Quixote"
    scores = [h.score for h in hybrid.retrieve(question, 5)[0]]
    assert hybrid.config.dense_weight == 0.3 and 0 < scores[-1] <= scores[0] <= 1  # linear fusion: normalized, ranked
    with pytest.raises(RagError, match="dense, bm25, hybrid"):
        load_retriever(index, "colbert")


QUESTIONS = ["who wrote the science fiction novel dune", "which opera did mozart write with lorenzo da ponte", "zzzz qqqq"]


def test_bm25_retriever_hits(small_index_copy):
    hits = load_retriever(small_index_copy, "bm25").retrieve(QUESTIONS, 5)
    assert len(hits) == 3
    assert hits[0][0].passage.title == "Dune (novel)"
    assert hits[1][0].passage.title == "Don Giovanni"
    assert hits[2] == []  # no passage shares a word with it
    for ranked in hits[:2]:
        assert [h.rank for h in ranked] == list(range(1, len(ranked) + 1))
        assert all(a.score >= b.score > 0 for a, b in zip(ranked, ranked[1:]))


def test_hybrid_on_a_real_index_matches_its_inputs_at_the_extremes(small_index_copy, encoder):
    dense = DenseRetriever(small_index_copy, encoder)
    bm25 = BM25Retriever(small_index_copy)
    questions = QUESTIONS[:2] + ["what is the great sphinx of giza made of"]
    dense_hits, bm25_hits = dense.retrieve(questions, 10), bm25.retrieve(questions, 10)
    only_dense = HybridRetriever(dense, bm25, HybridConfig(fusion="linear", dense_weight=1.0, depth=10)).retrieve(questions, 10)
    only_bm25 = HybridRetriever(dense, bm25, HybridConfig(fusion="linear", dense_weight=0.0, depth=10)).retrieve(questions, 10)
    for d, b, od, ob in zip(dense_hits, bm25_hits, only_dense, only_bm25):
        assert _ids(od)[: len(d) - 1] == _ids(d)[:-1]  # the last dense hit normalizes to 0 and may tie with BM25-only ones
        assert _ids(ob)[: len(b) - 1] == _ids(b)[:-1]
    rrf = HybridRetriever(dense, bm25, HybridConfig(depth=10)).retrieve(questions, 5)
    for d, b, fused in zip(dense_hits, bm25_hits, rrf):
        assert len(fused) == 5 and set(_ids(fused)) <= set(_ids(d)) | set(_ids(b))
        assert fused[0].passage.id in (d[0].passage.id, b[0].passage.id)
    assert rrf[0][0].passage.title == "Dune (novel)"
