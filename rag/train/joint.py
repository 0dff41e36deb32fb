"""Joint end-to-end training from (question, answers) pairs only, as REALM and RAG do.

Each step: embed the questions with the query encoder (gradients on), retrieve the top-K passages
from the index, score them p(z|q) = softmax(q . d_z), and minimize the negative marginal
log-likelihood -log sum_z p(z|q) p(y|q,z) of the reader (weak supervision: spans matching an
answer string) or the generator (the first answer as target). The gradient reaches the reader or
generator and, through q . d_z, the query encoder. Passage vectors come from the index and stay
fixed; with `refresh_every=N` the passage encoder is trained too and every N steps all passages
are re-encoded and the index rebuilt (REALM's refresh, RAG-end2end).

With `rehearse_squad`, each step also adds -log p(answer | question, gold paragraph) of a few SQuAD
examples: learning from retrieved passages alone, a generator forgot how to read a given paragraph
(SQuAD dev EM 63.7 -> 44.8 in one run); rehearsal keeps that skill while the new one is learned.

The loop is rag.train.loop.fit's: one parameter group per trained part (the reader's rate `lr`, the
towers' `query_lr`), the index refresh as its after-step hook, its resumable checkpoints. The
checkpoint folder (rag.checkpoint) also holds what `rag ask --reader CHECKPOINT` loads.
"""
from __future__ import annotations

import json
import random
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from rag.checkpoint import LOG_FILE, CheckpointRecord
from rag.encoders import EncoderConfig, QueryTower, TwoTowerEncoder, load_encoder, passage_side
from rag.index_folder import IndexFolder, open_index, passage_vectors, write_refreshed_index
from rag.paths import checkpoints_dir, default_index
from rag.train.loop import TrainSettings, fit, run_kind, will_resume
from rag.types import Passage, QAExample, RagError

RUN_KIND = run_kind("joint")


@dataclass(frozen=True, kw_only=True)
class TrainConfig(TrainSettings):
    """TrainSettings (batch_size: questions per step; lr: the reader's or generator's rate; limit: the
    first N questions, several files taken in turn; a constant rate without weight decay) and:"""

    questions: str  # QA file(s), comma-separated (NQ-open JSONL, WebQuestions, DPR TSV ...), read by rag.qa_data.load_qa
    out: str = field(default_factory=lambda: str(checkpoints_dir() / "joint"))
    index: str = field(default_factory=lambda: str(default_index()))
    reader: str = "default"  # span reader to start from ("default", a reader folder, a hub QA id) or "rag-sequence"/"rag-token"
    generator: str | None = None  # seq2seq model for rag-sequence/rag-token (hub id or path)
    k: int = 8  # passages retrieved per question
    batch_size: int = 2
    lr: float = 1e-4  # the span head starts from zero knowledge: a higher rate than BERT fine-tuning's 3e-5
    warmup: float = 0.0
    schedule: str = "constant"  # more epochs continue a run where it stopped (a decaying rate would depend on them)
    weight_decay: float = 0.0
    save_every: int = 200
    query_lr: float = 2e-5  # the query (and passage) tower's rate
    train_query_encoder: bool = True  # False: the reader alone learns (a baseline for joint training)
    refresh_every: int = 0  # >0: train the passage encoder too, re-encode passages and rebuild the index every N steps
    max_length: int = 160  # reader input tokens: question + title + a 100-word passage mostly fit
    rehearse_squad: str = ""  # a SQuAD v1.1 file: each step also trains on `rehearse_per_step` (question, gold paragraph) examples
    rehearse_per_step: int = 4


class TrainableReader(Protocol):
    """A reader (rag.readers.Reader) joint training can train (rag.read.SpanReader, rag.generate.RagGenerator).

    answer_log_likelihood returns log p(answers | question) marginalized over `passages` with
    p(z | q) from `retrieval_scores` (a [K] tensor carrying the query tower's gradient), or None
    when the passages give no signal; `model` is the torch module the optimizer updates; `save`
    writes a folder `load_reader` reads back (its type header says what it is).
    """

    model: object
    device: str

    def answer_log_likelihood(self, question: str, passages: list[Passage], retrieval_scores, answers: tuple[str, ...]): ...

    def save(self, folder: str | Path) -> None: ...


