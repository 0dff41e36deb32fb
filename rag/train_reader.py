"""Supervised reading comprehension for the span reader: BERT's SQuAD recipe, on CPU or GPU.

Each SQuAD question is read as `[CLS] question [SEP] title [SEP] paragraph`, exactly what
`rag.read.SpanReader` reads at answer time. A paragraph longer than the window is cut into
overlapping windows (`max_length` tokens, `doc_stride` tokens of overlap), so no answer is lost to
truncation. A window holding the whole answer teaches the span head (cross-entropy on the
answer's start and end tokens) and is a positive for the passage-selection head; a window without
it is a negative for the selection head only (DPR's reader: reject passages with no answer).

Training is resumable: `out/` holds `reader/` (a complete span-reader folder, fp16 weights, what
ships) and `training_state.pt` (fp32 weights, optimizer, step; what resumes). Both are written by
swapping in a finished folder. bf16 autocast is used on CPUs that support it (`avx512_bf16`, AMX),
which trains ~2.3x faster than fp32 here.
"""
from __future__ import annotations

import gzip
import json
import random
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from rag.types import RagError

STATE_FILE, RUN_FILE, RUN_FORMAT = "training_state.pt", "run.json", "rag-reader-training v1"


@dataclass(frozen=True)
class SquadQuestion:
    question: str
    title: str
    context: str
    answer_start: int  # character offset of the (first) answer in context
    answer_text: str
    answers: tuple[str, ...] = ()  # every annotator's answer (SQuAD dev has up to 3), for EM/F1


@dataclass(frozen=True)
class ReaderTrainConfig:
    squad: str  # SQuAD v1.1 JSON (or .json.gz) with answer offsets
    out: str  # checkpoint folder; rerunning resumes it
    start_from: str = "default"  # "default" (MiniLM + new heads) or a span-reader folder
    max_length: int = 256  # tokens per window
    doc_stride: int = 128  # tokens of overlap between windows of one paragraph
    batch_size: int = 32
    lr: float = 1e-4  # MiniLM-size models fine-tune best at ~1e-4 (BERT-base uses 3e-5)
    warmup: float = 0.1  # fraction of steps with a linearly rising learning rate
    epochs: float = 1.0  # fractions allowed: 0.5 trains on half the shuffled windows
    max_steps: int = 0  # >0: stop after this many optimizer steps (for smoke runs)
    limit: int = 0  # >0: the first N questions only
    seed: int = 0
    save_every: int = 500  # optimizer steps between checkpoints (and one at the end)
    precision: str = "auto"  # auto | bf16 | fp32: autocast dtype for the forward pass
    device: str | None = None


@dataclass(frozen=True)
class ReaderTrainReport:
    steps: int
    windows: int
    mean_loss: float  # over the last 200 steps
    seconds: float
    reader: str  # the saved span-reader folder


def load_squad(path: str | Path, limit: int = 0) -> list[SquadQuestion]:
    """SQuAD v1.1 questions with their paragraph and first answer; errors name the record."""
    path = Path(path)
    if not path.exists():
        raise RagError(f"{path}: no such SQuAD file")
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError, OSError, EOFError) as e:
        raise RagError(f"{path}: not a readable SQuAD JSON file ({e})") from e
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise RagError(f"{path}: SQuAD JSON has a top-level 'data' list of articles")
    out = []
    for a, article in enumerate(data["data"]):
        title = str(article.get("title", "")).replace("_", " ")
        for p, paragraph in enumerate(article.get("paragraphs", [])):
            context = paragraph.get("context")
            for q, qa in enumerate(paragraph.get("qas", [])):
                where = f"{path}: data[{a}].paragraphs[{p}].qas[{q}]"
                answers = qa.get("answers") or []
                if not isinstance(context, str) or not isinstance(qa.get("question"), str) or not answers:
                    raise RagError(f"{where}: expected a context, a question and at least one answer")
                first = answers[0]
                start, text = first.get("answer_start"), first.get("text")
                if not isinstance(start, int) or not isinstance(text, str) or context[start : start + len(text)] != text:
                    raise RagError(f"{where}: answer {text!r} is not at answer_start {start!r} of the context")
                every = tuple(dict.fromkeys(a.get("text") for a in answers if isinstance(a, dict) and isinstance(a.get("text"), str)))
                out.append(SquadQuestion(qa["question"].strip(), title, context, start, text, every))
                if limit and len(out) >= limit:
                    return out
    if not out:
        raise RagError(f"{path}: no questions")
    return out


