"""Choose how the span reader weighs passages, and its "not sure" threshold, on held-out training questions.

    .venv/bin/python eval/tune_reader.py --index indexes/wiki2015 [--reader default] [-k 10] [--limit 0]

The questions are the ones `rag train retriever` keeps aside (the same files, seed and holdout as
models/retriever's card; eval/tune_pipeline.py tunes retrieval on them): DPR's NQ dev and TriviaQA
dev topics and WebQuestions trainmodel.json, none trained on and none a report set. The default
pipeline (rag.pipeline.load_pipeline, re-ranked) retrieves k passages once per question; the hits are
kept in --out-dir, so a rerun with another reader reads the same passages. Each variant of p(z|q)
(rag.read.ReaderConfig passage_prior x selection_weight x answerability_weight, with and without the titles read; title_bonus, rag.answers) then reads them, and the table gives EM,
F1, EM among the questions whose top-1 passage holds an answer, and the half-right threshold: the
largest p on a 0.05 grid below which answers are right less than half the time
(eval/bench_misses.py's rule), and the not-sure threshold: the largest such p below which answers
are right less than 1 time in 20 (half-right is 1.0 over Wikipedia, where even answers at p 0.8-1.0
are right half the time: a "not sure" on everything says nothing). The best variant by EM is printed with its calibration table; the
shipped reader's ReaderConfig defaults and NOT_SURE_BELOW (rag/read.py) are set from that line.
Numbers go to eval/out/tune_reader.json (tune_reader-FOLDER.json for --reader FOLDER).
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_misses import cached_hits, calibration, calibration_table, half_right_threshold, qa_record  # noqa: E402

from rag.paths import default_index, shared_data  # noqa: E402
from rag.pipeline import PipelineConfig, load_pipeline  # noqa: E402
from rag.report import format_table, percent, write_json  # noqa: E402
from rag.train.retriever import RetrieverTrainConfig, split_questions  # noqa: E402
from rag.types import Hit  # noqa: E402

NOT_SURE_RIGHT_SHARE = 0.05  # "not sure" below the largest p under which answers are right less than 1 time in 20
VARIANTS = {  # name -> (passage_prior, selection_weight, read_titles, answerability_weight, title_bonus)
    "retrieval + selection (v1 reader)": ("retrieval", 1.0, True, 0.0, 0.0),
    "rerank + selection": ("rerank", 1.0, True, 0.0, 0.0),
    "rerank + selection / 2": ("rerank", 0.5, True, 0.0, 0.0),
    "rerank alone": ("rerank", 0.0, True, 0.0, 0.0),
    "retrieval alone": ("retrieval", 0.0, True, 0.0, 0.0),
    "rerank + selection (no titles)": ("rerank", 1.0, False, 0.0, 0.0),
    "rerank alone (no titles)": ("rerank", 0.0, False, 0.0, 0.0),
    "rerank + selection + log Z / 2": ("rerank", 1.0, True, 0.5, 0.0),
    "rerank + selection + log Z": ("rerank", 1.0, True, 1.0, 0.0),
    "rerank + log Z": ("rerank", 0.0, True, 1.0, 0.0),
    "retrieval + log Z": ("retrieval", 0.0, True, 1.0, 0.0),
    "rerank + selection + title bonus 1": ("rerank", 1.0, True, 0.0, 1.0),
    "rerank + selection + title bonus 2 (default)": ("rerank", 1.0, True, 0.0, 2.0),
    "rerank + selection + title bonus 3": ("rerank", 1.0, True, 0.0, 3.0),
}


def main() -> int:
    data = shared_data()
    training = ",".join(str(data / f) for f in ("nq-open/topics.dpr.nq.dev.txt", "triviaqa/topics.dpr.trivia.dev.txt", "webquestions/trainmodel.json"))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", default=str(default_index()))
    parser.add_argument("--reader", default="default", help="a span-reader folder (default: the shipped reader)")
    parser.add_argument("--questions", default=training, help="the training files of `rag train retriever`, comma-separated")
    parser.add_argument("--holdout", type=float, default=RetrieverTrainConfig.holdout)
    parser.add_argument("--seed", type=int, default=RetrieverTrainConfig.seed)
    parser.add_argument("-k", type=int, default=10, help="passages read per question")
    parser.add_argument("--limit", type=int, default=0, help="the first N held-out questions (0: all)")
    parser.add_argument("--variants", default=",".join(VARIANTS), help="which rows to read, comma-separated (default: all)")
    parser.add_argument("--out-dir", default="eval/out")
    args = parser.parse_args()

    held, _ = split_questions(RetrieverTrainConfig(questions=tuple(args.questions.split(",")), index=args.index, out="-", holdout=args.holdout, seed=args.seed))
    held = held[: args.limit] if args.limit else held
    pipeline = load_pipeline(PipelineConfig(args.index, args.reader, args.k))
    hits = cached_hits(pipeline, [ex.question for ex in held], args.k, Path(args.out_dir) / f"tune_reader-hits-{Path(args.index).name}-k{args.k}.json")
    reader = pipeline.reader
    rows, results = [], {}
    for name, (prior, weight, titles, log_z, title_bonus) in ((n, VARIANTS[n]) for n in args.variants.split(",")):
        reader.config = replace(reader.config, passage_prior=prior, selection_weight=weight, read_titles=titles, answerability_weight=log_z, title_bonus=title_bonus)
        answers = reader.read([ex.question for ex in held], hits)
        records = [qa_record(ex, h, a) for ex, h, a in zip(held, hits, answers)]
        top1 = [r for r in records if r["top1_has_answer"]]
        cal = calibration([r["probability"] for r in records], [r["exact_match"] for r in records])
        scores, ems = [r["probability"] for r in records], [r["exact_match"] for r in records]
        not_sure = half_right_threshold(scores, ems, NOT_SURE_RIGHT_SHARE)
        below = [em for s, em in zip(scores, ems) if not_sure is not None and s < not_sure]
        results[name] = {"passage_prior": prior, "selection_weight": weight, "read_titles": titles, "answerability_weight": log_z, "title_bonus": title_bonus, "exact_match": mean(ems),
                         "f1": mean(r["f1"] for r in records), "top1_questions": len(top1), "top1_exact_match": mean(r["exact_match"] for r in top1),
                         "calibration": cal, "not_sure_below": not_sure, "share_not_sure": len(below) / len(records),
                         "exact_match_not_sure": mean(below), "exact_match_sure": mean(em for s, em in zip(scores, ems) if not_sure is None or s >= not_sure),
                         "answers": [[s, em] for s, em in zip(scores, ems)]}
        r = results[name]
        rows.append([name, percent(r["exact_match"]), percent(r["f1"]), percent(r["top1_exact_match"]), cal["half_right_threshold"], not_sure,
                     percent(r["share_not_sure"]), "-" if r["exact_match_sure"] is None else percent(r["exact_match_sure"])])  # "-": every answer is below it
        print(f"  read: {name}", file=sys.stderr, flush=True)
    any_answer = mean(any(has(h, ex) for h in question_hits) for ex, question_hits in zip(held, hits))
    print(f"{len(held)} held-out training questions over {args.index}, k={args.k}, reader {args.reader}; top-{args.k} holds an answer for {percent(any_answer)}%")
    print(format_table(["p(z|q)", "EM", "F1", "EM | top-1 has answer", "half-right threshold", "not-sure threshold", "% not sure", "EM of the sure"], rows))
    best = max(results, key=lambda n: (results[n]["exact_match"], results[n]["f1"]))
    print(f"\nbest by EM: {best}\ncalibration: EM (%) by the answer's probability")
    print(calibration_table(results[best]["calibration"]))
    summary = {"questions": len(held), "files": args.questions, "index": args.index, "k": args.k, "reader": args.reader,
               "top_k_has_answer": any_answer, "best": best, "variants": results}
    name = "tune_reader.json" if args.reader == "default" else f"tune_reader-{Path(args.reader).name}.json"
    print(f"wrote {write_json(Path(args.out_dir) / name, summary)}", file=sys.stderr)
    return 0


def has(hit: Hit, example) -> bool:
    from rag.metrics import has_answer

    return has_answer(hit.passage.text, example.answers)


def mean(values) -> float | None:
    values = list(values)
    return sum(values) / len(values) if values else None


if __name__ == "__main__":
    sys.exit(main())
