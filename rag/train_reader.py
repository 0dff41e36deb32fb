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
from dataclasses import dataclass
from pathlib import Path

from rag.console import log
from rag.files import ArtifactKind, check_replaceable, fresh_scratch, publish_folder
from rag.supervised import RUN_FILE, fit
from rag.types import RagError

READER_RUN_KIND = ArtifactKind("a reader-training checkpoint", RUN_FILE, "rag-reader-training v1")


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
    max_minutes: float = 0  # >0: save and stop after this long (a rerun continues)
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
    from rag.fast_tokenizer import cut_to_tokens
    from rag.read import TITLE_SEPARATOR

    windows = []
    for i in range(0, len(questions), 1000):
        chunk = questions[i : i + 1000]
        prefixes = [f"{q.title}{TITLE_SEPARATOR}" if q.title else "" for q in chunk]
        enc = tokenizer(
            [cut_to_tokens(tokenizer, q.question, question_tokens) for q in chunk], [p + q.context for p, q in zip(prefixes, chunk)],
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

    from rag.read import ReaderConfig, SpanReader

    # windows overlap by doc_stride tokens; the question takes at most a quarter of the window
    if config.max_length < 64 or not 0 < config.doc_stride <= config.max_length // 2 or config.batch_size < 1 or config.epochs <= 0:
        raise RagError("need max_length >= 64, 0 < doc_stride <= max_length/2, batch_size >= 1, epochs > 0")
    check_replaceable(Path(config.out).resolve(), READER_RUN_KIND, "Choose another --out.")  # before minutes of tokenizing
    torch.manual_seed(config.seed)  # the new heads' initialization; batch order has its own random.Random(seed)
    reader = SpanReader(ReaderConfig(model=config.start_from, device=config.device, max_length=config.max_length, precision="fp32"))
    windows = squad_windows(load_squad(config.squad, config.limit), reader.tokenizer, config.max_length, config.doc_stride, config.max_length // 4)
    batches = epoch_batches([len(w["input_ids"]) for w in windows], config.batch_size, config.epochs, config.seed)
    log(f"{len(windows):,} windows from {config.squad}", progress)
    report = fit(_SpanTrainee(reader, windows), batches, config, READER_RUN_KIND, "reader", progress)
    return ReaderTrainReport(report.steps, len(windows), report.mean_loss, report.seconds, str(Path(config.out).resolve() / "reader"))


class _SpanTrainee:
    """The span reader as rag.supervised.fit trains it: span + selection loss on SQuAD windows."""

    def __init__(self, reader, windows: list[dict]):
        self.reader, self.windows = reader, windows
        self.model, self.device = reader.model, reader.device

    def loss(self, batch: list[int]):
        features, starts, ends, positive, context = _collate([self.windows[j] for j in batch], self.device)
        start_logits, end_logits, select = self.model(features)
        return reading_loss(start_logits.float(), end_logits.float(), select.float(), starts, ends, positive, context)

    def save(self, folder: Path) -> None:
        self.reader.save(folder, half=True)


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


def export_reader(source: str | Path, out: str | Path) -> Path:
    """A span reader or a RAG generator (its folder, or a `rag train` / `rag train reader` checkpoint) as fp16
    weights only: what ships in models/. Its type header says which it is; rag.pipeline.load_reader loads it.

    `out` must not exist yet, or be a folder of the same kind this function wrote (it is then replaced).
    """
    from rag.generate import GENERATOR_FILE, GENERATOR_KIND
    from rag.pipeline import ReaderOptions, load_reader
    from rag.read import READER_FILE, SPAN_READER_KIND

    kinds = {READER_FILE: SPAN_READER_KIND, GENERATOR_FILE: GENERATOR_KIND}  # type header -> what `out` may replace
    out = Path(out).resolve()
    for folder in (Path(source), Path(source) / "reader"):  # the folder itself, or the one a training checkpoint holds
        header = next((h for h in kinds if (folder / h).exists()), None)
        if header is not None:
            break
    else:
        raise RagError(f"{source} is not a span-reader or generator folder (no {' or '.join(kinds)})")
    check_replaceable(out, kinds[header], "Choose another output.")
    model = load_reader(str(folder), ReaderOptions(device="cpu", precision="fp32"))  # fp32 weights, halved on saving
    partial = fresh_scratch(out.with_name(out.name + ".partial"), kinds[header])
    model.save(partial, half=True)
    if (out / "README.md").exists():  # the model card stays with the weights it describes
        shutil.copy2(out / "README.md", partial / "README.md")
    publish_folder(partial, out, kinds[header])
    return out