@dataclass(frozen=True)
class TrainReport:
    steps: int
    questions_seen: int
    questions_used: int  # in this run (not before a resume): those with an answer in their top-K passages (the rest give no signal)
    mean_loss: float
    checkpoint: str


def train(config: TrainConfig, examples: list[QAExample] | None = None, progress: bool = True) -> TrainReport:
    """Run (or resume) joint training; writes checkpoints to `config.out`."""
    import torch

    if config.refresh_every < 0 or config.k < 1 or config.batch_size < 1 or config.rehearse_per_step < 0:
        raise RagError("refresh_every and rehearse_per_step must be >= 0, k and batch_size >= 1")
    out = Path(config.out).resolve()  # "." has no name to put ".partial" after
    resuming = will_resume(config, RUN_KIND)
    folder = open_index(config.index)
    examples = _training_examples(config, examples)
    if resuming and (saved := CheckpointRecord.read(out)).index_encoder != folder.manifest.encoder and not config.refresh_every:
        raise RagError(f"{out} was trained against an index built with {saved.index_encoder!r}, {config.index} uses {folder.manifest.encoder!r}")
    torch.manual_seed(config.seed)
    order = _question_order(len(examples), config.epochs, config.seed)
    # A batch is positions in `order`, so that what a step reads (and rehearses) is a function of the step alone.
    batches = [list(range(i, min(i + config.batch_size, len(order)))) for i in range(0, len(order), config.batch_size)]
    vectors = passage_vectors(open_index(out / "index") if resuming and config.refresh_every else folder)  # the refreshed ones when resuming
    trainee = JointTrainee(config, out, folder, [examples[i] for i in order], vectors, _rehearsal_examples(config))
    if resuming and (out / LOG_FILE).exists():
        trainee.log_lines = (out / LOG_FILE).read_text().splitlines()
    total = min(len(batches), config.max_steps) if config.max_steps else len(batches)
    refresh = lambda step: trainee.refresh(progress) if config.refresh_every and step % config.refresh_every == 0 and step < total else None  # noqa: E731
    report = fit(trainee, batches, config, RUN_KIND, "", progress, groups=trainee.groups(), after_step=refresh)
    return TrainReport(report.steps, len(order), trainee.used, report.mean_loss, str(out))


