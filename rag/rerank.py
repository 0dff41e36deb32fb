"""Re-ranking: the top N passages of any retriever re-scored by a cross-encoder, the best k kept.

A bi-encoder embeds the question and the passage apart; a cross-encoder reads them together
(`[CLS] question [SEP] title [SEP] passage`) and so can tell a passage that answers the question
from one that only shares its words. The cross-encoder here is a span reader's passage-selection
head (DPR's reader re-ranks its retrieved passages this way): by default models/reranker, the shipped
reader trained further on retrieved passages (`rag train reranker`). A reranker is any object with
`rerank_logits(question, passages, max_length) -> [N] floats` (max_length None: its own).

The new order is by `retrieval_weight * retrieval score + reranker logit`: the span reader's own
p(z|q) = softmax(score_scale * retrieval + selection), so with the default weight (the reader's
score_scale) reranking orders passages as the reader weighs them. Over BM25 the default weight is 0
(the reranker alone): BM25 scores of 10-30 times 20 left the order unchanged (measured on 150
held-out training questions: top-5 6.0 -> 6.7 at weight 20, 6.0 -> 10.7 at weight 0). Hits keep their retrieval score
(readers turn it into p(z|q)); their rank is the new one, and `rerank_score` the score that ordered them.
"""
from __future__ import annotations

from dataclasses import dataclass

from rag.retrieve import BM25Retriever, Retriever, check_k
from rag.types import Hit, RagError


@dataclass(frozen=True)
class RerankConfig:
    # Passages re-scored per question. 50 on held-out training questions (eval/tune_pipeline.py): top-20 as at 70 or
    # 100 (within 0.1) at half the cost of 100; 20 and 30 leave the passages ranked 21-50 where dense put them.
    depth: int = 50
    reranker: str = "rag-reranker"  # "rag-reranker" (models/reranker, rag.readers.SHIPPED_RERANKER_SPEC), "reader" (the shipped span reader's own selection head) or a span-reader folder
    retrieval_weight: float | None = None  # None: the reader's score_scale (its own p(z|q)), 0 over BM25; 0: the reranker alone
    # Tokens of question + title + passage read per passage. 128 (not the reader's 192) on held-out training
    # questions: the same top-1/5/20 within noise and 100 passages in 0.93 s instead of 1.05 s on 2 cores (eval/tune_pipeline.py).
    max_length: int = 128
    device: str | None = None
    precision: str = "auto"

    def __post_init__(self):
        if self.depth < 1:
            raise RagError(f"--rerank must be 1 or more, not {self.depth}")
        if self.max_length < 16:
            raise RagError(f"--rerank-max-length must be 16 or more, not {self.max_length}")


class RerankingRetriever:
    """Retriever protocol (rag.retrieve.Retriever): `base`'s top `depth` passages re-ordered by a cross-encoder,
    then (when k > depth) the retriever's next ones in its own order."""

    def __init__(self, base: Retriever, reranker, depth: int, retrieval_weight: float, max_length: int | None = None):
        self.base, self.reranker, self.depth, self.retrieval_weight, self.max_length = base, reranker, depth, retrieval_weight, max_length

    def retrieve(self, questions: list[str], k: int) -> list[list[Hit]]:
        k = check_k(k)
        out = []
        for question, hits in zip(questions, self.base.retrieve(questions, max(k, self.depth))):
            top = hits[: self.depth]  # re-scored; any deeper hits (k > depth) follow in the retriever's order
            logits = self.reranker.rerank_logits(question, [h.passage for h in top], self.max_length) if top else []
            combined = [self.retrieval_weight * h.score + float(logit) for h, logit in zip(top, logits)]
            order = sorted(range(len(top)), key=lambda i: (-combined[i], top[i].rank)) + list(range(len(top), len(hits)))
            out.append([Hit(hits[i].passage, hits[i].score, rank, combined[i] if i < len(top) else None) for rank, i in enumerate(order[:k], 1)])
        return out


def load_reranking(base: Retriever, config: RerankConfig, reranker) -> RerankingRetriever:
    """`base` wrapped by `reranker`, a span reader (rag.readers.load_reranker loads the one `config` names)."""
    if not hasattr(reranker, "rerank_logits"):  # a span reader (rag.read.SpanReader) or reranker folder; a generator has no selection head
        raise RagError(f"--reranker {config.reranker}: not a span reader (its passage-selection head re-ranks)")
    weight = config.retrieval_weight
    if weight is None:  # BM25's scores (10-30, unbounded) times the reader's scale would outweigh every logit
        weight = 0.0 if isinstance(base, BM25Retriever) else reranker.config.score_scale

    return RerankingRetriever(base, reranker, config.depth, weight, config.max_length)
