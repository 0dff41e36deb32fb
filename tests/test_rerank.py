"""Re-ranking (issue 11): a retriever's top N re-scored by the shipped span reader's passage-selection head."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from rag.cli import main
from rag.pipeline import PipelineConfig, load_pipeline
from rag.readers import load_reader, load_reranker
from rag.rerank import RerankConfig, RerankingRetriever, load_reranking
from rag.retrieve import load_retriever
from rag.types import Passage, RagError

QUESTIONS = ["who wrote dracula", "who painted guernica", "in which city is the eiffel tower"]


class FixedLogits:
    """A reranker whose logit is given per passage id (to check the ordering rule by hand)."""

    def __init__(self, logits: dict[str, float]):
        self.logits = logits

    def rerank_logits(self, question, passages, max_length=None):
        return [self.logits.get(p.id, 0.0) for p in passages]


def test_order_is_weighted_retrieval_plus_reranker_logit_and_scores_stay(small_index):
    dense = load_retriever(small_index, "bm25")
    base = dense.retrieve(QUESTIONS[:1], 5)[0]
    last = base[-1].passage.id
    reranked = RerankingRetriever(dense, FixedLogits({last: 1e6}), depth=5, retrieval_weight=1.0).retrieve(QUESTIONS[:1], 3)[0]
    assert reranked[0].passage.id == last and [h.rank for h in reranked] == [1, 2, 3]  # the bottom passage moved to the top
    assert reranked[0].score == base[-1].score  # readers keep the retriever's score for p(z|q)
    assert [h.passage.id for h in reranked[1:]] == [h.passage.id for h in base[:2]]  # the rest keep their order


def test_hits_below_the_depth_keep_the_retrievers_order(small_index):
    """k > depth: the top `depth` are re-ordered, the rest follow as the retriever ranked them."""
    bm25 = load_retriever(small_index, "bm25")
    base = bm25.retrieve(QUESTIONS[:1], 6)[0]
    reranked = RerankingRetriever(bm25, FixedLogits({base[2].passage.id: 1e6}), depth=3, retrieval_weight=1.0).retrieve(QUESTIONS[:1], 6)[0]
    assert [h.passage.id for h in reranked] == [base[i].passage.id for i in (2, 0, 1, 3, 4, 5)]
    assert [h.rank for h in reranked] == [1, 2, 3, 4, 5, 6]
    assert RerankConfig().depth == 50 and PipelineConfig('x').rerank == RerankConfig()  # the default pipeline re-ranks the top 50


def test_reader_weighting_keeps_answer_passages_on_top(small_index):
    """The default order is the span reader's own p(z|q): retrieval x score_scale + selection logit."""
    dense = load_retriever(small_index, "dense", small_index.load_encoder())
    config = RerankConfig(depth=30)
    reranked = load_reranking(dense, config, load_reranker(config))
    assert reranked.retrieval_weight == 20.0
    for question, answer in zip(QUESTIONS, ("Bram Stoker", "Picasso", "Paris")):
        top = reranked.retrieve([question], 1)[0][0]
        assert answer in top.passage.text, (question, top.passage.title)


def test_default_weight_is_the_readers_scale_over_dense_and_zero_over_bm25(small_index):
    """Over BM25 (scores 10-30) the reader's scale would drown the logits: there the reranker orders alone."""
    reranker = load_reranker(RerankConfig())
    bm25 = load_reranking(load_retriever(small_index, "bm25"), RerankConfig(), reranker)
    dense = load_reranking(load_retriever(small_index, "dense", small_index.load_encoder()), RerankConfig(), reranker)
    assert (bm25.retrieval_weight, dense.retrieval_weight) == (0.0, 20.0)
    assert load_reranking(load_retriever(small_index, "bm25"), RerankConfig(retrieval_weight=3.0), reranker).retrieval_weight == 3.0
    hits = bm25.retrieve(["who wrote dracula"], 3)[0]
    logits = reranker.rerank_logits("who wrote dracula", [h.passage for h in hits], 128)
    assert list(logits) == sorted(logits, reverse=True)  # the top 3 are in the reranker's own order


def test_rerank_is_refused_below_one_and_needs_a_span_reader(small_index, tmp_path, monkeypatch):
    with pytest.raises(RagError, match="--rerank must be 1 or more"):
        RerankConfig(depth=0)
    with pytest.raises(RagError, match="not a span reader"):
        config = RerankConfig(reranker="rag-sequence")
        load_reranking(load_retriever(small_index, "bm25"), config, load_reranker(config))
    monkeypatch.setenv("RAG_MODELS_DIR", str(tmp_path))  # models/reranker missing: say where it was looked for
    with pytest.raises(RagError, match=f"{tmp_path / 'reranker'} is not there"):
        load_reranker(RerankConfig())


