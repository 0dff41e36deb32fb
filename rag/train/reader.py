"""Supervised reading comprehension for the span reader: BERT's SQuAD recipe, on CPU or GPU.

Each SQuAD question is read as `[CLS] question [SEP] title [SEP] paragraph`, exactly what
`rag.read.SpanReader` reads at answer time. A paragraph longer than the window is cut into
overlapping windows (`max_length` tokens, `doc_stride` tokens of overlap), so no answer is lost to
truncation. A window holding the whole answer teaches the span head (cross-entropy on the
answer's start and end tokens) and is a positive for the passage-selection head; a window without
it is a negative for the selection head only (DPR's reader: reject passages with no answer).

With `questions` and `index`, open-domain questions join SQuAD (DPR's reader data): each is read
over the index's dense top-k, every passage holding an answer string teaches the span head and the
best-ranked one without teaches the selection head. SQuAD almost never asks for its article's own
subject, and a reader trained on it alone learned to avoid answers equal to the passage's title
("who invented the telephone" -> "scientist, and engineer" from the Alexander Graham Bell passage);
open-domain questions ask for exactly that all the time.

Training is resumable: `out/` holds `reader/` (a complete span-reader folder, fp16 weights, what
ships) and `training_state.pt` (fp32 weights, optimizer, step; what resumes). Both are written by
swapping in a finished folder. bf16 autocast is used on CPUs that support it (`avx512_bf16`, AMX),
which trains ~2.3x faster than fp32 here.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rag.console import log
from rag.qa_data import SquadQuestion, load_squad
from rag.train.loop import TrainSettings, check_out, epoch_batches, fit, run_kind
from rag.types import RagError

READER_RUN_KIND = run_kind("reader")


@dataclass(frozen=True, kw_only=True)
class ReaderTrainConfig(TrainSettings):
    """TrainSettings (out, batch_size, lr 1e-4: MiniLM-size models fine-tune best at ~1e-4, BERT-base uses 3e-5 ...) and:"""

    squad: str  # SQuAD v1.1 JSON (or .json.gz) with answer offsets
    start_from: str = "default"  # "default" (MiniLM + new heads) or a span-reader folder
    max_length: int = 256  # tokens per window
    doc_stride: int = 128  # tokens of overlap between windows of one paragraph
    # Open-domain questions (comma-separated QA files, any rag.qa_data format) read over `index`: only
    # `rag train retriever`'s training split of them (its held-out share, eval/tune_reader.py's, is never read).
    questions: str = ""
    index: str = ""  # comma-separated index folders: each question is read over each (the small corpus and a Wikipedia slice)
    k: int = 5  # passages retrieved per open-domain question
    questions_repeat: int = 1  # each open-domain window this many times per epoch: they are ~7x fewer than SQuAD's
    # `rag train retriever`'s holdout and seed defaults, so that the same questions stay aside for every trainer
    questions_holdout: float = 0.05
    questions_seed: int = 0


@dataclass(frozen=True)
class ReaderTrainReport:
    steps: int
    windows: int
    mean_loss: float  # over the last 200 steps
    seconds: float
    reader: str  # the saved span-reader folder


def squad_windows(questions: list[SquadQuestion], tokenizer, max_length: int, doc_stride: int, question_tokens: int) -> list[dict]:
    """Tokenized training windows: input ids, token types, answer start/end token (or -1), context mask.

    The second segment is `title [SEP] context`, as rag.read.SpanReader builds it.
    """
    from rag.fast_tokenizer import cut_to_tokens
    from rag.types import title_prefix

    windows = []
    for i in range(0, len(questions), 1000):
        chunk = questions[i : i + 1000]
        prefixes = [title_prefix(q.title) for q in chunk]
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
            if start < 0 or end < start or not q.answer_text:
                start = end = -1  # the answer is not (wholly) inside this window, or there is none
            windows.append({"input_ids": enc["input_ids"][w], "token_type_ids": enc["token_type_ids"][w], "context": context, "start": start, "end": end})
    return windows


def retrieved_questions(config: ReaderTrainConfig, progress: bool = True) -> list[SquadQuestion]:
    """Open-domain training questions as SQuAD-shaped examples over their dense top-k passages: one per
    passage that holds an answer (at its first whole-word occurrence), and one with no answer
    (answer_text "") for each question's best-ranked passage without one."""
    from rag.qa_data import holdout_split, load_qa

    if not config.index or config.k < 1 or config.questions_repeat < 1:
        raise RagError("open-domain questions need an index to read them over, k >= 1 and questions_repeat >= 1")
    examples = [ex for path in config.questions.split(",") if path for ex in load_qa(path)]
    _, training = holdout_split(examples, config.questions_holdout, config.questions_seed)
    return [q for index in config.index.split(",") if index for q in _read_over(index, training, config, progress)] * config.questions_repeat


