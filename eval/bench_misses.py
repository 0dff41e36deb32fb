"""Where the span reader loses answers: every question is right or a miss of one kind, with calibration.

    .venv/bin/python eval/bench_misses.py --squad ../shared/data/squad/dev-v1.1.json --limit 300 [--reader default]
    .venv/bin/python eval/bench_misses.py --qa ../shared/data/nq-open/NQ-open.dev.jsonl --index indexes/default --limit 300 -k 10

The reader's regression check (issue "A reader that reads", items 1 and 4). Both modes can run in one call.

SQuAD mode (--squad): SQuAD v1.1 dev. Each question reads its gold paragraph as ONE passage (a
rag.types.Hit, score 0, titled with the article title), so what the reader's window does not reach is
lost, and is counted. A question is
  right                              EM with any gold answer (the official SQuAD normalization)
  (b) right passage, wrong span      the predicted span (Answer.spans[0], character offsets into the passage)
                                     shares no character with any gold answer span (answer_start offsets);
                                     "of which past the window": every gold span ends after the last
                                     character the reader's max_length tokens reach
  (c) right span, wrong boundary     overlaps a gold span but does not normalize to a gold answer:
      extra words                    the prediction contains a gold span ("Sir Isaac Newton" for
                                     "Isaac Newton", "Rome, Italy" for "Rome")
      missing words                  a gold span contains the prediction ("Rome" for "Rome, Italy")
      other overlap                  each has words the other lacks ("Broncos defeated" for "Denver Broncos")

Open-domain mode (--qa with --index): the default pipeline (rag.pipeline.load_pipeline: dense retrieval,
re-ranked by models/reranker where installed) retrieves k passages, the reader reads them. The answer
strings' occurrences in a passage are DPR's has_answer rule (rag.metrics) with character offsets. A question is
  right                              EM with any answer
  (a) wrong passage chosen           some passage read has an answer, the one the answer was taken from
                                     (Answer.spans[0]) has none
  (b) right passage, wrong span      the answer's passage has an answer; the prediction overlaps no occurrence
  (c) right span, wrong boundary     the prediction overlaps an occurrence but is not EM (extra / missing / other, as above)
  (d) no answer in the passages read no passage read has an answer (retrieval's miss, not the reader's)
It also reports "top-1 holds an answer" (the first passage read has an answer: DPR top-1) and EM among
those questions, the issue's acceptance metric, and how many of those top-1 matches are possibly
accidental. Rule: a top-1 passage's match is "possibly accidental" when EVERY occurrence of an answer
string in it is weak, an occurrence being weak when
  - the answer string is shorter than 3 characters ("8", "UK", "I"), or
  - the answer is a pure number (digits, with , or . inside) and the occurrence touches other digits
    across at most one separator: a number inside another number or a date ("800" in "1,800", "2010" in
    "12/05/2010", "1968" in "1968-72"; DPR's tokens split at , . / -, so these count as matches).
  (A 1-2 digit day beside a month name, "8" in "May 8", is already weak by the first rule.)
The rule only flags for reading; it removes nothing from any count.

Calibration (item 4), for each mode run: EM by the answer's probability (Answer.score) in buckets
0-0.2, ..., 0.8-1.0, with counts, and the threshold below which answers are right less than half the
time: the largest t on a 0.05 grid such that the answers scored below t have EM < 50%. REPORT ONLY:
a threshold that ships ("no answer" below it) must be chosen on a training split, e.g. DPR's NQ dev
topics (../shared/data/nq-open/topics.dpr.nq.dev.txt), never on a report set such as these.

Tables print; numbers and every question's record go to --json (eval/out/bench_misses.json).
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import re
import sys
import time
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from rag.metrics import _dpr_token_pattern, _answer_tokens, exact_match, f1, has_answer, normalize_answer  # noqa: E402
from rag.report import format_table, percent, write_json  # noqa: E402
from rag.types import Answer, Hit, Passage, RagError  # noqa: E402

RIGHT = "right"
WRONG_PASSAGE = "(a) wrong passage chosen"
WRONG_SPAN = "(b) right passage, wrong span"
EXTRA_WORDS = "(c) wrong boundary: extra words"
MISSING_WORDS = "(c) wrong boundary: missing words"
OTHER_OVERLAP = "(c) wrong boundary: other overlap"
NO_ANSWER_READ = "(d) no answer in the passages read"
BOUNDARY = (EXTRA_WORDS, MISSING_WORDS, OTHER_OVERLAP)
SQUAD_KINDS = (RIGHT, WRONG_SPAN, *BOUNDARY)
QA_KINDS = (RIGHT, WRONG_PASSAGE, WRONG_SPAN, *BOUNDARY, NO_ANSWER_READ)
BUCKET_EDGES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
THRESHOLD_GRID = tuple(round(0.05 * i, 2) for i in range(1, 21))
TRAINING_SPLIT_NOTE = ("report only: a threshold to ship must be chosen on a training split "
                       "(e.g. DPR's NQ dev topics ../shared/data/nq-open/topics.dpr.nq.dev.txt), never on a report set")


# --- classification (pure) ------------------------------------------------------------------


def span_kind(prediction: str, answers: Sequence[str], pred_span: tuple[int, int] | None, gold_spans: Sequence[tuple[int, int]]) -> str:
    """right, wrong span or one of the boundary kinds, for a prediction read from a passage whose gold spans are known.

    `pred_span` and `gold_spans` are character offsets (end exclusive) into the same passage text. Without a
    `pred_span` (a reader that gives no offsets) the normalized words decide: a gold answer inside the
    prediction is extra words, the prediction inside a gold answer missing words, else a wrong span.
    """
    if exact_match(prediction, answers):
        return RIGHT
    if pred_span is None:
        pred = normalize_answer(prediction).split()
        golds = [normalize_answer(a).split() for a in answers]
        if any(g and _contains(pred, g) for g in golds):
            return EXTRA_WORDS
        if pred and any(_contains(g, pred) for g in golds):
            return MISSING_WORDS
        return WRONG_SPAN
    ps, pe = pred_span
    overlapping = [(gs, ge) for gs, ge in gold_spans if ps < ge and gs < pe]
    if not overlapping:
        return WRONG_SPAN
    if any(ps <= gs and ge <= pe for gs, ge in overlapping):
        return EXTRA_WORDS
    if any(gs <= ps and pe <= ge for gs, ge in overlapping):
        return MISSING_WORDS
    return OTHER_OVERLAP


def _contains(words: list[str], part: list[str]) -> bool:
    return any(words[i : i + len(part)] == part for i in range(len(words) - len(part) + 1))


def answer_occurrences(text: str, answers: Sequence[str]) -> list[tuple[int, int, str]]:
    """(start, end, answer) of each place DPR's has_answer rule finds an answer in `text`: the answer's DPR
    tokens as a contiguous run of the text's (uncased, NFD per token), with the run's character offsets."""
    tokens = [(unicodedata.normalize("NFD", m.group()).lower(), m.start(), m.end()) for m in _dpr_token_pattern().finditer(text)]
    words = [t for t, _, _ in tokens]
    found = []
    for answer in dict.fromkeys(answers):
        needle = list(_answer_tokens(answer))
        if not needle:
            continue
        for i in range(len(words) - len(needle) + 1):
            if words[i : i + len(needle)] == needle:
                found.append((tokens[i][1], tokens[i + len(needle) - 1][2], answer))
    return found


def open_domain_kind(prediction: str, answers: Sequence[str], hits: Sequence[Hit], answer_passage: Passage | None, pred_span: tuple[int, int] | None) -> str:
    """The kind of one open-domain question: `hits` are the passages read, `answer_passage` the one the
    answer was taken from (None: no answer), `pred_span` the answer's offsets in it."""
    if prediction and exact_match(prediction, answers):
        return RIGHT
    if not any(has_answer(h.passage.text, answers) for h in hits):
        return NO_ANSWER_READ
    if answer_passage is None or not has_answer(answer_passage.text, answers):
        return WRONG_PASSAGE
    occurrences = [(s, e) for s, e, _ in answer_occurrences(answer_passage.text, answers)]
    return span_kind(prediction, answers, pred_span, occurrences)