class JointTrainee:
    """What rag.train.loop.fit trains here: the reader (or generator) and the towers, one module."""

    def __init__(self, config: TrainConfig, out: Path, folder: IndexFolder, questions: list[QAExample], vectors: np.ndarray, rehearsal: list):
        import torch

        from rag.index import DenseIndex

        self.config, self.out, self.folder, self.questions, self.rehearsal = config, out, folder, questions, rehearsal
        self.reader = _load_trainable_reader(config)
        self.query_encoder = _load_tower(folder.manifest.encoder, config.device)
        self.passage_encoder = _load_tower(passage_side(folder.manifest.encoder), config.device) if config.refresh_every else None
        parts = {"reader": self.reader.model}
        if config.train_query_encoder:  # a frozen tower stays out of the module, so fit's model.train() leaves its dropout off
            parts["query_encoder"] = self.query_encoder.model
        if self.passage_encoder is not None:
            parts["passage_encoder"] = self.passage_encoder.model
        self.model = torch.nn.ModuleDict(parts)  # its state is the checkpoint's training_state.pt
        self.query_encoder.model.train(config.train_query_encoder)
        self.device = self.reader.device
        self.vectors, self.dense = vectors, DenseIndex.build(vectors)
        self.used, self.steps, self.log_lines = 0, 0, []

    def groups(self) -> list[dict]:
        """AdamW parameter groups: the reader at `lr`, each trained tower at `query_lr`."""
        groups = [{"params": [p for p in self.reader.model.parameters() if p.requires_grad], "lr": self.config.lr}]
        for name in ("query_encoder", "passage_encoder"):
            if name in self.model:
                groups.append({"params": list(self.model[name].parameters()), "lr": self.config.query_lr})
        return groups

    def loss(self, batch: list[int]):
        """-(mean log-likelihood of the batch's questions over their top-K) - (that of the rehearsed examples); None: no signal."""
        import torch

        self.steps = batch[0] // self.config.batch_size + 1
        questions = [self.questions[i] for i in batch]
        with torch.set_grad_enabled(self.config.train_query_encoder):
            q = self.query_encoder.embed([e.question for e in questions])
        rows = self.dense.search(q.detach().float().cpu().numpy(), self.config.k).rows
        batch_lls = _log_likelihoods(questions, q, rows, self.folder, self.vectors, self.passage_encoder, self.reader)
        rehearsed = _rehearsal_log_likelihoods(self.rehearsal, self.steps - 1, self.config.rehearse_per_step, self.reader)
        self.used += len(batch_lls)
        signal = [lls for lls in (batch_lls, rehearsed) if lls]  # each part's mean, so neither drowns the other
        loss = -sum(torch.stack(lls).mean() for lls in signal) if signal else None
        self.log_lines.append(json.dumps({"step": self.steps, "loss": float(loss.detach()) if signal else None, "used": len(batch_lls), "questions": len(batch)}))
        return loss

    def refresh(self, progress: bool) -> None:
        """REALM's index refresh: every passage re-encoded by the trained passage tower, searched from now on."""
        from rag.index import DenseIndex

        self.vectors = _encode_all(self.folder, self.passage_encoder, progress)
        self.dense = DenseIndex.build(self.vectors)

    def save(self, folder: Path) -> None:
        """The checkpoint's loadable parts (rag.checkpoint's layout) into `folder`, which fit then swaps in as OUT."""
        self.reader.save(folder / "reader")
        self.query_encoder.model.save(str(folder / "query_encoder"))
        index_encoder = self.folder.manifest.encoder
        if self.passage_encoder is not None:  # the saved index must hold the passage tower's current vectors
            self.passage_encoder.model.save(str(folder / "passage_encoder"))
            index_encoder = str((self.out / "passage_encoder").resolve())
            write_refreshed_index(folder / "index", self.folder, _encode_all(self.folder, self.passage_encoder, False), index_encoder)
        (folder / LOG_FILE).write_text("".join(line + "\n" for line in self.log_lines))
        CheckpointRecord(self.steps, CheckpointRecord.relative(self.config.index, self.out), index_encoder, asdict(self.config)).write(folder)


def _training_examples(config: TrainConfig, examples: list[QAExample] | None) -> list[QAExample]:
    if examples is None:
        from rag.qa_data import load_qa

        examples = _interleave([load_qa(path.strip()) for path in config.questions.split(",") if path.strip()])
    examples = list(examples)[: config.limit or None]
    if not examples:
        raise RagError(f"{config.questions}: no questions to train on")
    return examples


def _rehearsal_examples(config: TrainConfig) -> list[tuple[str, Passage, str]]:
    """SQuAD (question, ~120-word window of its paragraph around the answer, answer), shuffled by the seed."""
    if not config.rehearse_squad or not config.rehearse_per_step:
        return []
    from rag.qa_data import SQUAD_WINDOW_WORDS, load_squad, squad_examples

    # the window the generator was trained on in `rag train generator`, about a retrieved passage's length
    examples = squad_examples(load_squad(config.rehearse_squad), window_words=SQUAD_WINDOW_WORDS, seed=config.seed)
    random.Random(config.seed).shuffle(examples)
    return examples


def _rehearsal_log_likelihoods(rehearsal: list[tuple[str, Passage, str]], step: int, per_step: int, reader) -> list:
    """log p(answer | question, its gold paragraph) of this step's rehearsal examples (a function of
    the step, so that a resumed run rehearses what an uninterrupted one would)."""
    import torch

    found = []
    for j in range(per_step if rehearsal else 0):
        question, passage, answer = rehearsal[(step * per_step + j) % len(rehearsal)]
        ll = reader.answer_log_likelihood(question, [passage], torch.zeros(1, device=reader.device), (answer,))  # one passage: p(z|q) = 1
        if ll is not None and torch.isfinite(ll):
            found.append(ll)
    return found


