"""Joint training of the MiniLM span reader and the query encoder (REALM/RAG), before vs after.

    nice -n 10 .venv/bin/python eval/bench_joint.py [--index indexes/default] [--train 240] [--eval 200] [--k 6]

Train: NQ-open dev questions (those also in the evaluation set removed) whose answer occurs in
their top-K passages under the starting encoder (the rest give no training signal; REALM skips
them too), 1 epoch, from (question, answers) pairs only. Evaluate: a fixed random subset of the
EfficientQA dev questions over the built-in corpus, with the same K passages read.
Before = the index's own query encoder + the untrained MiniLM span head; after = the checkpoint.
Prints EM/F1 and top-1/5/20 accuracy side by side, the training cost, and the ceiling (share of
evaluation questions whose answer occurs anywhere in the corpus); then, retrieval alone being
cheap, top-k accuracy of both query encoders on all 1,800 EfficientQA dev questions, with the
questions each k gained and lost. Numbers go to
eval/out/bench_joint.json; the checkpoint to --out (default eval/out/joint-reader).
"""
from __future__ import annotations

import argparse
import os
import random
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from rag.evaluate import answer_ceiling, evaluate_qa, evaluate_retrieval  # noqa: E402
from rag.index_folder import open_index  # noqa: E402
from rag.metrics import first_hit_rank, normalize_answer  # noqa: E402
from rag.paths import default_index, shared_data  # noqa: E402
from rag.pipeline import PipelineConfig, load_pipeline  # noqa: E402
from rag.qa_data import load_qa  # noqa: E402
from rag.read import ReaderConfig, SpanReader  # noqa: E402
from rag.report import format_table, percent, write_json  # noqa: E402
from rag.retrieve import load_retriever  # noqa: E402
from rag.train.joint import TrainConfig, train  # noqa: E402

# Defaults sized for ~45 min on 2 shared CPU cores; the reader reads K passages of --max-length tokens.
SHARED = shared_data()
KS = (1, 5, 20)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--index", default=str(default_index()))
    ap.add_argument("--train", type=int, default=240, help="training questions (answer in their top-K)")
    ap.add_argument("--eval", type=int, default=200, help="EfficientQA dev questions evaluated (0: all 1,800)")
    ap.add_argument("--k", type=int, default=6, help="passages retrieved and read per question")
    ap.add_argument("--max-length", type=int, default=128)
    ap.add_argument("--batch-size", type=int, default=2)
    ap.add_argument("--lr", type=float, default=1e-4, help="the reader's learning rate")
    ap.add_argument("--query-lr", type=float, default=2e-5)
    ap.add_argument("--out", default="eval/out/joint-reader", help="checkpoint folder")
    ap.add_argument("--json", default="eval/out/bench_joint.json", help="where all numbers go")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))
    folder = open_index(args.index)
    evaluation = load_qa(SHARED / "nq-open" / "NQ-open.efficientqa.dev.1.1.jsonl")
    if args.eval:
        evaluation = random.Random(0).sample(evaluation, min(args.eval, len(evaluation)))
    held_out = {normalize_answer(ex.question) for ex in evaluation}
    candidates = [ex for ex in load_qa(SHARED / "nq-open" / "NQ-open.dev.jsonl") if normalize_answer(ex.question) not in held_out]

    retriever = load_retriever(folder, "dense")
    t0 = time.perf_counter()
    hits = retriever.retrieve([ex.question for ex in candidates], args.k)
    training = [ex for ex, h in zip(candidates, hits) if first_hit_rank(h, ex.answers) is not None]
    print(f"training questions: {len(training)} of {len(candidates)} NQ-open dev questions have an answer in their top-{args.k} "
          f"({time.perf_counter() - t0:.0f} s to find); using {min(args.train, len(training))}", file=sys.stderr)
    training = random.Random(1).sample(training, min(args.train, len(training)))

    untrained = SpanReader(ReaderConfig(max_length=args.max_length))  # the bare MiniLM with a new span head
    before = evaluate_qa(load_pipeline(PipelineConfig(args.index, k=args.k, rerank=None), reader=untrained), evaluation, KS, name="before: base encoder + untrained reader")

    config = TrainConfig(
        questions=str(SHARED / "nq-open" / "NQ-open.dev.jsonl"), index=args.index, out=args.out, k=args.k, batch_size=args.batch_size,
        max_length=args.max_length, lr=args.lr, query_lr=args.query_lr, save_every=10**9,
    )
    t0 = time.perf_counter()
    report = train(config, training)
    train_seconds = time.perf_counter() - t0

    tuned = load_pipeline(PipelineConfig(args.index, reader=args.out, k=args.k, rerank=None))
    after = evaluate_qa(tuned, evaluation, KS, name="after: joint training")
    ceiling = answer_ceiling(folder.store, evaluation)

    rows = [[r.retrieval.name, percent(r.exact_match), percent(r.mean_f1)] + [percent(a) for a in r.retrieval.accuracy(KS).values()] + [f"{r.reader_seconds:.0f}"] for r in (before, after)]
    print(f"\nEfficientQA dev, {len(evaluation)} questions, built-in corpus ({folder.manifest.passages} passages), top-{args.k} read; "
          f"answer anywhere in the corpus: {percent(ceiling)}")
    print(format_table(["pipeline", "EM", "F1"] + [f"top-{k}" for k in KS] + ["reader s"], rows))
    print(f"\njoint training: {report.questions_used} questions used of {report.questions_seen}, {report.steps} steps of {args.batch_size}, "
          f"mean loss {report.mean_loss:.3f}, {train_seconds / 60:.1f} min on {torch.get_num_threads()} CPU threads "
          f"({train_seconds / max(report.questions_seen, 1):.2f} s/question)")
    # Retrieval alone is cheap: compare the two query encoders on every EfficientQA dev question.
    everything = load_qa(SHARED / "nq-open" / "NQ-open.efficientqa.dev.1.1.jsonl")
    full = evaluate_retrieval({"base query encoder": retriever, "joint-trained query encoder": tuned.retriever}, everything, (1, 5, 20, 100))
    print(f"\n{full.table()}")
    base, joint = (full.runs[name].first_hits for name in ("base query encoder", "joint-trained query encoder"))
    changes = {k: (sum(_within(j, k) and not _within(b, k) for b, j in zip(base, joint)), sum(_within(b, k) and not _within(j, k) for b, j in zip(base, joint))) for k in full.ks}
    print("questions gained / lost by joint training: " + ", ".join(f"top-{k} +{g}/-{lost}" for k, (g, lost) in changes.items()))
    write_json(args.json, {
        "full_retrieval": {**full.accuracy(), "gained_lost": {str(k): v for k, v in changes.items()}},
        "settings": vars(args),
        "evaluation_questions": len(evaluation),
        "ceiling": ceiling,
        "training": {"questions": report.questions_seen, "used": report.questions_used, "steps": report.steps, "mean_loss": report.mean_loss, "seconds": train_seconds},
        "before": before.to_json(),
        "after": after.to_json(),
    })


def _within(rank: int | None, k: int) -> bool:
    return rank is not None and rank <= k


if __name__ == "__main__":
    main()
