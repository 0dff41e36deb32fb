"""Open-domain QA evaluation, as in DPR's Table 2: retrievers side by side, then EM/F1 of a pipeline.

evaluate_retrieval  top-k retrieval accuracy (DPR's has_answer rule) and questions/s per retriever
evaluate_qa         exact match and F1 of a Pipeline's answers, beside the top-k accuracy of its hits

Questions go through in batches (one retrieve call per batch, never one per question); only the
rank of the first answer-bearing passage and the top passage ids are kept, not the passages.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable, Sequence

from rag.metrics import accuracy_at, answers_found, exact_match, f1, first_hit_rank
from rag.report import format_table, percent, plot_accuracy, write_json
from rag.retrieve import Retriever
from rag.types import Answer, Hit, QAExample, RagError

TOP_IDS_SAVED = 10  # passage ids per question and retriever kept in the JSON


def parse_ks(text: str) -> tuple[int, ...]:
    """'1,5,20,100' -> (1, 5, 20, 100)."""
    try:
        ks = sorted({int(k) for k in text.split(",") if k.strip()})
    except ValueError as e:
        raise RagError(f"--k takes comma-separated positive integers like 1,5,20,100, not {text!r}") from e
    if not ks or ks[0] < 1:
        raise RagError(f"--k takes comma-separated positive integers like 1,5,20,100, not {text!r}")
    return tuple(ks)


@dataclass(frozen=True)
class RetrieverRun:
    """One retriever over a question set: per question, where its first answer-bearing passage was."""

    name: str
    first_hits: tuple[int | None, ...]  # 1-based rank, None when not in the top max(ks)
    top_ids: tuple[tuple[str, ...], ...]  # the first TOP_IDS_SAVED passage ids
    seconds: float  # time spent inside retrieve()

    def accuracy(self, ks: Iterable[int]) -> dict[int, float]:
        return accuracy_at(self.first_hits, ks)

    @property
    def questions_per_second(self) -> float:
        return len(self.first_hits) / self.seconds if self.seconds > 0 else float("inf")


@dataclass(frozen=True)
class RetrievalReport:
    examples: tuple[QAExample, ...]
    ks: tuple[int, ...]
    runs: dict[str, RetrieverRun]
    mode: str = "string"
    configuration: dict = field(default_factory=dict)  # what was evaluated: index, encoder, retrievers, fusion, limit, date, version
    ceiling: float | None = None  # share of questions whose answer occurs anywhere in the corpus

    def accuracy(self) -> dict[str, dict[int, float]]:
        return {name: run.accuracy(self.ks) for name, run in self.runs.items()}

    def table(self) -> str:
        headers = ["retriever"] + [f"top-{k}" for k in self.ks] + ["questions/s"]
        rows = [[name] + [percent(a) for a in run.accuracy(self.ks).values()] + [f"{run.questions_per_second:.1f}"] for name, run in self.runs.items()]
        return f"top-k retrieval accuracy (%), {len(self.examples)} questions\n" + format_table(headers, rows)

    def to_json(self) -> dict:
        return {
            "configuration": self.configuration,
            "questions": len(self.examples),
            "ks": list(self.ks),
            "match": self.mode,
            "answer_ceiling": self.ceiling,
            "accuracy": {name: {str(k): a for k, a in acc.items()} for name, acc in self.accuracy().items()},
            "questions_per_second": {name: run.questions_per_second for name, run in self.runs.items()},
            "per_question": [
                {
                    "id": ex.id,
                    "question": ex.question,
                    "answers": list(ex.answers),
                    **{name: {"first_hit": run.first_hits[i], "top": list(run.top_ids[i])} for name, run in self.runs.items()},
                }
                for i, ex in enumerate(self.examples)
            ],
        }

    def write_json(self, path: str | Path) -> Path:
        return write_json(path, self.to_json())

    def write_plot(self, path: str | Path, title: str = "", levels: dict[str, float] | None = None) -> Path:
        levels = {**({f"answer in corpus {percent(self.ceiling)}": self.ceiling} if self.ceiling is not None else {}), **(levels or {})}
        return plot_accuracy(self.accuracy(), path, f"{title or 'top-k retrieval accuracy'}, n = {len(self.examples)} questions", levels)


def evaluate_retrieval(
    retrievers: dict[str, Retriever],
    examples: Sequence[QAExample],
    ks: Sequence[int],
    batch_size: int = 256,
    mode: str = "string",
    progress: bool = True,
) -> RetrievalReport:
    """Each retriever over every question, top max(ks) passages, scored by DPR's has_answer rule."""
    if not retrievers:
        raise RagError("no retrievers to evaluate")
    ks = tuple(sorted(set(ks)))
    runs = {}
    for name, retriever in retrievers.items():
        runs[name], _ = _run(name, retriever, examples, max(ks), batch_size, mode, progress)
    return RetrievalReport(tuple(examples), ks, runs, mode)