def squad_windows(questions: list[SquadQuestion], tokenizer, max_length: int, doc_stride: int, question_tokens: int) -> list[dict]:
    """Tokenized training windows: input ids, token types, answer start/end token (or -1), context mask.

    The second segment is `title [SEP] context`, as rag.read.SpanReader builds it.
    """
    from rag.read import TITLE_SEPARATOR, cut_question

    windows = []
    for i in range(0, len(questions), 1000):
        chunk = questions[i : i + 1000]
        prefixes = [f"{q.title}{TITLE_SEPARATOR}" if q.title else "" for q in chunk]
        enc = tokenizer(
            [cut_question(tokenizer, q.question, question_tokens) for q in chunk], [p + q.context for p, q in zip(prefixes, chunk)],
            truncation="only_second", max_length=max_length, stride=doc_stride, return_overflowing_tokens=True, return_offsets_mapping=True,
        )
        for w, source in enumerate(enc["overflow_to_sample_mapping"]):
            q, prefix = chunk[source], len(prefixes[source])
            seq = enc.sequence_ids(w)
            offsets = enc["offset_mapping"][w]
            context = [s == 1 and offsets[t][0] >= prefix and offsets[t][1] > offsets[t][0] for t, s in enumerate(seq)]
            a_start, a_end = prefix + q.answer_start, prefix + q.answer_start + len(q.answer_text)
            start = next((t for t, c in enumerate(context) if c and offsets[t][0] <= a_start < offsets[t][1]), -1)
            end = next((t for t in range(len(seq) - 1, -1, -1) if context[t] and offsets[t][0] < a_end <= offsets[t][1]), -1)
            if start < 0 or end < start:
                start = end = -1  # the answer is not (wholly) inside this window
            windows.append({"input_ids": enc["input_ids"][w], "token_type_ids": enc["token_type_ids"][w], "context": context, "start": start, "end": end})
    return windows


def length_grouped_batches(lengths: list[int], batch_size: int, rng: random.Random) -> list[list[int]]:
    """Shuffled batches of windows of similar length (little padding), in random order."""
    order = list(range(len(lengths)))
    rng.shuffle(order)
    pool = batch_size * 50
    batches = []
    for i in range(0, len(order), pool):
        group = sorted(order[i : i + pool], key=lambda j: lengths[j])
        batches += [group[b : b + batch_size] for b in range(0, len(group), batch_size)]
    rng.shuffle(batches)
    return batches