def _read_over(index: str, training: list, config: ReaderTrainConfig, progress: bool) -> list[SquadQuestion]:
    """One index's share of retrieved_questions: each training question's span positives and its selection negative."""
    from rag.retrieve import load_retriever

    retriever, found, positives = load_retriever(index, "dense"), [], 0
    for start in range(0, len(training), 512):
        batch = training[start : start + 512]
        for example, hits in zip(batch, retriever.retrieve([ex.question for ex in batch], config.k)):
            read, negative = [], None
            for hit in hits:
                where = first_answer(hit.passage.text, example.answers)
                if where is not None:
                    read.append(SquadQuestion(example.question, hit.passage.title, hit.passage.text, where[0], hit.passage.text[where[0] : where[1]]))
                elif negative is None:
                    negative = SquadQuestion(example.question, hit.passage.title, hit.passage.text, -1, "")
            if read:  # a question none of whose passages answers teaches nothing a negative elsewhere does not
                positives += len(read)
                found += read + ([negative] if negative is not None else [])
    log(f"{len(training):,} open-domain questions over {index} (top {config.k}): {positives:,} answer-bearing passages, "
        f"{len(found) - positives:,} without, each read {config.questions_repeat}x per epoch", progress)
    return found


def first_answer(text: str, answers: tuple[str, ...]) -> tuple[int, int] | None:
    """(start, end) characters of the earliest whole-word, any-case occurrence of an answer in `text`."""
    import re

    spans = [m.span() for a in answers if a.strip() for m in [re.search(rf"(?<!\w){re.escape(a.strip())}(?!\w)", text, flags=re.IGNORECASE)] if m]
    return min(spans) if spans else None


def train_reader(config: ReaderTrainConfig, progress: bool = True) -> ReaderTrainReport:
    """Train (or resume) the span reader on SQuAD; returns where the reader was saved."""
    import torch

    from rag.read import ReaderConfig, SpanReader

    # windows overlap by doc_stride tokens; the question takes at most a quarter of the window
    if config.max_length < 64 or not 0 < config.doc_stride <= config.max_length // 2 or config.batch_size < 1 or config.epochs <= 0:
        raise RagError("need max_length >= 64, 0 < doc_stride <= max_length/2, batch_size >= 1, epochs > 0")
    check_out(config, READER_RUN_KIND)  # before minutes of tokenizing
    torch.manual_seed(config.seed)  # the new heads' initialization; batch order has its own random.Random(seed)
    reader = SpanReader(ReaderConfig(model=config.start_from, device=config.device, max_length=config.max_length, precision="fp32"))
    examples = load_squad(config.squad, config.limit)
    if config.questions:
        examples += retrieved_questions(config, progress)
    windows = squad_windows(examples, reader.tokenizer, config.max_length, config.doc_stride, config.max_length // 4)
    batches = epoch_batches([len(w["input_ids"]) for w in windows], config.batch_size, config.epochs, config.seed)
    log(f"{len(windows):,} windows from {config.squad}" + (" and the open-domain questions" if config.questions else ""), progress)
    report = fit(_SpanTrainee(reader, windows), batches, config, READER_RUN_KIND, "reader", progress)
    return ReaderTrainReport(report.steps, len(windows), report.mean_loss, report.seconds, str(Path(config.out).resolve() / "reader"))


class _SpanTrainee:
    """The span reader as rag.train.loop.fit trains it: span + selection loss on SQuAD windows."""

    def __init__(self, reader, windows: list[dict]):
        self.reader, self.windows = reader, windows
        self.model, self.device = reader.model, reader.device

    def loss(self, batch: list[int]):
        features, starts, ends, positive, context = _collate([self.windows[j] for j in batch], self.device)
        start_logits, end_logits, select = self.model(features)
        return reading_loss(start_logits.float(), end_logits.float(), select.float(), starts, ends, positive, context)

    def save(self, folder: Path) -> None:
        self.reader.save(folder, half=True)


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