def _run(name: str, retriever: Retriever, examples: Sequence[QAExample], k: int, batch_size: int, mode: str, progress: bool, fetch=None):
    """Retrieve for all questions in batches; `fetch(questions, k)`, when given, returns each batch's (hits, answers) instead."""
    from tqdm import tqdm

    first_hits: list[int | None] = []
    top_ids: list[tuple[str, ...]] = []
    answers: list[Answer] = []
    seconds = 0.0
    with tqdm(total=len(examples), desc=f"{name}: questions", unit=" q", disable=not progress, file=sys.stderr) as bar:
        for start in range(0, len(examples), batch_size):
            batch = list(examples[start : start + batch_size])
            t0 = time.perf_counter()
            hits, read = fetch([ex.question for ex in batch], k) if fetch else (retriever.retrieve([ex.question for ex in batch], k), [])
            seconds += time.perf_counter() - t0
            if len(hits) != len(batch):
                raise RagError(f"retriever {name!r} returned {len(hits)} hit lists for {len(batch)} questions")
            first_hits += [first_hit_rank(h, ex.answers, mode) for h, ex in zip(hits, batch)]
            top_ids += [tuple(hit.passage.id for hit in h[:TOP_IDS_SAVED]) for h in hits]
            answers += read
            bar.update(len(batch))
    return RetrieverRun(name, tuple(first_hits), tuple(top_ids), seconds), answers


# --- QA: a pipeline's answers -------------------------------------------------------------


class _MeanScores:
    """exact_match and mean_f1 over the per-question `em` and `f1` of a report."""

    em: tuple[float, ...]
    f1: tuple[float, ...]

    @property
    def exact_match(self) -> float:
        return sum(self.em) / max(len(self.em), 1)

    @property
    def mean_f1(self) -> float:
        return sum(self.f1) / max(len(self.f1), 1)


@dataclass(frozen=True)
class QAReport(_MeanScores):
    examples: tuple[QAExample, ...]
    ks: tuple[int, ...]
    retrieval: RetrieverRun
    predictions: tuple[Answer, ...]
    em: tuple[float, ...]  # per question
    f1: tuple[float, ...]
    reader_seconds: float
    configuration: dict = field(default_factory=dict)  # what was evaluated: index, encoder, retriever, fusion, reader, k, limit, date, version
    ceiling: float | None = None  # share of questions whose answer occurs anywhere in the corpus

    def table(self) -> str:
        headers = ["pipeline", "EM", "F1"] + [f"top-{k}" for k in self.ks] + ["questions/s"]
        total = self.retrieval.seconds + self.reader_seconds
        qps = len(self.examples) / total if total > 0 else float("inf")
        row = [self.retrieval.name, percent(self.exact_match), percent(self.mean_f1)] + [percent(a) for a in self.retrieval.accuracy(self.ks).values()] + [f"{qps:.1f}"]
        return f"exact match, F1 and top-k retrieval accuracy (%), {len(self.examples)} questions\n" + format_table(headers, [row])

    def to_json(self) -> dict:
        return {
            "configuration": self.configuration,
            "questions": len(self.examples),
            "ks": list(self.ks),
            "answer_ceiling": self.ceiling,
            "exact_match": self.exact_match,
            "f1": self.mean_f1,
            "accuracy": {str(k): a for k, a in self.retrieval.accuracy(self.ks).items()},
            "retrieval_seconds": self.retrieval.seconds,
            "reader_seconds": self.reader_seconds,
            "per_question": [
                {
                    "id": ex.id,
                    "question": ex.question,
                    "answers": list(ex.answers),
                    "prediction": pred.text,
                    "score": pred.score,
                    "em": em,
                    "f1": f,
                    "first_hit": first,
                    "top": list(top),
                }
                for ex, pred, em, f, first, top in zip(self.examples, self.predictions, self.em, self.f1, self.retrieval.first_hits, self.retrieval.top_ids)
            ],
        }

    def write_json(self, path: str | Path) -> Path:
        return write_json(path, self.to_json())

    def write_plot(self, path: str | Path, title: str = "") -> Path:
        levels = {f"EM {percent(self.exact_match)}": self.exact_match, f"F1 {percent(self.mean_f1)}": self.mean_f1}
        if self.ceiling is not None:
            levels[f"answer in corpus {percent(self.ceiling)}"] = self.ceiling
        return plot_accuracy({self.retrieval.name: self.retrieval.accuracy(self.ks)}, path, f"{title or 'retrieval accuracy, EM and F1'}, n = {len(self.examples)} questions", levels)


def evaluate_qa(pipeline, examples: Sequence[QAExample], ks: Sequence[int], batch_size: int = 64, mode: str = "string", progress: bool = True, name: str = "pipeline") -> QAReport:
    """A rag.pipeline.Pipeline over every question, batched, through Pipeline.answer: it retrieves
    max(max(ks), pipeline.k) passages (for top-k accuracy) and reads the first pipeline.k of them."""
    ks = tuple(sorted(set(ks)))
    reader_seconds = 0.0

    def fetch(questions: list[str], depth: int):
        nonlocal reader_seconds
        done = pipeline.answer(questions, depth=depth)
        reader_seconds += sum(d.read_seconds for d in done)
        return [list(d.hits) for d in done], [d.answer for d in done]

    run, predictions = _run(name, pipeline.retriever, examples, max(max(ks), pipeline.k), batch_size, mode, progress, fetch)
    run = replace(run, seconds=run.seconds - reader_seconds)  # the run's seconds are retrieval's, as in evaluate_retrieval
    em = tuple(exact_match(p.text, ex.answers) for p, ex in zip(predictions, examples))
    f1s = tuple(f1(p.text, ex.answers) for p, ex in zip(predictions, examples))
    return QAReport(tuple(examples), ks, run, tuple(predictions), em, f1s, reader_seconds)


