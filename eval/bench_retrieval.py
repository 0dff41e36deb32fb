"""Retrieval on the built-in Wikipedia corpus, step by step: what each part of rag adds over a bare MiniLM.

    .venv/bin/python eval/bench_retrieval.py [--index indexes/default] [--limit N] [--rerank 100 --rerank-limit 300]
                                             [--joint CHECKPOINT] [--reranker FOLDER]

One table per report set: NQ-open dev (3,610), EfficientQA dev (1,800), WebQuestions val + devtest
(944). None of them trains anything here: `rag train retriever` and `rag train reranker` learn
from DPR's NQ dev and TriviaQA dev topics and WebQuestions trainmodel.json, and the hybrid's
fusion is chosen on held-out training questions (eval/tune_pipeline.py). Rows:

  base MiniLM dense        all-MiniLM-L6-v2 queries over the index (what SentenceTransformer + IndexFlatIP gives)
  BM25                     DPR's BM25 (bm25s, Lucene parameters)
  + retriever training     the query tower `rag train retriever` trained (the shipped models/retriever)
  + joint training         a `rag train` checkpoint's query tower (--joint), when given
  + reranking              the trained dense top N re-scored by the reranker (--rerank N, first --rerank-limit questions)
  hybrid                   trained dense + BM25, fused with HybridConfig's defaults (chosen by eval/tune_pipeline.py)
  default pipeline         what `rag search` / `rag ask` / the demo retrieve with on this index, no flags

Columns: top-1/5/20/100 retrieval accuracy (DPR's has-answer rule), questions/s in this run, and
the ratio of top-20 to the base row's. Reranked rows are measured on their first questions only
(a cross-encoder over 100 passages is 0.5-1.7 s a question on 2 cores); the base row is measured on the same
questions beside them. Plots go to eval/out/bench_retrieval-<set>.png, numbers to
eval/out/bench_retrieval.json.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402

from bm25_oracle import reference_scorer  # noqa: E402  (eval/bm25_oracle.py, beside this script)
from rag.bm25 import BM25Index, Tokenizer, bm25_for_index, passage_tokens_text  # noqa: E402
from rag.encoders import DEFAULT_ENCODER, SHIPPED_RETRIEVER, EncoderConfig  # noqa: E402
from rag.evaluate import answer_ceilings, evaluate_retrieval  # noqa: E402
from rag.index_folder import open_index  # noqa: E402
from rag.paths import default_index, shared_data  # noqa: E402
from rag.qa_data import load_qa  # noqa: E402
from rag.report import format_table, percent, write_json  # noqa: E402
from rag.rerank import RerankConfig, RerankingRetriever, load_reranking  # noqa: E402
from rag.retrieve import BM25Retriever, DenseRetriever, HybridConfig, HybridRetriever  # noqa: E402

KS = (1, 5, 20, 100)


def report_sets(limit: int | None) -> dict[str, list]:
    """The question sets this table reports on; none of them is used for training or tuning."""
    nq = shared_data() / "nq-open"
    wq = shared_data() / "webquestions"
    return {
        "NQ-open dev": load_qa(nq / "NQ-open.dev.jsonl", limit=limit),
        "EfficientQA dev": load_qa(nq / "NQ-open.efficientqa.dev.1.1.jsonl", limit=limit),
        "WebQuestions val+devtest": (load_qa(wq / "val.json") + load_qa(wq / "devtest.json"))[:limit],
    }


def bm25s_vs_rank_bm25(index, bm25: BM25Index, questions: list[str], k: int = 100) -> dict:
    """Seconds for the same questions through bm25s and through rank-bm25 (plus top-k selection), same scores."""
    tokenize = Tokenizer(bm25.config)
    texts = [passage_tokens_text(p) for batch in index.store.iter_batches(4096) for p in batch]
    reference = reference_scorer([tokenize(t) for t in texts], bm25.config)
    t0 = time.perf_counter()
    ours = bm25.search(questions, k)
    bm25s_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref_top = []
    for q in questions:
        scores = reference.get_scores(tokenize(q))
        ref_top.append(np.argsort(-scores, kind="stable")[:10])
    rank_bm25_seconds = time.perf_counter() - t0
    same_top1 = sum(int(o[0]) == int(r[0]) for o, r in zip(ours.rows, ref_top) if o[0] >= 0)
    answered = sum(o[0] >= 0 for o in ours.rows)
    return {
        "questions": len(questions),
        "bm25s_qps": len(questions) / bm25s_seconds,
        "rank_bm25_qps": len(questions) / rank_bm25_seconds,
        "speedup": rank_bm25_seconds / bm25s_seconds,
        "same_top1": f"{same_top1}/{answered}",
    }


def retrievers(args, index) -> tuple[dict, dict]:
    """(retrievers over every question, reranked retrievers over the first --rerank-limit), by row name."""
    from rag.checkpoint import load_query_encoder
    from rag.pipeline import PipelineConfig, load_pipeline

    bm25 = BM25Retriever(index, bm25_for_index(index))
    base = DenseRetriever(index, index.load_encoder(EncoderConfig(spec=DEFAULT_ENCODER)))
    trained = DenseRetriever(index, index.load_encoder(EncoderConfig(spec=args.retriever)))
    rows = {"base MiniLM dense": base, "BM25": bm25, "+ retriever training": trained}
    if args.joint:
        rows["+ joint training"] = DenseRetriever(index, load_query_encoder(args.joint, index))
    rows["hybrid"] = HybridRetriever(trained, bm25, HybridConfig())
    default = load_pipeline(PipelineConfig(str(index.path))).retriever  # what the commands and the demo retrieve with, no flags
    reranked = {}
    if isinstance(default, RerankingRetriever):  # re-ranking is part of the default: one row, not two runs of the same thing
        reranked["+ reranking = default pipeline"] = default
    else:
        rows["default pipeline"] = default
        if args.rerank:
            from rag.readers import load_reranker

            config = RerankConfig(depth=args.rerank, reranker=args.reranker)
            reranked["+ reranking"] = load_reranking(trained, config, load_reranker(config))
    return rows, reranked


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", default=str(default_index()))
    parser.add_argument("--retriever", default=SHIPPED_RETRIEVER, help="the trained query tower: rag-retriever (models/retriever) or a `rag train retriever` encoder folder")
    parser.add_argument("--joint", default=None, help="a `rag train` checkpoint whose query tower gets its own row")
    parser.add_argument("--rerank", type=int, default=RerankConfig.depth, help="passages re-scored per question in the reranked row, when the default pipeline does not re-rank (0: no such row)")
    parser.add_argument("--reranker", default=RerankConfig.reranker, help="'rag-reranker' (models/reranker), 'reader' (the shipped span reader's selection head) or a span-reader folder")
    parser.add_argument("--rerank-limit", type=int, default=300, help="questions of each set the reranked rows run on (0: all)")
    parser.add_argument("--limit", type=int, default=None, help="first N questions of each set (quick runs)")
    parser.add_argument("--speed-questions", type=int, default=500, help="NQ-open questions timed through bm25s and rank-bm25 (0: skip)")
    parser.add_argument("--out-dir", default="eval/out")
    args = parser.parse_args()

    index = open_index(args.index)
    rows, reranked = retrievers(args, index)
    out_dir = Path(args.out_dir)
    summary: dict = {"index": args.index, "passages": len(index.store), "index_encoder": index.manifest.encoder, "retriever": args.retriever,
                     "joint": args.joint, "rerank": args.rerank, "reranker": args.reranker, "hybrid": HybridConfig().__dict__, "sets": {}}
    sets = report_sets(args.limit)
    ceilings = answer_ceilings(index.store, sets)
    for name, examples in sets.items():
        ceiling = ceilings[name]
        report = evaluate_retrieval(rows, examples, KS)
        table = _rows(report, report.runs["base MiniLM dense"])
        print(f"\n{name}: {len(examples)} questions, {len(index.store)} passages; answer anywhere in the corpus (ceiling): {percent(ceiling)}%")
        entry = {"questions": len(examples), "ceiling": ceiling, "rows": _json(report)}
        if reranked:  # on the first --rerank-limit questions: the base row again on them, beside the reranked rows
            head = examples[: args.rerank_limit or None]
            whole = len(head) == len(examples)
            small = evaluate_retrieval(reranked if whole else {"base MiniLM dense": rows["base MiniLM dense"], **reranked}, head, KS)
            base = report.runs["base MiniLM dense"] if whole else small.runs["base MiniLM dense"]
            table += [[cells[0] if whole else f"{cells[0]} [first {len(head)}]"] + cells[1:] for cells in _rows(small, base)]
            entry["reranked_questions"], entry["reranked_rows"] = len(head), _json(small)
        print(format_table(["retriever"] + [f"top-{k}" for k in KS] + ["questions/s", "top-20 / base"], table))
        report.write_plot(out_dir / f"bench_retrieval-{name.split()[0].lower()}.png", title=f"{name} on {args.index} ({len(examples)} questions)",
                          levels={f"ceiling {percent(ceiling)}%": ceiling})
        summary["sets"][name] = entry
    if args.speed_questions:
        questions = [ex.question for ex in report_sets(args.speed_questions)["NQ-open dev"]]
        speed = bm25s_vs_rank_bm25(index, bm25_for_index(index), questions)
        print(f"\nBM25 speed, {speed['questions']} NQ-open questions, top-100, one process on this machine (baseline: rank-bm25 BM25Okapi, same scores)")
        print(format_table(["implementation", "questions/s"], [["rank-bm25", f"{speed['rank_bm25_qps']:.1f}"], ["bm25s", f"{speed['bm25s_qps']:.1f}"]]))
        print(f"bm25s is {speed['speedup']:.0f}x faster than rank-bm25; same top-1 passage for {speed['same_top1']} questions")
        summary["bm25_speed"] = speed
    print(f"\nwrote {write_json(out_dir / 'bench_retrieval.json', summary)} and plots in {out_dir}/", file=sys.stderr)
    return 0


def _rows(report, base) -> list[list[str]]:
    accuracy = report.accuracy()
    base20 = base.accuracy((20,))[20]
    return [[r] + [percent(a) for a in accuracy[r].values()] + [f"{run.questions_per_second:.1f}", f"{run.accuracy((20,))[20] / base20:.2f}x" if base20 else "-"]
            for r, run in report.runs.items()]


def _json(report) -> dict:
    return {r: {"accuracy": {str(k): a for k, a in acc.items()}, "questions_per_second": report.runs[r].questions_per_second}
            for r, acc in report.accuracy().items()}


if __name__ == "__main__":
    sys.exit(main())