_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_DIGIT_BEFORE = re.compile(r"\d[,.:/\-–]?$")
_DIGIT_AFTER = re.compile(r"^[,.:/\-–]?\d")


def weak_occurrence(text: str, start: int, end: int, answer: str) -> bool:
    """An answer occurrence that may be chance (see the module docstring's rule)."""
    answer = answer.strip()
    if len(answer) < 3:
        return True
    if not _NUMBER.fullmatch(answer):
        return False
    return bool(_DIGIT_BEFORE.search(text[max(0, start - 2) : start]) or _DIGIT_AFTER.search(text[end : end + 2]))


def possibly_accidental(text: str, answers: Sequence[str]) -> bool:
    """The passage has an answer, and every occurrence of one is weak."""
    occurrences = answer_occurrences(text, answers)
    return bool(occurrences) and all(weak_occurrence(text, s, e, a) for s, e, a in occurrences)


# --- calibration (pure) ---------------------------------------------------------------------


def calibration(scores: Sequence[float], ems: Sequence[float]) -> dict:
    """EM by answer-probability bucket and the half-right threshold (see the module docstring)."""
    buckets = []
    for i, (lo, hi) in enumerate(zip(BUCKET_EDGES, BUCKET_EDGES[1:])):
        last = i == len(BUCKET_EDGES) - 2
        inside = [em for s, em in zip(scores, ems) if lo <= s < hi or (last and s >= hi)]
        buckets.append({"bucket": f"{lo:.1f}-{hi:.1f}", "answers": len(inside), "exact_match": sum(inside) / len(inside) if inside else None})
    return {"buckets": buckets, "half_right_threshold": half_right_threshold(scores, ems), "note": TRAINING_SPLIT_NOTE}


