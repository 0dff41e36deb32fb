"""The span reader, measured: reading comprehension, open-domain EM against top-k, and the fast path.

    .venv/bin/python eval/bench_reader.py [--reader default] [--weak-reader DIR] [--squad-limit 0] [--qa-limit 500] [--latency 100]

1. SQuAD v1.1 dev, each question with its gold paragraph: official EM/F1 (rag.evaluate.evaluate_reader).
2. Open-domain QA over indexes/default (dense retrieval), NQ-open dev and EfficientQA dev (the first
   --qa-limit questions of each), 10 and 20 passages read: EM/F1 beside dense top-k accuracy and
   EM as a share of it, for the untrained reader (MiniLM + random span head, seed 0), the
   weak-supervision-only recipe (`--weak-reader`: a `rag train --freeze-query-encoder` checkpoint
   trained from the untrained reader), and the shipped reader.
3. Latency of one question at k=10 on this machine: the reader in fp32 against its fast path
   (bf16 where the CPU supports it), the same retrieved passages, alternating, and how often the
   two give the same answer.
None of these question sets was used to train or tune the shipped reader (see models/reader/README.md).
Numbers go to eval/out/bench_reader.json.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from rag.evaluate import evaluate_qa, evaluate_reader  # noqa: E402
from rag.index_folder import open_index  # noqa: E402
from rag.metrics import normalize_answer  # noqa: E402
from rag.paths import default_index, shared_data  # noqa: E402
from rag.pipeline import LoadedParts, PipelineConfig, load_pipeline  # noqa: E402
from rag.readers import ReaderOptions, load_reader  # noqa: E402
from rag.qa_data import load_qa  # noqa: E402
from rag.report import format_table, percent, write_json  # noqa: E402
from rag.retrieve import load_retriever  # noqa: E402

SHARED = shared_data()
QA_SETS = {"NQ-open dev": SHARED / "nq-open" / "NQ-open.dev.jsonl", "EfficientQA dev": SHARED / "nq-open" / "NQ-open.efficientqa.dev.1.1.jsonl"}
READ_KS = (10, 20)
QA_COLUMNS = ["set", "reader", "k", "EM", "F1", "dense top-k", "EM / top-k", "questions/s"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--index", default=str(default_index()))
    ap.add_argument("--reader", default="default", help="the reader to measure (default: the shipped one)")
    ap.add_argument("--weak-reader", default=None, help="a reader trained by weak supervision only, for the QA table")
    ap.add_argument("--squad", default=str(SHARED / "squad" / "dev-v1.1.json"))
    ap.add_argument("--squad-limit", type=int, default=0, help="SQuAD dev questions (0: all 10,570; -1: skip)")
    ap.add_argument("--qa-limit", type=int, default=500, help="questions of each open-domain set (0: all; -1: skip)")
    ap.add_argument("--latency", type=int, default=100, help="questions timed at k=10 (0: skip)")
    ap.add_argument("--json", default="eval/out/bench_reader.json")
    args = ap.parse_args()
    results: dict = {"reader": args.reader, "index": args.index}

    if args.squad_limit >= 0:
        report = evaluate_reader(load_reader(args.reader), args.squad, args.squad_limit, name=f"{args.reader} (fast path)")
        print(report.table() + "\n")
        results["squad"] = {"questions": len(report.questions), "exact_match": report.exact_match, "f1": report.mean_f1}
    folder = open_index(args.index)
    retriever = load_retriever(folder, "dense")
    if args.qa_limit >= 0:
        results["open_domain"] = open_domain_table(retriever, args)
    if args.latency:
        results["latency"] = latency(retriever, args.reader, args.latency)
    print(f"numbers: {write_json(args.json, results)}")


def open_domain_table(retriever, args) -> list[dict]:
    import torch

    torch.manual_seed(0)  # the untrained reader's random head, the same in every run
    readers = {"untrained (random span head)": untrained_reader()}
    if args.weak_reader:
        readers["weak supervision only"] = load_reader(args.weak_reader)
    readers[f"shipped ({args.reader})"] = load_reader(args.reader)
    rows, table, parts = [], [], LoadedParts()  # one index and query encoder for every reader
    for set_name, path in QA_SETS.items():
        examples = load_qa(str(path), limit=args.qa_limit or None)
        for reader_name, reader in readers.items():
            for k in READ_KS:
                pipeline = load_pipeline(PipelineConfig(args.index, k=k, rerank=None), parts, reader=reader)
                report = evaluate_qa(pipeline, examples, (k,), progress=False, name=reader_name)
                top_k = report.retrieval.accuracy((k,))[k]
                qps = len(examples) / (report.retrieval.seconds + report.reader_seconds)
                rows.append({"set": set_name, "questions": len(examples), "reader": reader_name, "k": k, "exact_match": report.exact_match,
                             "f1": report.mean_f1, "top_k": top_k, "em_over_top_k": report.exact_match / top_k if top_k else 0.0, "questions_per_s": qps})
                table.append([f"{set_name} ({len(examples)})", reader_name, k, percent(report.exact_match), percent(report.mean_f1),
                              percent(top_k), f"{100 * rows[-1]['em_over_top_k']:.0f}%", f"{qps:.2f}"])
                print(format_table(QA_COLUMNS, table[-1:]).splitlines()[-1], flush=True)
    print("\nopen-domain QA over the built-in corpus, dense retrieval (%)")
    print(format_table(QA_COLUMNS, table) + "\n")
    return rows


def untrained_reader():
    from rag.read import ReaderConfig, SpanReader

    return SpanReader(ReaderConfig(model="default"))  # the bare MiniLM with a new, random span head


def latency(retriever, reader_spec: str, n: int) -> dict:
    """fp32 against the fast path on the same passages, one question at a time, alternating."""
    fp32, fast = load_reader(reader_spec, ReaderOptions(precision="fp32")), load_reader(reader_spec, ReaderOptions(precision="auto"))
    questions = [ex.question for ex in load_qa(str(QA_SETS["NQ-open dev"]), limit=n)]
    hits = retriever.retrieve(questions, 10)
    times = {"fp32": [], "fast": []}
    same = 0
    fast.read(questions[:1], hits[:1]), fp32.read(questions[:1], hits[:1])  # warm-up
    for q, h in zip(questions, hits):
        answers = {}
        for name, reader in (("fp32", fp32), ("fast", fast)):
            t0 = time.perf_counter()
            answers[name] = reader.read([q], [h])[0].text
            times[name].append(time.perf_counter() - t0)
        same += normalize_answer(answers["fp32"]) == normalize_answer(answers["fast"])
    p50 = {name: 1000 * statistics.median(t) for name, t in times.items()}
    fast_dtype = str(fast.dtype or "fp32").removeprefix("torch.")
    result = {"questions": len(questions), "k": 10, "fp32_ms": p50["fp32"], "fast_ms": p50["fast"], "fast_dtype": fast_dtype,
              "speedup": p50["fp32"] / p50["fast"], "same_answer": same / len(questions)}
    print(f"reader latency, one question, k=10, median of {len(questions)} NQ-open dev questions on {os.cpu_count()} cores")
    print(format_table(["path", "ms/question", "x fp32", "same answer as fp32"], [
        ["fp32 (baseline)", f"{p50['fp32']:.0f}", "1.00", "-"],
        [f"fast ({fast_dtype})", f"{p50['fast']:.0f}", f"{result['speedup']:.2f}", f"{100 * result['same_answer']:.1f}%"],
    ]) + "\n")
    return result


if __name__ == "__main__":
    main()