# --- the ceiling ---------------------------------------------------------------------------


def answer_ceiling(store, examples: Sequence[QAExample]) -> float:
    """Share of questions with an answer string anywhere in the store's passages: no retriever beats it."""
    return answer_ceilings(store, {"": examples})[""]


def answer_ceilings(store, sets: dict[str, Sequence[QAExample]]) -> dict[str, float]:
    """`answer_ceiling` of several question sets in one streamed pass over the store (~3 min at 654k passages)."""
    examples = [ex for group in sets.values() for ex in group]
    texts = (p.text for batch in store.iter_batches(4096) for p in batch)
    found = iter(answers_found(texts, [ex.answers for ex in examples]))
    return {name: sum(next(found) for _ in group) / max(len(group), 1) for name, group in sets.items()}


# --- reading comprehension: the reader alone, given the gold paragraph --------------------------


@dataclass(frozen=True)
class ReaderReport(_MeanScores):
    """SQuAD's official EM/F1 of a reader reading each question's own paragraph."""

    name: str
    questions: tuple[str, ...]
    answers: tuple[tuple[str, ...], ...]
    predictions: tuple[str, ...]
    em: tuple[float, ...]
    f1: tuple[float, ...]
    seconds: float

    def table(self) -> str:
        qps = len(self.questions) / self.seconds if self.seconds > 0 else float("inf")
        row = [self.name, percent(self.exact_match), percent(self.mean_f1), f"{qps:.1f}"]
        return f"reading comprehension with the gold paragraph, {len(self.questions)} questions\n" + format_table(["reader", "EM", "F1", "questions/s"], [row])

    def to_json(self) -> dict:
        per_question = [{"question": q, "answers": list(a), "prediction": p, "em": e, "f1": f}
                        for q, a, p, e, f in zip(self.questions, self.answers, self.predictions, self.em, self.f1)]
        return {"reader": self.name, "questions": len(self.questions), "exact_match": self.exact_match, "f1": self.mean_f1,
                "seconds": self.seconds, "per_question": per_question}

    def write_json(self, path: str | Path) -> Path:
        return write_json(path, self.to_json())


def evaluate_reader(reader, squad: str | Path, limit: int = 0, name: str = "reader", doc_stride: int = 128, progress: bool = True) -> ReaderReport:
    """A reader (span reader or generator) over SQuAD questions, each reading its own paragraph.

    A paragraph longer than the reader's window is cut into overlapping windows, read as separate
    passages of equal retrieval score: the reader's selection head and span scores pick among them.
    """
    from tqdm import tqdm

    from rag.qa_data import load_squad

    questions = load_squad(squad, limit)
    predictions, seconds = [], 0.0
    for q in tqdm(questions, desc="reading", unit=" questions", disable=not progress, file=sys.stderr):
        hits = [Hit(passage, 0.0, rank) for rank, passage in enumerate(paragraph_windows(reader, q.question, q.title, q.context, doc_stride), 1)]
        t0 = time.perf_counter()
        predictions.append(reader.read([q.question], [hits])[0].text)
        seconds += time.perf_counter() - t0
    answers = [q.answers or (q.answer_text,) for q in questions]
    em = tuple(exact_match(p, a) for p, a in zip(predictions, answers))
    f1s = tuple(f1(p, a) for p, a in zip(predictions, answers))
    return ReaderReport(name, tuple(q.question for q in questions), tuple(answers), tuple(predictions), em, f1s, seconds)


def paragraph_windows(reader, question: str, title: str, context: str, doc_stride: int) -> list:
    """The paragraph as passages of at most one reader window each, overlapping by `doc_stride` tokens, cut at spaces."""
    from rag.types import Passage, title_prefix

    prefix = title_prefix(title, getattr(reader.config, "read_titles", True))  # as the reader reads passages (a generator: always)
    window = getattr(reader.config, "max_length", None) or reader.config.max_source_length  # span reader / generator
    enc = reader.tokenizer(question, prefix + context, truncation="only_second", max_length=window,
                           stride=doc_stride, return_overflowing_tokens=True, return_offsets_mapping=True)
    windows = []
    for w in range(len(enc["input_ids"])):
        chars = [o for o, s in zip(enc["offset_mapping"][w], enc.sequence_ids(w)) if s == 1 and o[0] >= len(prefix) and o[1] > o[0]]
        if not chars:
            continue
        start, end = chars[0][0] - len(prefix), chars[-1][1] - len(prefix)
        start = context.rfind(" ", 0, start) + 1  # back to the start of the word the window begins in
        windows.append(Passage(f"w{w}", title, context[start:end]))
    return windows or [Passage("w0", title, context)]