def half_right_threshold(scores: Sequence[float], ems: Sequence[float], right_share: float = 0.5) -> float | None:
    """The largest t on a 0.05 grid such that the answers scored below t are right (EM) less than
    `right_share` of the time (0.5: less than half); None when no answers are below the smallest such t."""
    best = None
    for t in THRESHOLD_GRID:
        below = [em for s, em in zip(scores, ems) if s < t or (t == 1.0 and s <= t)]
        if below and sum(below) / len(below) < right_share:
            best = t
    return best


def calibration_table(cal: dict) -> str:
    rows = [[b["bucket"], b["answers"], "-" if b["exact_match"] is None else percent(b["exact_match"])] for b in cal["buckets"]]
    t = cal["half_right_threshold"]
    line = f"answers scored below {t:.2f} are right less than half the time" if t is not None else "no score below which answers are right less than half the time"
    return format_table(["p(answer)", "answers", "EM"], rows) + f"\n{line} ({cal['note']})"


def kind_table(kinds: Sequence[str], order: Sequence[str], sub_rows: dict[str, tuple[str, int]] | None = None) -> tuple[str, list[dict]]:
    """The kinds' counts and shares, (c)'s total before its three parts; `sub_rows`: kind -> (name, count) shown under it."""
    n = max(len(kinds), 1)
    rows = []
    for kind in order:
        if kind == BOUNDARY[0]:
            boundary = sum(x in BOUNDARY for x in kinds)
            rows.append({"kind": "(c) right span, wrong boundary (all)", "questions": boundary, "share": boundary / n})
        count = sum(x == kind for x in kinds)
        rows.append({"kind": kind if kind not in BOUNDARY else "    " + kind.split(": ")[1], "questions": count, "share": count / n})
        if sub_rows and kind in sub_rows:
            name, count = sub_rows[kind]
            rows.append({"kind": f"    {name}", "questions": count, "share": count / n})
    return format_table(["kind", "questions", "% of questions"], [[r["kind"], r["questions"], percent(r["share"])] for r in rows]), rows


# --- SQuAD mode -----------------------------------------------------------------------------


@dataclass(frozen=True)
class SquadItem:
    id: str
    question: str
    title: str
    context: str
    golds: tuple[tuple[int, str], ...]  # (answer_start, text) of every annotator's answer


