"""Question/answer sets -> `QAExample(id, question, answers)`.

Formats (`fmt`, or "auto" from the file name and, for .json, its structure):
  nq-open      JSONL, one `{"question", "answer": [..]}` per line (NQ-open, EfficientQA; "answers" also read)
  webquestions JSON list of `{"qId", "qText", "answers": [..]}`
  dpr-qas      .csv/.tsv/.txt: `question<TAB>["a", "b"]` (JSON or Python-literal list; csv-quoted lines too)
  triviaqa     the official JSON: `{"Data": [{"QuestionId", "Question", "Answer": {"Value", "Aliases"}}]}`
  squad        SQuAD JSON: `{"data": [{"paragraphs": [{"qas": [{"id", "question", "answers": [{"text"}]}]}]}]}`
  hf           a Hugging Face dataset: a folder saved with `save_to_disk`, a .parquet/.arrow file, or
               "hf:NAME[:SPLIT]" (needs the hub); columns `question` and `answer`/`answers`/`qText`.

SQuAD with answer offsets (what reader and generator training read) is `load_squad` -> `SquadQuestion`;
`holdout_split` keeps a seeded share of questions aside (the same one for every trainer given the same files and seed).

A bad record is a RagError naming the file and line (JSON: the line where the record starts).
"""
from __future__ import annotations

import ast
import csv
import gzip
import json
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from rag.types import Passage, QAExample, RagError

SQUAD_WINDOW_WORDS = 120  # paragraph words around the answer that generator training reads (retrieved passages are ~100 words)
FORMATS = ("nq-open", "webquestions", "dpr-qas", "triviaqa", "squad", "hf")


def load_qa(path: str | Path, fmt: str = "auto", limit: int | None = None) -> list[QAExample]:
    """Read a question/answer set; `limit` keeps the first N questions."""
    source = str(path)
    fmt = detect_qa_format(source) if fmt == "auto" else fmt
    readers = {"nq-open": _read_jsonl, "webquestions": _read_json, "triviaqa": _read_json, "squad": _read_json, "dpr-qas": _read_dpr_qas, "hf": _read_hf}
    if fmt not in readers:
        raise RagError(f"unknown QA format {fmt!r}; valid: {', '.join(FORMATS)}")
    if not source.startswith("hf:") and not Path(source).exists():
        raise RagError(f"QA file not found: {source}")
    examples: list[QAExample] = []
    for ex in readers[fmt](source, fmt):
        if limit is not None and len(examples) >= limit:
            break
        examples.append(ex)
    if not examples:
        raise RagError(f"no questions read from {source} (format {fmt})")
    return examples


def read_questions(path: str, limit: int | None = None) -> list[tuple[str, str]]:
    """(id, question) pairs of a question file: a QA file (any format load_qa reads, its own ids) or a
    plain text file, one question a line (line numbers as ids; "-" reads standard input)."""
    if path.endswith(".txt") or path == "-":
        try:
            lines = sys.stdin.read().splitlines() if path == "-" else Path(path).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as e:
            raise RagError(f"{path}: cannot read questions ({e})") from e
        pairs = [(str(n), line.strip()) for n, line in enumerate(lines, 1) if line.strip()][: limit or None]
    else:
        pairs = [(ex.id, ex.question) for ex in load_qa(path, limit=limit)]
    if not pairs:
        raise RagError(f"{path}: no questions")
    return pairs


def detect_qa_format(source: str) -> str:
    if source.startswith("hf:") or Path(source).is_dir():
        return "hf"
    name = Path(source).name.lower().removesuffix(".gz")
    if name.endswith(".jsonl"):
        return "nq-open"
    if name.endswith((".csv", ".tsv", ".txt")):
        return "dpr-qas"
    if name.endswith((".parquet", ".arrow")):
        return "hf"
    if name.endswith(".json"):
        head = _open(source).read(4096).lstrip()
        if head.startswith("["):
            return "webquestions"
        if '"Data"' in head:
            return "triviaqa"
        return "squad"
    raise RagError(f"cannot tell the QA format of {source}; pass --qa-format, one of {', '.join(FORMATS)}")


def _open(source: str):
    return gzip.open(source, "rt", encoding="utf-8") if source.endswith(".gz") else open(source, encoding="utf-8", newline="")


