"""DPR-style retriever training: the query tower fine-tuned against an index's fixed passage vectors.

Data: questions with answers only (DPR's NQ dev and TriviaQA dev topics, WebQuestions train). For
each question, the top `depth` passages of dense and of BM25 retrieval are collected; those that
hold an answer (DPR's rule) are its positives (DPR's "distant supervision"); questions with none
are dropped. With `squad`, SQuAD questions join them, each with its own paragraph as the positive
(`squad_pairs`; measured: no gain on the held-out questions, see README).

Loss: the question's vector q scores every passage of the index, s_z = scale * q . d_z, and the
loss is -log sum_{z positive} softmax(s)_z. Every passage of the index is a negative: the BM25 and
dense hard negatives DPR samples, the in-batch ones, and all the rest, at the price of one
[batch x passages] product (11k passages here). The positives are marginalized, as REALM does, so
the tower may prefer the positive that really answers over one that holds the string by accident.

The passage tower stays as the index was built ("query-side fine-tuning", as DensePhrases does):
the index needs no re-encoding and its vectors stay valid; the result is a two-tower encoder
folder (rag.encoders.TwoTowerEncoder) whose passage side is the index's encoder.

A `holdout` share of the training questions never trains: top-k on it, before and after, is what
`rag train retriever` prints, so a run is judged on questions it did not see and never on a
report set.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from rag.console import log
from rag.train.loop import TrainSettings, check_out, epoch_batches, fit, run_kind
from rag.types import Passage, QAExample, RagError

RETRIEVER_RUN_KIND = run_kind("retriever")


@dataclass(frozen=True, kw_only=True)
class RetrieverTrainConfig(TrainSettings):
    """TrainSettings (batch_size: questions per step, limit: the first N questions of each file) and:"""

    questions: tuple[str, ...]  # QA files (any format rag.qa_data reads): questions with answers
    index: str  # a flat or hnsw index built with a sentence-transformers encoder
    depth: int = 100  # positives: answer-bearing passages in the dense and the BM25 top `depth`
    squad: str = ""  # a SQuAD file: its questions with their own paragraph as the positive (DPR's "question -> its paragraph" pairs)
    squad_questions: int = 0  # how many of them (a seeded sample; 0: all): their paragraphs join the index's passages as candidates
    holdout: float = 0.05  # share of the questions kept aside to measure the run (never trained on)
    scale: float = 20.0  # s = scale * cosine: the softmax temperature (sentence-transformers' MNRL uses 20)
    lr: float = 2e-5
    save_every: int = 200


@dataclass(frozen=True)
class Positives:
    question: str
    rows: tuple[int, ...]  # index rows of its answer-bearing passages


@dataclass(frozen=True)
class HoldoutReport:
    questions: int
    before: dict[int, float]  # top-k accuracy (%) with the untrained query tower (the passage tower's weights)
    after: dict[int, float]  # with the trained query tower


def distant_positives(examples: list[QAExample], folder, depth: int, progress: bool = True) -> list[Positives]:
    """Each question's answer-bearing passages among its dense and BM25 top `depth` (DPR's rule)."""
    from rag.bm25 import bm25_for_index
    from rag.encoders import EncoderConfig, load_encoder, passage_side
    from rag.metrics import has_answer

    encoder = load_encoder(EncoderConfig(spec=passage_side(folder.manifest.encoder)))  # plain MiniLM's candidates, however the index was built
    bm25 = bm25_for_index(folder)
    found = []
    for start in range(0, len(examples), 512):
        batch = examples[start : start + 512]
        questions = [ex.question for ex in batch]
        dense = folder.dense.search(encoder.encode_queries(questions), depth).rows
        sparse = bm25.search(questions, depth).rows
        candidates = [sorted({int(r) for r in np.concatenate([d, s]) if r >= 0}) for d, s in zip(dense, sparse)]
        texts = dict(zip(seen := sorted({r for rows in candidates for r in rows}), (p.text for p in folder.store.get_rows(seen))))
        for ex, rows in zip(batch, candidates):
            positive = tuple(r for r in rows if has_answer(texts[r], ex.answers))
            if positive:
                found.append(Positives(ex.question, positive))
        log(f"positives: {start + len(batch):,} of {len(examples):,} questions read, {len(found):,} with a positive", progress)
    return found


def squad_pairs(config: RetrieverTrainConfig, passage_spec: str, first_row: int, progress: bool = True) -> tuple[np.ndarray, list[Positives]]:
    """SQuAD questions, each with its own paragraph as the one positive: (the paragraphs' vectors, by
    `passage_spec`, and the questions, whose rows count from `first_row`). The paragraphs of one article
    are each other's hard negatives. SQuAD's questions are written with the paragraph in view, so
    they teach matching by content words, which questions asked without the text (NQ's) lack."""
    from rag.encoders import EncoderConfig, load_encoder
    from rag.qa_data import load_squad

    questions = load_squad(config.squad)
    if config.squad_questions:
        questions = random.Random(config.seed).sample(questions, min(config.squad_questions, len(questions)))
    rows: dict[tuple[str, str], int] = {}
    for q in questions:
        rows.setdefault((q.title, q.context), first_row + len(rows))
    log(f"SQuAD: {len(questions):,} questions, {len(rows):,} paragraphs to encode", progress)
    encoder = load_encoder(EncoderConfig(spec=passage_spec, device=config.device))
    vectors = encoder.encode_passages([Passage(f"squad-{r}", title, context) for (title, context), r in rows.items()])
    return vectors, [Positives(q.question, (rows[(q.title, q.context)],)) for q in questions]


def split_questions(config: RetrieverTrainConfig) -> tuple[list[QAExample], list[QAExample]]:
    """(held-out, training) questions: the files read, shuffled by `seed`, the first `holdout` share kept aside.
    eval/tune_pipeline.py tunes on the same held-out questions, which no training step has seen."""
    from rag.qa_data import holdout_split, load_qa

    return holdout_split([ex for path in config.questions for ex in load_qa(path, limit=config.limit or None)], config.holdout, config.seed)


def train_retriever(config: RetrieverTrainConfig, progress: bool = True) -> tuple[str, HoldoutReport]:
    """Train (or resume) the query tower; returns the encoder folder and its held-out top-k before and after."""
    import torch

    from rag.encoders import passage_side
    from rag.index_folder import open_index, passage_vectors

    if config.depth < 1 or config.batch_size < 1 or not 0 <= config.holdout < 1:
        raise RagError("need depth >= 1, batch_size >= 1 and 0 <= holdout < 1")
    out = Path(config.out).resolve()
    check_out(config, RETRIEVER_RUN_KIND)
    folder = open_index(config.index)
    torch.manual_seed(config.seed)
    tower = _query_tower(folder, config.device)  # before the positives: an index of another encoder kind is refused at once
    held, train_examples = split_questions(config)
    groups = distant_positives(train_examples, folder, config.depth, progress)
    if not groups:
        raise RagError(f"no training question has an answer-bearing passage in its top {config.depth} over {config.index}")
    vectors = passage_vectors(folder)
    if config.squad:  # their paragraphs are extra candidates after the index's rows, for every question
        extra, squad_groups = squad_pairs(config, passage_side(folder.manifest.encoder), first_row=len(vectors), progress=progress)
        vectors, groups = np.concatenate([vectors, extra]), groups + squad_groups
    vectors = torch.as_tensor(vectors, device=tower.encoder.device)
    before = _holdout_accuracy(folder, tower, held)
    batches = epoch_batches([1] * len(groups), config.batch_size, config.epochs, config.seed)
    trainee = _QueryTowerTrainee(tower, groups, vectors, config.scale, passage_side(folder.manifest.encoder))
    fit(trainee, batches, config, RETRIEVER_RUN_KIND, "encoder", progress)
    after = _holdout_accuracy(folder, tower, held)
    return str(out / "encoder"), HoldoutReport(len(held), before, after)


def _query_tower(folder, device: str | None):
    """A new query tower: the weights of the index's passage tower (plain MiniLM for an index built with
    'default' or 'rag-retriever'), so that a rerun starts from the same point however the index was built."""
    from rag.encoders import EncoderConfig, QueryTower, SentenceTransformerEncoder, load_encoder, passage_side

    spec = passage_side(folder.manifest.encoder)
    encoder = load_encoder(EncoderConfig(spec=spec, device=device, precision="fp32"))
    if not isinstance(encoder, SentenceTransformerEncoder):
        raise RagError(f"rag train retriever trains sentence-transformers encoders, not {spec!r}")
    return QueryTower(encoder)


def _holdout_accuracy(folder, tower, examples: list[QAExample], ks=(1, 5, 20, 100)) -> dict[int, float]:
    """Top-k accuracy (%) of the tower's current query vectors over the index, on held-out questions."""
    import torch

    from rag.metrics import top_k_accuracy

    if not examples:
        return {}
    was_training = tower.model.training
    tower.model.eval()
    with torch.inference_mode():
        q = torch.cat([tower.embed([e.question for e in examples[i : i + 256]]) for i in range(0, len(examples), 256)])
    tower.model.train(was_training)
    hits = folder.search(q.float().cpu().numpy(), max(ks))
    return {k: 100 * v for k, v in top_k_accuracy(hits, [e.answers for e in examples], ks).items()}


class _QueryTowerTrainee:
    """The query tower as rag.train.loop.fit trains it: -log of the positives' share of the softmax over every passage."""

    def __init__(self, tower, groups: list[Positives], vectors, scale: float, passage_spec: str):
        self.tower, self.groups, self.vectors, self.scale, self.passage_spec = tower, groups, vectors, scale, passage_spec
        self.model, self.device = tower.model, tower.encoder.device

    def loss(self, batch: list[int]):
        import torch

        groups = [self.groups[i] for i in batch]
        q = self.tower.embed([g.question for g in groups]).float()
        scores = self.scale * q @ self.vectors.T  # [batch, passages]
        positive = torch.full_like(scores, float("-inf"))
        for b, g in enumerate(groups):
            positive[b, list(g.rows)] = 0.0
        return (torch.logsumexp(scores, dim=1) - torch.logsumexp(scores + positive, dim=1)).mean()

    def save(self, folder: Path) -> None:
        from rag.encoders import save_two_tower

        save_two_tower(self.model, folder, self.passage_spec)
