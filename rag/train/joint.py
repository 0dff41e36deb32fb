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

Checkpoints (rag.checkpoint) are swapped in whole; a resume must use the same settings.
"""
from __future__ import annotations

import json
import random
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from rag.checkpoint import CHECKPOINT_KIND, LOG_FILE, STATE_FILE, CheckpointRecord, is_checkpoint
from rag.encoders import EncoderConfig, QueryTower, TwoTowerEncoder, load_encoder, passage_side
from rag.files import check_replaceable, fresh_scratch, publish_folder, recover_folder
from rag.index_folder import IndexFolder, open_index, passage_vectors, write_refreshed_index
from rag.paths import checkpoints_dir, default_index
from rag.train.loop import adamw, optimizer_step
from rag.precision import autocast, autocast_dtype
from rag.types import Passage, QAExample, RagError

# May differ on resume (more epochs continue the same order); every other setting must match.
RUN_SETTINGS_FREE = ("out", "device", "save_every", "fresh", "epochs")


@dataclass(frozen=True)
class TrainConfig:
    questions: str  # QA file(s), comma-separated (NQ-open JSONL, WebQuestions, DPR TSV ...), read by rag.qa_data.load_qa
    index: str = field(default_factory=lambda: str(default_index()))
    out: str = field(default_factory=lambda: str(checkpoints_dir() / "joint"))
    reader: str = "default"  # span reader to start from ("default", a reader folder, a hub QA id) or "rag-sequence"/"rag-token"
    generator: str | None = None  # seq2seq model for rag-sequence/rag-token (hub id or path)
    k: int = 8  # passages retrieved per question
    epochs: int = 1
    max_questions: int = 0  # 0: all
    batch_size: int = 2  # questions per optimizer step
    reader_lr: float = 1e-4  # the span head starts from zero knowledge: a higher rate than BERT fine-tuning's 3e-5
    query_lr: float = 2e-5
    train_query_encoder: bool = True  # False: the reader alone learns (a baseline for joint training)
    refresh_every: int = 0  # >0: train the passage encoder too, re-encode passages and rebuild the index every N steps
    max_length: int = 160  # reader input tokens: question + title + a 100-word passage mostly fit
    save_every: int = 200  # steps between checkpoints (and one at the end)
    seed: int = 0
    device: str | None = None
    fresh: bool = False  # start from step 0 even when `out` holds a checkpoint (it is replaced at the first save)
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
    from tqdm import tqdm

    if config.refresh_every < 0 or config.k < 1 or config.batch_size < 1 or config.rehearse_per_step < 0:
        raise RagError("refresh_every and rehearse_per_step must be >= 0, k and batch_size >= 1")
    out = Path(config.out).resolve()  # "." has no name to put ".partial" after
    recover_folder(out, CHECKPOINT_KIND)
    check_replaceable(out, CHECKPOINT_KIND, "Choose another --out.")
    folder = open_index(config.index)
    examples = _training_examples(config, examples)
    rehearsal = _rehearsal_examples(config)
    state = _resumable(out, config)
    if state and state.index_encoder != folder.manifest.encoder and not config.refresh_every:
        raise RagError(f"{out} was trained against an index built with {state.index_encoder!r}, {config.index} uses {folder.manifest.encoder!r}")
    torch.manual_seed(config.seed)
    reader, query_encoder, passage_encoder, vectors = _trainees(config, folder, out if state else None)
    from rag.index import DenseIndex

    dense = DenseIndex.build(vectors)
    optimizer, params, step = _optimizer(config, reader, query_encoder, passage_encoder, out if state else None)

    order = _question_order(len(examples), config.epochs, config.seed)
    batches = [order[i : i + config.batch_size] for i in range(0, len(order), config.batch_size)]
    reader.model.train()
    query_encoder.model.train(config.train_query_encoder)
    used_total, losses = 0, []
    log_lines = (out / LOG_FILE).read_text().splitlines() if state and (out / LOG_FILE).exists() else []
    bar = tqdm(total=len(batches), initial=step, desc="joint training", unit=" steps", disable=not progress, file=sys.stderr)
    dtype = autocast_dtype("auto", reader.device)  # bf16 where the CPU/GPU runs it fast: ~2x the examples/s of fp32
    try:
        for batch in batches[step:]:
            questions = [examples[i] for i in batch]
            with torch.set_grad_enabled(config.train_query_encoder):
                q = query_encoder.embed([e.question for e in questions])
            rows = dense.search(q.detach().float().cpu().numpy(), config.k).rows
            batch_lls = _log_likelihoods(questions, q, rows, folder, vectors, passage_encoder, reader, dtype)
            rehearsed = _rehearsal_log_likelihoods(rehearsal, step, config.rehearse_per_step, reader, dtype)
            step += 1
            used_total += len(batch_lls)
            signal = [lls for lls in (batch_lls, rehearsed) if lls]  # each part's mean, so neither drowns the other
            if signal:
                loss = -sum(torch.stack(lls).mean() for lls in signal)
                optimizer_step(optimizer, loss, [p for g in params for p in g["params"]])
                losses.append(float(loss.detach()))
                bar.set_postfix(loss=f"{np.mean(losses[-50:]):.3f}", used=used_total)
            log_lines.append(json.dumps({"step": step, "loss": losses[-1] if signal else None, "used": len(batch_lls), "questions": len(batch)}))
            bar.update(1)
            if config.refresh_every and step % config.refresh_every == 0 and step < len(batches):
                vectors = _encode_all(folder, passage_encoder, progress)
                dense = DenseIndex.build(vectors)
            if step % config.save_every == 0 or step == len(batches):
                _save(out, config, folder, reader, query_encoder, passage_encoder, optimizer, step, log_lines, progress)
    finally:
        bar.close()
    return TrainReport(step, len(order), used_total, float(np.mean(losses)) if losses else float("nan"), str(out))


def _trainees(config: TrainConfig, folder: IndexFolder, saved: Path | None):
    """(reader, query tower, passage tower or None, passage vectors): from the checkpoint `saved` when resuming."""
    reader = _load_trainable_reader(config, saved / "reader" if saved else None)
    query_encoder = _load_tower(saved / "query_encoder" if saved else None, folder.manifest.encoder, config.device)
    passage_encoder = _load_tower(saved / "passage_encoder" if saved else None, passage_side(folder.manifest.encoder), config.device) if config.refresh_every else None
    vectors = passage_vectors(open_index(saved / "index") if saved and config.refresh_every else folder)
    return reader, query_encoder, passage_encoder, vectors


def _training_examples(config: TrainConfig, examples: list[QAExample] | None) -> list[QAExample]:
    if examples is None:
        from rag.qa_data import load_qa

        examples = _interleave([load_qa(path.strip()) for path in config.questions.split(",") if path.strip()])
    examples = list(examples)[: config.max_questions or None]
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


def _rehearsal_log_likelihoods(rehearsal: list[tuple[str, Passage, str]], step: int, per_step: int, reader, dtype) -> list:
    """log p(answer | question, its gold paragraph) of this step's rehearsal examples (a function of
    the step, so that a resumed run rehearses what an uninterrupted one would)."""
    import torch

    found = []
    for j in range(per_step if rehearsal else 0):
        question, passage, answer = rehearsal[(step * per_step + j) % len(rehearsal)]
        with autocast(reader.device, dtype):  # one passage: p(z|q) = 1 whatever its score
            ll = reader.answer_log_likelihood(question, [passage], torch.zeros(1, device=reader.device), (answer,))
        if ll is not None and torch.isfinite(ll):
            found.append(ll)
    return found


def _optimizer(config: TrainConfig, reader, query_encoder: QueryTower, passage_encoder: QueryTower | None, resume: Path | None):
    """(AdamW over what is trained, its parameter groups, the step to continue from)."""
    import torch

    params = [{"params": [p for p in reader.model.parameters() if p.requires_grad], "lr": config.reader_lr}]
    if config.train_query_encoder:
        params.append({"params": list(query_encoder.model.parameters()), "lr": config.query_lr})
    if passage_encoder is not None:
        params.append({"params": list(passage_encoder.model.parameters()), "lr": config.query_lr})
    optimizer = adamw(params, weight_decay=0.0)
    if resume is None:
        return optimizer, params, 0
    saved = torch.load(resume / STATE_FILE, map_location="cpu", weights_only=True)
    optimizer.load_state_dict(saved["optimizer"])
    return optimizer, params, saved["step"]


def _log_likelihoods(questions: list[QAExample], q, rows: np.ndarray, folder: IndexFolder, vectors: np.ndarray, passage_encoder: QueryTower | None, reader, dtype) -> list:
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
        with autocast(reader.device, dtype):
            ll = reader.answer_log_likelihood(example.question, passages, (d @ q[b]).float(), example.answers)
        if ll is not None and torch.isfinite(ll):
            found.append(ll)
    return found


# --- helpers ---------------------------------------------------------------------------------


def _resumable(out: Path, config: TrainConfig) -> CheckpointRecord | None:
    """The checkpoint in `out` to resume, refused when it was trained with other settings."""
    if config.fresh or not is_checkpoint(out):
        return None
    state = CheckpointRecord.read(out)
    saved = state.config
    changed = [k for k, v in asdict(config).items() if k not in RUN_SETTINGS_FREE and k in saved and saved[k] != v]
    if changed:
        listed = ", ".join(f"{k}: {saved[k]!r} then, {getattr(config, k)!r} now" for k in changed)
        raise RagError(f"{out} was trained with other settings ({listed}): use the same ones to resume, "
                       "--fresh to start over (the checkpoint is replaced at the first save), or another --out")
    return state


def _load_trainable_reader(config: TrainConfig, saved: Path | None) -> TrainableReader:
    if config.reader in ("rag-sequence", "rag-token"):
        from rag.generate import GENERATOR_FILE, GeneratorConfig, RagGenerator, load_generator

        spec = str(saved) if saved else (config.generator or GeneratorConfig().model)
        variant = config.reader.removeprefix("rag-")
        if (Path(spec) / GENERATOR_FILE).exists():  # a generator folder keeps its settings (copy_only, score_scale), in training and in what is saved
            return load_generator(spec, device=config.device, variant=variant)
        return RagGenerator(GeneratorConfig(model=spec, variant=variant, device=config.device))
    from rag.read import ReaderConfig, SpanReader

    # fp32 weights: autocast runs the forward pass in bf16 where that is fast, the optimizer updates fp32
    return SpanReader(ReaderConfig(model=str(saved) if saved else config.reader, device=config.device, max_length=config.max_length, precision="fp32"))


def _load_tower(saved: Path | None, spec: str, device: str | None) -> QueryTower:
    """A trainable tower: the saved one when resuming, else `spec`'s (a two-tower encoder's query side)."""
    spec = str(saved) if saved else spec
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


def _question_order(n: int, epochs: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    order = []
    for _ in range(epochs):
        epoch = list(range(n))
        rng.shuffle(epoch)
        order += epoch
    return order


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


def _save(out: Path, config: TrainConfig, folder: IndexFolder, reader, query_encoder: QueryTower, passage_encoder: QueryTower | None, optimizer, step: int, log_lines: list[str], progress: bool) -> None:
    """Write a complete checkpoint into out.partial/, then swap it in: a crash never leaves half a checkpoint."""
    import torch

    partial = fresh_scratch(out.with_name(out.name + ".partial"), CHECKPOINT_KIND)
    reader.save(partial / "reader")
    query_encoder.model.save(str(partial / "query_encoder"))
    index_encoder = folder.manifest.encoder
    if passage_encoder is not None:  # the saved index must hold the passage tower's current vectors
        passage_encoder.model.save(str(partial / "passage_encoder"))
        index_encoder = str((out / "passage_encoder").resolve())
        write_refreshed_index(partial / "index", folder, _encode_all(folder, passage_encoder, progress), index_encoder)
    torch.save({"optimizer": optimizer.state_dict(), "step": step}, partial / STATE_FILE)
    (partial / LOG_FILE).write_text("".join(line + "\n" for line in log_lines))
    CheckpointRecord(step, CheckpointRecord.relative(config.index, out), index_encoder, asdict(config)).write(partial)
    publish_folder(partial, out, CHECKPOINT_KIND)
    if progress:
        print(f"saved checkpoint {out} at step {step}", file=sys.stderr)