def load_squad_items(path: str | Path, limit: int = 0) -> list[SquadItem]:
    """SQuAD v1.1 questions with every gold answer's offset; an answer not at its answer_start is an error."""
    path = Path(path)
    if not path.exists():
        raise RagError(f"{path}: no such SQuAD file")
    with (gzip.open if path.suffix == ".gz" else open)(path, "rt", encoding="utf-8") as f:
        data = json.load(f)
    items = []
    for article in data["data"]:
        title = str(article.get("title", "")).replace("_", " ")
        for paragraph in article["paragraphs"]:
            context = paragraph["context"]
            for qa in paragraph["qas"]:
                golds = tuple((a["answer_start"], a["text"]) for a in qa["answers"])
                for start, text in golds:
                    if context[start : start + len(text)] != text:
                        raise RagError(f"{path}: question {qa.get('id')}: answer {text!r} is not at answer_start {start}")
                items.append(SquadItem(str(qa.get("id", len(items))), qa["question"].strip(), title, context, golds))
                if limit and len(items) >= limit:
                    return items
    return items


def prediction_span(answer: Answer, passage: Passage) -> tuple[int, int] | None:
    """The answer's character span in `passage`: its first span there, else where its text first stands."""
    for span in answer.spans:
        if span.passage_id == passage.id:
            return span.start, span.end
    if not answer.text:
        return None
    at = passage.text.find(answer.text)
    return (at, at + len(answer.text)) if at >= 0 else None


def window_end(reader, question: str, passage: Passage) -> int | None:
    """The last character of `passage` the span reader's window reaches (None: a reader without one)."""
    from rag.read import SpanReader

    if not isinstance(reader, SpanReader):
        return None
    return int(reader.encode(question, [passage]).token_chars[0, :, 1].max())


def run_squad(reader, items: Sequence[SquadItem], progress: bool = True) -> dict:
    records, seconds = [], 0.0
    for i, item in enumerate(items):
        passage = Passage(f"squad-{item.id}", item.title, item.context)
        t0 = time.perf_counter()
        answer = reader.read([item.question], [[Hit(passage, 0.0, 1)]])[0]
        seconds += time.perf_counter() - t0
        texts = tuple(dict.fromkeys(t for _, t in item.golds))
        gold_spans = [(s, s + len(t)) for s, t in item.golds]
        span = prediction_span(answer, passage)
        kind = span_kind(answer.text, texts, span, gold_spans)
        reach = window_end(reader, item.question, passage)
        records.append({"id": item.id, "question": item.question, "answers": list(texts), "gold_spans": gold_spans, "prediction": answer.text,
                        "span": list(span) if span else None, "probability": answer.score, "kind": kind,
                        "exact_match": exact_match(answer.text, texts), "f1": f1(answer.text, texts),
                        "gold_past_window": reach is not None and all(s >= reach for s, _ in gold_spans)})
        if progress and (i + 1) % 50 == 0:
            print(f"  {i + 1}/{len(items)} questions read", file=sys.stderr, flush=True)
    past = sum(r["kind"] == WRONG_SPAN and r["gold_past_window"] for r in records)
    return summarize(records, SQUAD_KINDS, seconds, {WRONG_SPAN: ("of which every gold answer lies past the reader's window", past)})


# --- open-domain mode -----------------------------------------------------------------------


def run_qa(pipeline, examples, k: int, batch: int = 8, progress: bool = True, hits: list[list[Hit]] | None = None) -> dict:
    """`hits`: the passages already retrieved for each example (cached_hits); else the pipeline retrieves them."""
    records, seconds = [], 0.0
    for start in range(0, len(examples), batch):
        chunk = examples[start : start + batch]
        questions = [ex.question for ex in chunk]
        t0 = time.perf_counter()
        if hits is None:
            done = pipeline.answer(questions, k)
            chunk_hits, answers = [list(d.hits) for d in done], [d.answer for d in done]
        else:
            chunk_hits = hits[start : start + batch]
            answers = pipeline.reader.read(questions, chunk_hits)
        seconds += time.perf_counter() - t0
        for ex, question_hits, answer in zip(chunk, chunk_hits, answers):
            records.append(qa_record(ex, question_hits, answer))
        if progress:
            print(f"  {len(records)}/{len(examples)} questions read", file=sys.stderr, flush=True)
    top1 = [r for r in records if r["top1_has_answer"]]
    accidental = sum(r["top1_possibly_accidental"] for r in top1)
    summary = summarize(records, QA_KINDS, seconds)
    n = max(len(records), 1)
    summary["top_k_has_answer"] = sum(r["any_has_answer"] for r in records) / n
    summary["top1_has_answer"] = {"questions": len(top1), "share": len(top1) / n,
                                  "exact_match": sum(r["exact_match"] for r in top1) / len(top1) if top1 else None,
                                  "possibly_accidental": accidental}
    return summary