def _log_likelihoods(questions: list[QAExample], q, rows: np.ndarray, folder: IndexFolder, vectors: np.ndarray, passage_encoder: QueryTower | None, reader) -> list:
    """log p(answers | question) of each question over its retrieved passages (None-signal questions left out).

    The retrieval scores d . q carry the gradient into the query tower (and the passage tower when it trains).
    """
    import torch

    from rag.encoders import passage_text

    found = []
    for b, example in enumerate(questions):
        row_list = [int(r) for r in rows[b] if r >= 0]
        passages = folder.store.get_rows(row_list)
        if passage_encoder is not None:
            d = passage_encoder.embed([passage_text(p) for p in passages])
        else:
            d = torch.as_tensor(vectors[row_list], device=q.device)
        with torch.autocast(q.device.type, enabled=False):  # the scores in fp32: p(z|q) rests on small differences of d . q
            scores = d.float() @ q[b].float()
        ll = reader.answer_log_likelihood(example.question, passages, scores, example.answers)
        if ll is not None and torch.isfinite(ll):
            found.append(ll)
    return found


# --- helpers ---------------------------------------------------------------------------------


def _load_trainable_reader(config: TrainConfig) -> TrainableReader:
    """The reader (or generator) training starts from; a resume then loads the checkpoint's weights into it."""
    if config.reader in ("rag-sequence", "rag-token"):
        from rag.generate import GENERATOR_FILE, GeneratorConfig, RagGenerator, load_generator

        spec = config.generator or GeneratorConfig().model
        variant = config.reader.removeprefix("rag-")
        if (Path(spec) / GENERATOR_FILE).exists():  # a generator folder keeps its settings (copy_only, score_scale), in training and in what is saved
            return load_generator(spec, device=config.device, variant=variant)
        return RagGenerator(GeneratorConfig(model=spec, variant=variant, device=config.device))
    from rag.read import ReaderConfig, SpanReader

    # fp32 weights: autocast runs the forward pass in bf16 where that is fast, the optimizer updates fp32
    return SpanReader(ReaderConfig(model=config.reader, device=config.device, max_length=config.max_length, precision="fp32"))


def _load_tower(spec: str, device: str | None) -> QueryTower:
    """A trainable tower: `spec`'s (a two-tower encoder's query side); a resume loads the checkpoint's weights into it."""
    if spec.startswith("dpr:"):
        raise RagError("joint training supports sentence-transformers encoders; this index uses a DPR encoder")
    encoder = load_encoder(EncoderConfig(spec=spec, device=device))
    return QueryTower(encoder.query if isinstance(encoder, TwoTowerEncoder) else encoder)


def _interleave(sets: list[list[QAExample]]) -> list[QAExample]:
    """Several question sets taken in turn, so that the first N questions mix them evenly."""
    out = []
    for i in range(max((len(s) for s in sets), default=0)):
        out += [s[i] for s in sets if i < len(s)]
    return out


def _question_order(n: int, epochs: float, seed: int) -> list[int]:
    """Shuffled passes over n questions: whole epochs, then the first part of one more (more epochs extend the same order)."""
    rng = random.Random(seed)
    order = []
    for _ in range(int(epochs) + 1):
        epoch = list(range(n))
        rng.shuffle(epoch)
        order += epoch
    return order[: max(1, round(n * epochs))]


def _encode_all(folder: IndexFolder, tower: QueryTower, progress: bool) -> np.ndarray:
    """Every passage re-encoded by the (trained) passage tower: REALM's index refresh."""
    from tqdm import tqdm

    was_training = tower.model.training
    tower.model.eval()
    parts = []
    with tqdm(total=len(folder.store), desc="refreshing passage vectors", unit=" passages", disable=not progress, file=sys.stderr) as bar:
        for passages in folder.store.iter_batches(256):
            parts.append(tower.encoder.encode_passages(passages))
            bar.update(len(passages))
    tower.model.train(was_training)
    return np.concatenate(parts)