def _example(where: str | Callable[[], str], id: Any, question: Any, answers: Any) -> QAExample:
    """A checked QAExample; `where` (or a function giving it, called only on error) names file and line."""
    if isinstance(answers, str):
        answers = [answers]
    if not isinstance(question, str) or not question.strip():
        raise RagError(f"{_where(where)}: missing or empty question")
    if not isinstance(answers, (list, tuple)) or not answers or not all(isinstance(a, str) for a in answers):
        raise RagError(f"{_where(where)}: answers must be a non-empty list of strings, found {answers!r}"[:300])
    return QAExample(str(id), question.strip(), tuple(answers))


def _where(where: str | Callable[[], str]) -> str:
    return where if isinstance(where, str) else where()


def _stem(source: str) -> str:
    """'topics.dpr.nq.dev.txt' -> 'topics.dpr.nq.dev': the prefix of generated question ids."""
    name = Path(source).name.removesuffix(".gz")
    return name.rsplit(".", 1)[0] if "." in name else name


def _read_jsonl(source: str, fmt: str) -> Iterator[QAExample]:
    stem = _stem(source)
    with _open(source) as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            where = f"{source}:{line_no}"
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise RagError(f"{where}: invalid JSON ({e})") from e
            if not isinstance(rec, dict):
                raise RagError(f"{where}: expected a JSON object with 'question' and 'answer'")
            answers = rec.get("answer", rec.get("answers"))
            yield _example(where, rec.get("id", f"{stem}-{line_no}"), rec.get("question"), answers)


def _read_json(source: str, fmt: str) -> Iterator[QAExample]:
    with _open(source) as f:
        text = f.read()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise RagError(f"{source}:{e.lineno}: invalid JSON ({e.msg})") from e
    lines = _LineFinder(text)
    if fmt == "webquestions":
        if not isinstance(data, list):
            raise RagError(f"{source}: WebQuestions is a JSON list of {{qId, qText, answers}}")
        for i, rec in enumerate(data):
            where = lines.where(source, i, rec.get("qId") if isinstance(rec, dict) else None)
            if not isinstance(rec, dict):
                raise RagError(f"{where()}: expected an object with qId, qText, answers")
            yield _example(where, rec.get("qId", i), rec.get("qText"), rec.get("answers"))
    elif fmt == "triviaqa":
        for i, rec in enumerate(data.get("Data", []) if isinstance(data, dict) else []):
            where = lines.where(source, i, rec.get("QuestionId") if isinstance(rec, dict) else None)
            answer = rec.get("Answer") if isinstance(rec, dict) else None
            if not isinstance(answer, dict) or not isinstance(answer.get("Value"), str):
                raise RagError(f"{where()}: expected Answer with Value and Aliases")
            aliases = [answer["Value"]] + [a for a in answer.get("Aliases", []) if a != answer["Value"]]
            yield _example(where, rec.get("QuestionId", i), rec.get("Question"), aliases)
    else:  # squad
        n = 0
        for (a, p, q), _, _, qa in squad_records(data, source):
            where = lines.where(source, f"data[{a}].paragraphs[{p}].qas[{q}]", qa.get("id"))
            answers = [a.get("text") for a in qa.get("answers", []) if isinstance(a, dict)]
            # SQuAD answers repeat (one per annotator): keep the first of each
            yield _example(where, qa.get("id") or f"{_stem(source)}-{n}", qa.get("question"), list(dict.fromkeys(answers)))
            n += 1


def squad_records(data: Any, source: str) -> Iterator[tuple[tuple[int, int, int], str, Any, dict]]:
    """((article, paragraph, question) numbers, title, context, qa record) of each question of parsed SQuAD JSON."""
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise RagError(f"{source}: SQuAD JSON has a top-level 'data' list of articles")
    for a, article in enumerate(data["data"]):
        title = str(article.get("title", "")).replace("_", " ")
        for p, paragraph in enumerate(article.get("paragraphs", [])):
            for q, qa in enumerate(paragraph.get("qas", [])):
                yield (a, p, q), title, paragraph.get("context"), qa


@dataclass(frozen=True)
class SquadQuestion:
    """A SQuAD question with its paragraph and answer offset: what reader and generator training read."""

    question: str
    title: str
    context: str
    answer_start: int  # character offset of the (first) answer in context
    answer_text: str
    answers: tuple[str, ...] = ()  # every annotator's answer (SQuAD dev has up to 3), for EM/F1