def qa_record(ex, hits: Sequence[Hit], answer: Answer) -> dict:
    answers = ex.answers
    by_id = {h.passage.id: h for h in hits}
    source = by_id.get(answer.spans[0].passage_id) if answer.spans else (answer.evidence[0] if answer.evidence else None)
    span = prediction_span(answer, source.passage) if source else None
    kind = open_domain_kind(answer.text, answers, hits, source.passage if source else None, span)
    top = hits[0].passage if hits else None
    top1 = top is not None and has_answer(top.text, answers)
    return {"id": ex.id, "question": ex.question, "answers": list(answers), "prediction": answer.text, "probability": answer.score, "kind": kind,
            "exact_match": exact_match(answer.text, answers), "f1": f1(answer.text, answers),
            "answer_rank": source.rank if source else None, "answer_passage": source.passage.id if source else None, "span": list(span) if span else None,
            "any_has_answer": any(has_answer(h.passage.text, answers) for h in hits), "top1_has_answer": top1,
            "top1_possibly_accidental": top1 and possibly_accidental(top.text, answers)}


def cached_hits(pipeline, questions: list[str], k: int, path: Path, progress: bool = True) -> list[list[Hit]]:
    """The pipeline's hits for `questions`, retrieved once: ids and scores are kept in `path`, and a
    rerun with the same questions, index and k reads the passages back from the index's store, so that
    several readers (or reader settings) read exactly the same passages."""
    store = pipeline.index.store
    if path.exists():
        saved = json.loads(path.read_text())
        if saved["questions"] == questions and Path(saved["index"]).resolve() == Path(pipeline.index.path).resolve() and saved["k"] == k:
            return [[Hit(store.get(h["id"]), h["score"], h["rank"], h.get("rerank_score")) for h in row] for row in saved["hits"]]
    hits = []
    for start in range(0, len(questions), 16):
        hits += pipeline.retriever.retrieve(questions[start : start + 16], k)
        if progress:
            print(f"  retrieved {len(hits)}/{len(questions)}", file=sys.stderr, flush=True)
    rows = [[{"id": h.passage.id, "score": h.score, "rank": h.rank, "rerank_score": h.rerank_score} for h in row] for row in hits]
    write_json(path, {"index": str(Path(pipeline.index.path).resolve()), "k": k, "questions": questions, "hits": rows})
    return hits


# --- shared ---------------------------------------------------------------------------------


def summarize(records: list[dict], order: Sequence[str], seconds: float, sub_rows: dict[str, tuple[str, int]] | None = None) -> dict:
    n = max(len(records), 1)
    table, rows = kind_table([r["kind"] for r in records], order, sub_rows)
    cal = calibration([r["probability"] for r in records], [r["exact_match"] for r in records])
    return {"questions": len(records), "exact_match": sum(r["exact_match"] for r in records) / n, "f1": sum(r["f1"] for r in records) / n,
            "questions_per_s": len(records) / seconds if seconds else None, "kinds": rows, "table": table, "calibration": cal, "records": records}


