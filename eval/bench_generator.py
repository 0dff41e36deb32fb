"""The shipped RAG generator, measured: open-domain QA beside the span reader, and its decoding options.

    .venv/bin/python eval/bench_generator.py [--qa-limit 200] [--k 10] [--decoding-limit 100] [--squad-limit -1] [--sequence-decoding fast]

1. Open-domain QA over --index (default: indexes/default; dense retrieval), NQ-open dev, EfficientQA dev and
   WebQuestions val+devtest (the first --qa-limit questions of each), k passages read: the shipped span reader, RAG-Sequence and
   RAG-Token (the shipped generator, models/generator): EM/F1, dense top-k, each generator's EM as a
   share of the span reader's, and questions/s (retrieval + reading, this machine).
2. Decoding options on the first --decoding-limit NQ-open dev questions: RAG-Sequence "thorough"
   (every candidate scored against every passage) against "fast" (only against the passages whose
   beam produced it), and RAG-Token with 1 and 4 beams: EM and questions/s, same retrieved passages.
3. With --squad-limit >= 0: SQuAD v1.1 dev with the gold paragraph (0: all 10,570), RAG-Sequence.
None of these question sets was used to train or tune the generator (see models/generator/README.md).
--generator FOLDER measures another generator; --qa FILES --qa-start N puts held-out training
questions (those after the first N) in place of the report sets, to choose between generators.
Numbers go to eval/out/bench_generator.json.
"""
from __future__ import annotations

import argparse
import os
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from rag.evaluate import evaluate_qa, evaluate_reader  # noqa: E402
from rag.generate import RagGenerator  # noqa: E402
from rag.index_folder import open_index  # noqa: E402
from rag.metrics import exact_match  # noqa: E402
from rag.paths import default_index, shared_data  # noqa: E402
from rag.pipeline import LoadedParts, PipelineConfig, load_pipeline  # noqa: E402
from rag.readers import ReaderOptions, load_reader  # noqa: E402
from rag.qa_data import load_qa  # noqa: E402
from rag.report import format_table, percent, write_json  # noqa: E402
from rag.retrieve import load_retriever  # noqa: E402

SHARED = shared_data()
# name -> the files of one report set (WebQuestions' two report files count as one set, as in bench_retrieval)
QA_SETS = {"NQ-open dev": [SHARED / "nq-open" / "NQ-open.dev.jsonl"], "EfficientQA dev": [SHARED / "nq-open" / "NQ-open.efficientqa.dev.1.1.jsonl"],
           "WebQuestions val+devtest": [SHARED / "webquestions" / "val.json", SHARED / "webquestions" / "devtest.json"]}