def load_squad(path: str | Path, limit: int = 0) -> list[SquadQuestion]:
    """SQuAD v1.1 questions with their paragraph and first answer; errors name the record."""
    path = Path(path)
    if not path.exists():
        raise RagError(f"{path}: no such SQuAD file")
    try:
        with _open(str(path)) as f:
            data = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError, OSError, EOFError) as e:
        raise RagError(f"{path}: not a readable SQuAD JSON file ({e})") from e
    out = []
    for (a, p, q), title, context, qa in squad_records(data, str(path)):
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


def squad_examples(questions: list[SquadQuestion], window_words: int, seed: int) -> list[tuple[str, Passage, str]]:
    """(question, passage, answer): the paragraph, or `window_words` of it around the answer at a random offset."""
    rng = random.Random(seed)
    examples = []
    for q in questions:
        words = q.context.split(" ")
        first = q.context[: q.answer_start].count(" ")
        last = first + q.answer_text.count(" ")
        if len(words) > window_words and last - first < window_words:
            start = max(0, min(first - rng.randint(0, window_words - 1 - (last - first)), len(words) - window_words))
            words = words[start : start + window_words]
        examples.append((q.question, Passage("", q.title, " ".join(words)), q.answer_text))
    return examples


def holdout_split(examples: list[QAExample], share: float, seed: int) -> tuple[list[QAExample], list[QAExample]]:
    """(held-out, rest): `examples` shuffled by `seed`, the first `share` of them kept aside.
    `rag train retriever` and `rag train reranker --holdout` keep the same questions aside when given the same files and seed."""
    examples = list(examples)
    random.Random(seed).shuffle(examples)
    cut = int(len(examples) * share)
    return examples[:cut], examples[cut:]


class _LineFinder:
    """Line numbers for records of a parsed JSON file: where its id first appears, else its index."""

    def __init__(self, text: str):
        self.text = text

    def where(self, source: str, index: Any, record_id: Any) -> Callable[[], str]:
        def find() -> str:
            if isinstance(record_id, str) and record_id:
                pos = self.text.find(json.dumps(record_id))
                if pos >= 0:
                    return f"{source}:{self.text.count(chr(10), 0, pos) + 1}"
            return f"{source}: record {index}"

        return find


def _read_dpr_qas(source: str, fmt: str) -> Iterator[QAExample]:
    csv.field_size_limit(sys.maxsize)
    stem = _stem(source)
    with _open(source) as f:
        reader = csv.reader(f, delimiter="\t")
        n = 0
        for row in reader:
            where = f"{source}:{reader.line_num}"
            if not row or not any(c.strip() for c in row):
                continue
            if len(row) != 2:
                raise RagError(f"{where}: expected question<TAB>answer list, found {len(row)} columns")
            question, raw = row
            try:
                answers = json.loads(raw)
            except json.JSONDecodeError:
                try:
                    answers = ast.literal_eval(raw)
                except (ValueError, SyntaxError) as e:
                    raise RagError(f"{where}: the answer column is not a JSON or Python list: {raw[:80]!r}") from e
            yield _example(where, f"{stem}-{n}", question, answers)
            n += 1


def _read_hf(source: str, fmt: str) -> Iterator[QAExample]:
    dataset = _load_hf(source)
    for i, rec in enumerate(dataset):
        where = f"{source}: row {i}"
        question = rec.get("question", rec.get("qText"))
        answers = rec.get("answer", rec.get("answers"))
        if isinstance(answers, dict):  # TriviaQA {"value", "aliases"}; SQuAD {"text": [..]}
            answers = answers.get("text") or ([answers["value"]] + list(answers.get("aliases", [])) if "value" in answers else None)
        if isinstance(answers, (list, tuple)):
            answers = list(dict.fromkeys(answers))
        yield _example(where, rec.get("id", rec.get("question_id", i)), question, answers)


def _load_hf(source: str):
    import datasets

    try:
        if source.startswith("hf:"):
            name, _, split = source[3:].partition(":")
            return datasets.load_dataset(name, split=split or "validation")
        path = Path(source)
        if path.is_dir():
            loaded = datasets.load_from_disk(str(path))
            if isinstance(loaded, datasets.DatasetDict):
                split = "validation" if "validation" in loaded else next(iter(loaded))
                return loaded[split]
            return loaded
        kind = "parquet" if path.suffix == ".parquet" else "arrow"
        return datasets.load_dataset(kind, data_files=str(path), split="train")
    except (FileNotFoundError, ValueError, ConnectionError, OSError) as e:
        raise RagError(f"cannot load Hugging Face dataset {source}: {e}") from e
