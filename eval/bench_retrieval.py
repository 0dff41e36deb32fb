"""Dense vs BM25 vs hybrid on the built-in Wikipedia corpus: DPR's Table 2, measured offline.

    .venv/bin/python eval/bench_retrieval.py [--index indexes/default] [--limit N]

For NQ-open dev and WebQuestions (all three shared files), prints top-1/5/20/100 retrieval
accuracy per retriever, the ceiling (share of questions whose answer string occurs anywhere in
the corpus: no retriever can beat it), and questions/s per retriever. Then times BM25 through
bm25s against rank-bm25 (the same scores, see rag/bm25.py) on the same questions, as a ratio.
Plots go to eval/out/bench_retrieval-<set>.png, all numbers to eval/out/bench_retrieval.json.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from rag.bm25 import (  # noqa: E402
    BM25Index,
    Tokenizer,
    bm25_for_index,
    passage_tokens_text,
    reference_scorer,
)
from rag.evaluate import answer_ceiling, evaluate_retrieval  # noqa: E402
from rag.index_folder import open_index  # noqa: E402
from rag.paths import default_index, shared_data  # noqa: E402
from rag.qa_data import load_qa  # noqa: E402
from rag.report import format_table, percent, write_json  # noqa: E402
from rag.retrieve import BM25Retriever, DenseRetriever, HybridConfig, HybridRetriever  # noqa: E402

SHARED = shared_data()
KS = (1, 5, 20, 100)


def qa_sets(limit: int | None) -> dict[str, list]:
    nq = load_qa(SHARED / "nq-open" / "NQ-open.dev.jsonl", limit=limit)
    wq = [ex for name in ("trainmodel", "val", "devtest") for ex in load_qa(SHARED / "webquestions" / f"{name}.json")]
    return {"NQ-open dev": nq, "WebQuestions": wq[:limit] if limit else wq}


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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", default=str(default_index()))
    parser.add_argument("--limit", type=int, default=None, help="first N questions of each set (quick runs)")
    parser.add_argument("--speed-questions", type=int, default=500, help="questions timed through rank-bm25")
    parser.add_argument("--out-dir", default="eval/out")
    args = parser.parse_args()

    index = open_index(args.index)
    encoder = index.load_encoder()
    bm25 = bm25_for_index(index)
    dense, sparse = DenseRetriever(index, encoder), BM25Retriever(index, bm25)
    retrievers = {
        "dense": dense,
        "bm25": sparse,
        "hybrid (rrf)": HybridRetriever(dense, sparse, HybridConfig(fusion="rrf")),
        "hybrid (linear)": HybridRetriever(dense, sparse, HybridConfig(fusion="linear")),
    }
    out_dir = Path(args.out_dir)
    summary: dict = {"index": args.index, "passages": len(index.store), "encoder": index.manifest.encoder, "bm25": bm25.config.__dict__, "sets": {}}
    for name, examples in qa_sets(args.limit).items():
        ceiling = answer_ceiling(index.store, examples)
        report = evaluate_retrieval(retrievers, examples, KS)
        accuracy = report.accuracy()
        rows = [[r] + [percent(a) for a in accuracy[r].values()] + [f"{report.runs[r].questions_per_second:.1f}"] for r in retrievers]
        print(f"\n{name}: {len(examples)} questions, {len(index.store)} passages; answer anywhere in the corpus (ceiling): {percent(ceiling)}%")
        print(format_table(["retriever"] + [f"top-{k}" for k in KS] + ["questions/s"], rows))
        slug = name.split()[0].lower()
        report.write_plot(out_dir / f"bench_retrieval-{slug}.png", title=f"{name} on {args.index} ({len(examples)} questions)", levels={f"ceiling {percent(ceiling)}%": ceiling})
        summary["sets"][name] = {
            "questions": len(examples),
            "ceiling": ceiling,
            "accuracy": {r: {str(k): a for k, a in acc.items()} for r, acc in accuracy.items()},
            "questions_per_second": {r: run.questions_per_second for r, run in report.runs.items()},
        }
    questions = [ex.question for ex in qa_sets(args.speed_questions)["NQ-open dev"]]
    speed = bm25s_vs_rank_bm25(index, bm25, questions)
    print(f"\nBM25 speed, {speed['questions']} NQ-open questions, top-100, one process on this machine (baseline: rank-bm25 BM25Okapi, same scores)")
    print(format_table(["implementation", "questions/s"], [["rank-bm25", f"{speed['rank_bm25_qps']:.1f}"], ["bm25s", f"{speed['bm25s_qps']:.1f}"]]))
    print(f"bm25s is {speed['speedup']:.0f}x faster than rank-bm25; same top-1 passage for {speed['same_top1']} questions")
    summary["bm25_speed"] = speed
    print(f"\nwrote {write_json(out_dir / 'bench_retrieval.json', summary)} and plots in {out_dir}/", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
