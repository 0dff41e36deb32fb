"""A cross-encoder reranker trained on retrieved passages (DPR's reader selection loss), for rag.rerank.

Questions with answers only (DPR's NQ dev and TriviaQA dev topics, WebQuestions train): each question's
top `depth` passages are retrieved from an index; those holding an answer (DPR's rule) are its
positives, the rest hard negatives. One step scores, per question, one positive and `negatives`
negatives with the span reader's passage-selection head, and minimizes the cross-entropy of the
positive among them: the passage that answers should outscore the ones that only look alike.
Training starts from the shipped span reader. The result is a reranker folder (`--reranker OUT/reranker`):
the span reader's files under their own header (rag.read.RERANKER_FILE); its span heads are not trained
further, so it is refused as a reader (read with the shipped one).
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from rag.console import log
from rag.train.loop import TrainSettings, check_out, epoch_batches, fit, run_kind
from rag.types import Passage, RagError

RERANKER_RUN_KIND = run_kind("reranker")


@dataclass(frozen=True, kw_only=True)
class RerankerTrainConfig(TrainSettings):
    """TrainSettings (batch_size: questions per step, each 1 + negatives passages; limit: the first N questions of each file) and:"""

    questions: tuple[str, ...]  # QA files (any format rag.qa_data reads): questions with answers
    index: str
    holdout: float = 0.0  # share of the questions kept aside, as `rag train retriever --holdout` does (same files and seed: the same questions)
    depth: int = 30  # passages retrieved per question: positives and negatives come from these
    negatives: int = 3  # negatives scored beside each positive
    max_length: int = 192  # tokens per question + passage
    batch_size: int = 4
    lr: float = 2e-5
    save_every: int = 200


@dataclass(frozen=True)
class Group:
    question: str
    positives: tuple[Passage, ...]
    negatives: tuple[Passage, ...]


def retrieved_groups(config: RerankerTrainConfig, progress: bool = True) -> list[Group]:
    """Each question's retrieved passages split by DPR's answer rule; questions with no positive or no negative are dropped."""
    from rag.metrics import has_answer
    from rag.qa_data import holdout_split, load_qa
    from rag.retrieve import load_retriever

    examples = [ex for path in config.questions for ex in load_qa(path, limit=config.limit or None)]
    if config.holdout:  # leave out the retriever's held-out questions (the same ones, given its files and seed)
        examples = holdout_split(examples, config.holdout, config.seed)[1]
    retriever = load_retriever(config.index, "dense")
    groups = []
    for start in range(0, len(examples), 256):
        batch = examples[start : start + 256]
        for ex, hits in zip(batch, retriever.retrieve([ex.question for ex in batch], config.depth)):
            pos = tuple(h.passage for h in hits if has_answer(h.passage.text, ex.answers))
            neg = tuple(h.passage for h in hits if not has_answer(h.passage.text, ex.answers))
            if pos and neg:
                groups.append(Group(ex.question, pos, neg))
    log(f"{len(groups):,} of {len(examples):,} questions have an answer-bearing passage in their top {config.depth}", progress)
    if not groups:
        raise RagError(f"no question has an answer-bearing passage in its top {config.depth} over {config.index}")
    return groups


def train_reranker(config: RerankerTrainConfig, progress: bool = True) -> str:
    """Train (or resume) the reranker; returns the trained reranker folder."""
    import torch

    from rag.paths import SHIPPED_READER, shipped_model
    from rag.read import ReaderConfig, SpanReader

    if config.negatives < 1 or config.batch_size < 1 or config.depth < 2:
        raise RagError("need negatives >= 1, batch_size >= 1, depth >= 2")
    check_out(config, RERANKER_RUN_KIND)
    start = shipped_model(SHIPPED_READER)
    if start is None:
        raise RagError("rag train reranker starts from the shipped span reader (models/reader), which is not installed")
    torch.manual_seed(config.seed)
    reader = SpanReader(ReaderConfig(model=str(start), device=config.device, max_length=config.max_length, precision="fp32"))
    groups = retrieved_groups(config, progress)
    batches = epoch_batches([1] * len(groups), config.batch_size, config.epochs, config.seed)
    fit(_RerankTrainee(reader, groups, config.negatives, config.seed), batches, config, RERANKER_RUN_KIND, "reranker", progress)
    return str(Path(config.out).resolve() / "reranker")


class _RerankTrainee:
    """The selection head as rag.train.loop.fit trains it: the positive's cross-entropy among its group."""

    def __init__(self, reader, groups: list[Group], negatives: int, seed: int):
        self.reader, self.groups, self.negatives = reader, groups, negatives
        self.model, self.device = reader.model, reader.device
        self.rng = random.Random(seed)

    def loss(self, batch: list[int]):
        import torch
        import torch.nn.functional as F

        losses = []
        for i in batch:
            group = self.groups[i]
            passages = [self.rng.choice(group.positives)] + self.rng.sample(group.negatives, min(self.negatives, len(group.negatives)))
            select = self.model(self.reader.encode(group.question, passages).features)[2].float()
            losses.append(F.cross_entropy(select[None, :], torch.zeros(1, dtype=torch.long, device=self.device)))
        return torch.stack(losses).mean()

    def save(self, folder: Path) -> None:
        from rag.read import RERANKER_FILE

        self.reader.save(folder, half=True, header=RERANKER_FILE)