def print_report(title: str, summary: dict) -> None:
    print(f"\n{title}: {summary['questions']} questions, EM {percent(summary['exact_match'])}, F1 {percent(summary['f1'])}"
          + (f", {summary['questions_per_s']:.1f} questions/s" if summary["questions_per_s"] else ""))
    print(summary["table"])
    if "top1_has_answer" in summary:
        top1 = summary["top1_has_answer"]
        em = "-" if top1["exact_match"] is None else percent(top1["exact_match"])
        print(format_table(["acceptance", "value"], [
            ["passages read hold an answer (top-k, %)", percent(summary["top_k_has_answer"])],
            ["top-1 holds an answer (questions)", f"{top1['questions']} ({percent(top1['share'])}%)"],
            ["EM among those (%)", em],
            ["of those, top-1 match possibly accidental", top1["possibly_accidental"]],
        ]))
    print("\ncalibration: EM (%) by the answer's probability")
    print(calibration_table(summary["calibration"]))


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--squad", help="SQuAD v1.1 JSON: each question read with its gold paragraph")
    ap.add_argument("--qa", help="open-domain QA set (NQ-open JSONL, ...): read through the default pipeline over --index")
    ap.add_argument("--index", default=None, help="index folder for --qa (default: indexes/default)")
    ap.add_argument("--reader", default="default", help="reader spec (rag.readers.load_reader; default: the shipped reader)")
    ap.add_argument("--limit", type=int, default=300, help="first N questions of each set (0: all)")
    ap.add_argument("-k", type=int, default=10, help="passages read per question (--qa)")
    ap.add_argument("--rerank", type=int, default=None, help="--qa: passages re-ranked per question, as `rag ask --rerank` (default: the pipeline's; 0: none)")
    ap.add_argument("--hits-cache", default=None, help="--qa: a JSON file keeping the passages retrieved, so that another reader reads the same ones (written on the first run)")
    ap.add_argument("--answerability-weight", type=float, default=None, help="--qa: the span reader's ReaderConfig.answerability_weight (default: its own)")
    ap.add_argument("--title-bonus", type=float, default=None, help="the span reader's ReaderConfig.title_bonus (default: its own; 0: none)")
    ap.add_argument("--json", default="eval/out/bench_misses.json")
    ap.add_argument("--quiet", action="store_true", help="no progress lines")
    args = ap.parse_args(argv)
    if not args.squad and not args.qa:
        ap.error("give --squad FILE, --qa FILE, or both")
    results: dict = {"reader": args.reader, "answerability_weight": args.answerability_weight, "title_bonus": args.title_bonus, "cpu_cores": os.cpu_count()}
    if args.squad:
        from rag.readers import ReaderOptions, load_reader

        reader = load_reader(args.reader, ReaderOptions(inference_only=True))
        if args.title_bonus is not None:
            from dataclasses import replace

            reader.config = replace(reader.config, title_bonus=args.title_bonus)
        summary = run_squad(reader, load_squad_items(args.squad, args.limit), progress=not args.quiet)
        print_report(f"SQuAD v1.1 dev, gold paragraph as one passage ({args.squad})", summary)
        results["squad"] = {"file": args.squad, **{k: v for k, v in summary.items() if k != "table"}}
    if args.qa:
        from rag.paths import default_index
        from rag.pipeline import PipelineConfig, load_pipeline
        from rag.qa_data import load_qa

        index = args.index or str(default_index())
        from rag.pipeline import RERANK_DEFAULT
        from rag.rerank import RerankConfig

        rerank = RERANK_DEFAULT if args.rerank is None else (RerankConfig(depth=args.rerank) if args.rerank else None)
        pipeline = load_pipeline(PipelineConfig(index, args.reader, args.k, rerank=rerank))
        knobs = {k: v for k, v in (("answerability_weight", args.answerability_weight), ("title_bonus", args.title_bonus)) if v is not None}
        if knobs:
            from dataclasses import replace

            pipeline.reader.config = replace(pipeline.reader.config, **knobs)
        examples = load_qa(args.qa, limit=args.limit or None)
        hits = cached_hits(pipeline, [ex.question for ex in examples], args.k, Path(args.hits_cache), not args.quiet) if args.hits_cache else None
        summary = run_qa(pipeline, examples, args.k, progress=not args.quiet, hits=hits)
        print_report(f"open domain, default pipeline over {index}, k={args.k} ({args.qa})", summary)
        results["qa"] = {"file": args.qa, "index": index, "k": args.k, "rerank_depth": rerank.depth if rerank else 0, **{k: v for k, v in summary.items() if k != "table"}}
    print(f"\nnumbers: {write_json(args.json, results)}")
    return results


if __name__ == "__main__":
    try:
        main()
    except RagError as e:
        sys.exit(f"bench_misses: {e}")