QA_COLUMNS = ["set", "reader", "k", "EM", "F1", "dense top-k", "EM / span reader's", "questions/s"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--index", default=str(default_index()))
    ap.add_argument("--k", type=int, default=10, help="passages read per question (default: %(default)s)")
    ap.add_argument("--qa-limit", type=int, default=200, help="questions of each open-domain set (0: all; -1: skip)")
    ap.add_argument("--decoding-limit", type=int, default=100, help="NQ-open dev questions for the decoding options (0: skip)")
    ap.add_argument("--squad-limit", type=int, default=-1, help="SQuAD dev questions with the gold paragraph (0: all; -1: skip)")
    ap.add_argument("--sequence-decoding", default="thorough", choices=("thorough", "fast"), help="RAG-Sequence decoding in the open-domain table (default: %(default)s)")
    ap.add_argument("--generator", default=None, help="a generator folder to measure instead of models/generator (e.g. a `rag train --reader rag-sequence` checkpoint's reader)")
    ap.add_argument("--qa", default=None, help="question files for the open-domain table instead of the report sets, comma-separated "
                    "(held-out training questions, to choose between generators without touching the report sets)")
    ap.add_argument("--qa-start", type=int, default=0, help="skip the first N questions of each set (with --qa: those trained on)")
    ap.add_argument("--json", default="eval/out/bench_generator.json")
    args = ap.parse_args()
    sequence = variant(load_reader("rag-sequence", ReaderOptions(generator=args.generator)), decoding=args.sequence_decoding)
    readers = {"span reader (shipped)": load_reader("default"), f"RAG-Sequence ({args.sequence_decoding})": sequence, "RAG-Token": variant(sequence, variant="token")}
    retriever = load_retriever(open_index(args.index), "dense")
    results: dict = {"index": args.index, "k": args.k, "generator": sequence.config.model}
    if args.qa_limit >= 0:
        results["open_domain"] = open_domain_table(retriever, readers, args)
    if args.decoding_limit:
        results["decoding"] = decoding_table(retriever, sequence, args)
    if args.squad_limit >= 0:
        report = evaluate_reader(sequence, str(SHARED / "squad" / "dev-v1.1.json"), args.squad_limit, name="RAG-Sequence, gold paragraph")
        print(report.table() + "\n")
        results["squad"] = {"questions": len(report.questions), "exact_match": report.exact_match, "f1": report.mean_f1}
    print(f"numbers: {write_json(args.json, results)}")


def variant(generator: RagGenerator, **changes) -> RagGenerator:
    """The same weights in memory, other decoding settings."""
    return RagGenerator.from_model(replace(generator.config, **changes), generator.tokenizer, generator.model)


def open_domain_table(retriever, readers: dict, args) -> list[dict]:
    rows, table, parts = [], [], LoadedParts()  # one index and query encoder for every reader
    sets = {Path(p).name: [Path(p)] for p in args.qa.split(",")} if args.qa else QA_SETS
    for set_name, paths in sets.items():
        examples = [e for path in paths for e in load_qa(str(path))][args.qa_start :][: args.qa_limit or None]
        span_em = None
        for name, reader in readers.items():
            pipeline = load_pipeline(PipelineConfig(args.index, k=args.k, rerank=None), parts, reader=reader)
            report = evaluate_qa(pipeline, examples, (args.k,), progress=False, name=name)
            top_k = report.retrieval.accuracy((args.k,))[args.k]
            span_em = report.exact_match if span_em is None else span_em  # the first reader is the span reader
            qps = len(examples) / (report.retrieval.seconds + report.reader_seconds)
            share = report.exact_match / span_em if span_em else float("nan")
            rows.append({"set": set_name, "questions": len(examples), "reader": name, "k": args.k, "exact_match": report.exact_match,
                         "f1": report.mean_f1, "top_k": top_k, "em_over_span_reader": share, "questions_per_s": qps})
            table.append([f"{set_name} ({len(examples)})", name, args.k, percent(report.exact_match), percent(report.mean_f1), percent(top_k),
                          f"{100 * share:.0f}%", f"{qps:.2f}"])
            print(format_table(QA_COLUMNS, table[-1:]).splitlines()[-1], flush=True)
    print(f"\nopen-domain QA over {args.index}, dense retrieval, k={args.k} (%)")
    print(format_table(QA_COLUMNS, table) + "\n")
    return rows


def decoding_table(retriever, sequence: RagGenerator, args) -> list[dict]:
    examples = load_qa(str(QA_SETS["NQ-open dev"]), limit=args.decoding_limit)
    questions = [ex.question for ex in examples]
    hits = [h[: args.k] for h in retriever.retrieve(questions, args.k)]
    options = {
        "RAG-Sequence, thorough": variant(sequence, decoding="thorough"),
        "RAG-Sequence, fast": variant(sequence, decoding="fast"),
        "RAG-Token, 1 beam": variant(sequence, variant="token", num_beams=1),
        "RAG-Token, 4 beams": variant(sequence, variant="token", num_beams=4),
    }
    rows, answers = [], {}
    for name, generator in options.items():
        t0 = time.perf_counter()
        answers[name] = [a.text for a in generator.read(questions, hits)]
        seconds = time.perf_counter() - t0
        em = sum(exact_match(a, ex.answers) for a, ex in zip(answers[name], examples)) / len(examples)
        rows.append({"decoding": name, "questions": len(examples), "exact_match": em, "questions_per_s": len(examples) / seconds})
    baseline = answers["RAG-Sequence, thorough"]
    table = [[r["decoding"], percent(r["exact_match"]), f"{r['questions_per_s']:.2f}", f"{rows[0]['questions_per_s'] and r['questions_per_s'] / rows[0]['questions_per_s']:.2f}",
              f"{100 * sum(a == b for a, b in zip(answers[r['decoding']], baseline)) / len(baseline):.0f}%"] for r in rows]
    print(f"decoding options, first {len(examples)} NQ-open dev questions, k={args.k}, same passages (reading only)")
    print(format_table(["decoding", "EM", "questions/s", "x thorough", "same answer as thorough"], table) + "\n")
    return rows


if __name__ == "__main__":
    main()