def train_reader(config: ReaderTrainConfig, progress: bool = True) -> ReaderTrainReport:
    """Train (or resume) the span reader on SQuAD; returns where the reader was saved."""
    import torch

    from rag.precision import autocast_dtype
    from rag.read import ReaderConfig, SpanReader

    # windows overlap by doc_stride tokens; the question takes at most a quarter of the window
    if config.max_length < 64 or not 0 < config.doc_stride <= config.max_length // 2 or config.batch_size < 1 or config.epochs <= 0:
        raise RagError("need max_length >= 64, 0 < doc_stride <= max_length/2, batch_size >= 1, epochs > 0")
    out = Path(config.out)
    saved = _read_run(out, config)
    torch.manual_seed(config.seed)  # the new heads' initialization; batch order has its own random.Random(seed)
    reader = SpanReader(ReaderConfig(model=config.start_from, device=config.device, max_length=config.max_length, precision="fp32"))
    windows = squad_windows(load_squad(config.squad, config.limit), reader.tokenizer, config.max_length, config.doc_stride, config.max_length // 4)
    batches = epoch_batches([len(w["input_ids"]) for w in windows], config.batch_size, config.epochs, config.seed)
    total = min(len(batches), config.max_steps) if config.max_steps else len(batches)

    model = reader.model
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=0.01)
    warmup = max(1, int(config.warmup * total))
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min((s + 1) / warmup, max(0.0, (total - s) / max(1, total - warmup))))
    step, losses, elapsed = 0, [], 0.0
    if saved is not None:
        state = torch.load(out / STATE_FILE, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        step, losses, elapsed = state["step"], state["losses"], state["seconds"]
        _log(f"resuming {out} at step {step} of {total}", progress)
    dtype = autocast_dtype(config.precision, reader.device)
    _log(f"{len(windows):,} windows from {config.squad}; {total:,} steps of {config.batch_size}; autocast {dtype or 'off (fp32)'}", progress)
    model.train()
    started = time.monotonic() - elapsed
    while step < total:
        batch = [windows[j] for j in batches[step]]
        features, starts, ends, positive, context = _collate(batch, reader.device)
        with torch.autocast(device_type=reader.device.split(":")[0], dtype=dtype or torch.float32, enabled=dtype is not None):
            start_logits, end_logits, select = model(features)
        loss = reading_loss(start_logits.float(), end_logits.float(), select.float(), starts, ends, positive, context)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        step += 1
        losses.append(float(loss.detach()))
        if progress and (step % 20 == 0 or step == total):
            spent = time.monotonic() - started
            rate = step * config.batch_size / spent
            eta = (total - step) * config.batch_size / rate
            _log(f"step {step}/{total}  loss {np.mean(losses[-200:]):.3f}  {rate:.1f} windows/s  elapsed {spent / 60:.1f} min  ETA {eta / 60:.1f} min", True)
        if step % config.save_every == 0 or step == total:
            _save(out, config, reader, optimizer, schedule, step, total, losses, time.monotonic() - started)
            _log(f"saved {out} at step {step}", progress)
    return ReaderTrainReport(step, len(windows), float(np.mean(losses[-200:])) if losses else float("nan"), time.monotonic() - started, str(out / "reader"))


def epoch_batches(lengths: list[int], batch_size: int, epochs: float, seed: int) -> list[list[int]]:
    """Length-grouped batches for `epochs` passes: whole epochs, then the first part of one more."""
    rng = random.Random(seed)
    full, part = divmod(epochs, 1.0)
    batches = []
    for _ in range(int(full)):
        batches += length_grouped_batches(lengths, batch_size, rng)
    extra = length_grouped_batches(lengths, batch_size, rng)
    return batches + extra[: int(len(extra) * part)] or extra[:1]


def reading_loss(start_logits, end_logits, select, starts, ends, positive, context):
    """Span cross-entropy (start and end, context tokens only) on windows with the answer, plus
    binary cross-entropy of the selection head on every window (answer in it or not)."""
    import torch
    import torch.nn.functional as F

    select_loss = F.binary_cross_entropy_with_logits(select, positive.float())
    if not positive.any():
        return select_loss
    masked = lambda logits: logits[positive].masked_fill(~context[positive], -1e4)  # noqa: E731
    span_loss = (F.cross_entropy(masked(start_logits), starts[positive]) + F.cross_entropy(masked(end_logits), ends[positive])) / 2
    return span_loss + select_loss


def _collate(batch: list[dict], device: str):
    import torch

    length = max(len(w["input_ids"]) for w in batch)
    pad = lambda key, value: torch.tensor([w[key] + [value] * (length - len(w[key])) for w in batch], device=device)  # noqa: E731
    ids, types, context = pad("input_ids", 0), pad("token_type_ids", 0), pad("context", False)
    mask = torch.tensor([[1] * len(w["input_ids"]) + [0] * (length - len(w["input_ids"])) for w in batch], device=device)
    starts = torch.tensor([max(w["start"], 0) for w in batch], device=device)
    ends = torch.tensor([max(w["end"], 0) for w in batch], device=device)
    positive = torch.tensor([w["start"] >= 0 for w in batch], device=device)
    return {"input_ids": ids, "token_type_ids": types, "attention_mask": mask}, starts, ends, positive, context


def _read_run(out: Path, config: ReaderTrainConfig) -> dict | None:
    """The run record of a checkpoint to resume, refused when it was trained with other settings."""
    if not (out / RUN_FILE).exists():
        if out.exists() and any(out.iterdir()):
            raise RagError(f"{out} exists and is not a reader-training checkpoint: choose another --out (nothing was changed)")
        return None
    from rag.build import read_versioned_json

    run = read_versioned_json(out / RUN_FILE, RUN_FORMAT)
    changed = [k for k, v in asdict(config).items() if k not in ("out", "save_every", "device") and run["config"].get(k) != v]
    if changed:
        raise RagError(f"{out} was trained with other settings ({', '.join(changed)}): use the same ones to resume, or another --out")
    return run


def _save(out: Path, config: ReaderTrainConfig, reader, optimizer, schedule, step: int, total: int, losses: list[float], seconds: float) -> None:
    """A complete checkpoint written beside `out`, then swapped in: a kill never loses the last one."""
    import torch

    from rag.build import publish_folder

    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    reader.save(partial / "reader", half=True)
    torch.save({"model": reader.model.state_dict(), "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
                "step": step, "losses": losses, "seconds": seconds}, partial / STATE_FILE)
    (partial / RUN_FILE).write_text(json.dumps({"format": RUN_FORMAT, "config": asdict(config), "step": step, "total_steps": total,
                                                "seconds": round(seconds, 1), "loss_last_200": float(np.mean(losses[-200:]))}, indent=2))
    publish_folder(partial, out)


def _log(message: str, enabled: bool) -> None:
    if enabled:
        print(message, file=sys.stderr, flush=True)


def export_reader(source: str | Path, out: str | Path) -> Path:
    """A span reader (a reader folder, or a `rag train` / `rag train reader` checkpoint) as fp16 weights only: what ships.

    `out` must not exist yet, or be a reader folder this function wrote (it is then replaced).
    """
    from rag.build import publish_folder
    from rag.read import READER_FILE, ReaderConfig, SpanReader

    source, out = Path(source), Path(out)
    if not (source / READER_FILE).exists() and (source / "reader" / READER_FILE).exists():  # a training checkpoint
        source = source / "reader"
    if not (source / READER_FILE).exists():
        raise RagError(f"{source} is not a span-reader folder (no {READER_FILE})")
    if out.exists() and not (out / READER_FILE).exists():
        raise RagError(f"{out} exists and is not a span-reader folder: choose another output (nothing was changed)")
    reader = SpanReader(ReaderConfig(model=str(source), device="cpu", precision="fp32"))
    partial = out.with_name(out.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    reader.save(partial, half=True)
    if (out / "README.md").exists():  # the model card stays with the weights it describes
        shutil.copy2(out / "README.md", partial / "README.md")
    publish_folder(partial, out)
    return out