def test_pipeline_and_cli_rerank(small_index, tmp_path, capsys):
    pipeline = load_pipeline(PipelineConfig(str(small_index.path), "default", k=5, rerank=RerankConfig(depth=20, reranker="reader")))
    assert isinstance(pipeline.retriever, RerankingRetriever) and pipeline.retriever.reranker is pipeline.reader  # one reader in memory
    shipped = load_pipeline(PipelineConfig(str(small_index.path), "default", k=5, rerank=RerankConfig(depth=20)))  # default: models/reranker
    assert Path(shipped.retriever.reranker.config.model).name == "reranker" and shipped.retriever.max_length == 128
    assert shipped.answer(["who wrote dracula"])[0].answer.text == "Bram Stoker"
    assert pipeline.answer(["who wrote dracula"])[0].answer.text == "Bram Stoker"
    assert main(["search", "who wrote dracula", "--index", str(small_index.path), "--rerank", "20", "-k", "3", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)["hits"]
    assert [h["rank"] for h in hits] == [1, 2, 3] and "Bram Stoker" in hits[0]["text"]
    assert main(["search", "q", "--index", str(small_index.path), "--rerank", "-1"]) == 2
    assert "--rerank must be 0 (off) or more" in capsys.readouterr().err


def test_pipeline_without_the_shipped_reranker_reads_unreranked_and_says_so(small_index, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RAG_MODELS_DIR", str(tmp_path))  # models/reranker missing (and models/reader)
    plain = load_pipeline(PipelineConfig(str(small_index.path), "default", k=3))
    assert not isinstance(plain.retriever, RerankingRetriever)
    assert f"no shipped reranker at {tmp_path / 'reranker'}" in capsys.readouterr().err
    own_head = load_pipeline(PipelineConfig(str(small_index.path), "default", k=3, rerank=RerankConfig(reranker="reader")))  # asked for another: still re-ranks
    assert isinstance(own_head.retriever, RerankingRetriever) and "no shipped reranker" not in capsys.readouterr().err
    assert main(["search", "who wrote dracula", "--index", str(small_index.path), "-k", "2"]) == 0  # rag search too
    assert "no shipped reranker" in capsys.readouterr().err


def test_eval_retrieval_shows_each_retriever_with_and_without_reranking(small_index, tmp_path):
    qa = tmp_path / "qa.jsonl"
    qa.write_text("".join(json.dumps({"question": q, "answer": [a]}) + "\n" for q, a in zip(QUESTIONS, ("Bram Stoker", "Picasso", "Paris"))))
    out = tmp_path / "r"
    assert main(["eval", "retrieval", "--questions", str(qa), "--index", str(small_index.path), "--retrievers", "bm25", "--rerank", "10", "--k-list", "1,5", "--out", str(out)]) == 0
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["configuration"]["reranker"] == "rag-reranker, top 10"
    assert set(report["configuration"]["retrievers"]) == {"bm25", "bm25 + rerank 10"}


def test_reader_rerank_logits_are_one_per_passage():
    reader = load_reader("default")
    passages = [Passage(str(i), "Dracula", text) for i, text in enumerate(("Dracula is a novel by Bram Stoker.", "Paris is in France.", "x"))]
    assert reader.rerank_logits("who wrote dracula", passages).shape == (3,)
    assert reader.rerank_logits("who wrote dracula", []).shape == (0,)


def test_rerank_logits_batched_shortest_first_match_one_at_a_time(small_index):
    """Passages are batched by length (less padding): each logit must still land on its own passage."""
    from dataclasses import replace

    reader = load_reader("default")
    reader.config = replace(reader.config, batch_size=3)
    hits = load_retriever(small_index, "bm25").retrieve(["who wrote dracula"], 10)[0]
    passages = [h.passage for h in hits][::-1]  # not in length order
    assert len({len(p.text) for p in passages}) > 3
    batched = reader.rerank_logits("who wrote dracula", passages)
    alone = [float(reader.rerank_logits("who wrote dracula", [p])[0]) for p in passages]
    assert max(alone) - min(alone) > 1  # distinct logits, so a passage given another's would show
    assert batched == pytest.approx(alone, abs=0.05)  # bf16: padding changes the last bits
    assert reader.model.qa.config._attn_implementation == "eager"  # on CPU (see SpanReader: faster than the flash kernel here)


def test_train_reranker_on_retrieved_passages_then_rerank_with_it(small_index, tmp_path, capsys):
    """DPR's reader loss on the selection head: a few steps on real retrieved positives and negatives, saved, used by --reranker."""
    from rag.train.reranker import RerankerTrainConfig, retrieved_groups

    qa = tmp_path / "qa.jsonl"
    qa.write_text("".join(json.dumps({"question": q, "answer": [a]}) + "\n" for q, a in zip(QUESTIONS, ("Bram Stoker", "Picasso", "Paris"))))
    groups = retrieved_groups(RerankerTrainConfig(questions=(str(qa),), index=str(small_index.path), out=str(tmp_path / "x"), depth=10), progress=False)
    assert groups and all(any(a in p.text for p in g.positives for a in ("Bram Stoker", "Picasso", "Paris")) for g in groups)
    dracula = next(g for g in groups if g.question == QUESTIONS[0])
    assert all("Bram Stoker" in p.text for p in dracula.positives) and not any("Bram Stoker" in p.text for p in dracula.negatives)
    out = tmp_path / "rr"
    args = ["train", "reranker", "--questions", str(qa), "--index", str(small_index.path), "--out", str(out), "--depth", "10", "--max-steps", "2", "--batch-size", "2", "--save-every", "1"]
    assert main(args) == 0 and f"reranker: {out / 'reranker'}" in capsys.readouterr().out
    assert main(args) == 0 and "resuming" in capsys.readouterr().err  # the same command resumes (nothing left to do)
    assert main(["search", "who wrote dracula", "--index", str(small_index.path), "--rerank", "10", "--reranker", str(out / "reranker"), "-k", "2", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["hits"]) == 2
    assert (out / "reranker" / "reranker.json").exists() and not (out / "reranker" / "reader.json").exists()  # its own header


def test_a_reranker_folder_is_a_reranker_and_never_a_reader():
    """models/reranker's header (reranker.json) says what it is: --reranker loads it, --reader refuses it (issue 28)."""
    from rag.paths import models_dir
    from rag.read import SpanReader

    folder = models_dir() / "reranker"
    assert (folder / "reranker.json").exists() and not (folder / "reader.json").exists()
    with pytest.raises(RagError, match="is a reranker"):
        load_reader(str(folder))
    reranker = load_reranker(RerankConfig())
    assert isinstance(reranker, SpanReader) and reranker.config.max_length == 128  # its saved settings, as before
