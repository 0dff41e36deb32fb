"""Choose the default retrieval pipeline on held-out training questions: the hybrid's fusion (RRF or
linear, and the dense weight), then whether re-ranking the top N adds to the best retriever.

    .venv/bin/python eval/tune_pipeline.py [--index indexes/default] [--retriever rag-retriever] [--rerank 100 --rerank-limit 300]

The questions are the ones `rag train retriever` keeps aside (the same files, seed and holdout as
models/retriever's card): DPR's NQ dev and TriviaQA dev topics and WebQuestions trainmodel.json,
none of them trained on and none of them a report set. Prints top-1/5/20/100 for every setting and
the best hybrid by top-20 (ties: top-5); rag.retrieve.HybridConfig's defaults are set from that
line. Then dense with and without re-ranking its top --rerank passages, on the first
--rerank-limit held-out questions. eval/bench_retrieval.py reports the choice on the report sets. Numbers go to
eval/out/tune_pipeline.json.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from rag.bm25 import bm25_for_index  # noqa: E402
from rag.encoders import SHIPPED_RETRIEVER, EncoderConfig  # noqa: E402
from rag.evaluate import evaluate_retrieval  # noqa: E402
from rag.index_folder import open_index  # noqa: E402
from rag.paths import default_index, shared_data  # noqa: E402
from rag.report import format_table, percent, write_json  # noqa: E402
from rag.rerank import RerankConfig, load_reranking  # noqa: E402
from rag.retrieve import BM25Retriever, DenseRetriever, HybridConfig, HybridRetriever  # noqa: E402
from rag.train_retriever import RetrieverTrainConfig, split_questions  # noqa: E402

KS = (1, 5, 20, 100)
WEIGHTS = (0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def main() -> int:
    data = shared_data()
    training = ",".join(str(data / f) for f in ("nq-open/topics.dpr.nq.dev.txt", "triviaqa/topics.dpr.trivia.dev.txt", "webquestions/trainmodel.json"))
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--index", default=str(default_index()))
    parser.add_argument("--retriever", default=SHIPPED_RETRIEVER, help="the dense side's query encoder (default: %(default)s)")
    parser.add_argument("--questions", default=training, help="the training files of `rag train retriever`, comma-separated")
    parser.add_argument("--holdout", type=float, default=RetrieverTrainConfig.holdout)
    parser.add_argument("--seed", type=int, default=RetrieverTrainConfig.seed)
    parser.add_argument("--rerank", type=int, default=100, help="passages re-scored per question (0: skip the re-ranking rows)")
    parser.add_argument("--reranker", default=RerankConfig.reranker, help="rerankers to compare, comma-separated: 'reader' (the shipped span reader's selection head) or span-reader folders")
    parser.add_argument("--rerank-max-lengths", default=f"{RerankConfig.max_length}", help="tokens per passage the reranker reads, comma-separated (each a row)")
    parser.add_argument("--rerank-limit", type=int, default=300, help="held-out questions the re-ranking rows run on")
    parser.add_argument("--out-dir", default="eval/out")
    args = parser.parse_args()

    index = open_index(args.index)
    held, _ = split_questions(RetrieverTrainConfig(questions=tuple(args.questions.split(",")), index=args.index, out="-", holdout=args.holdout, seed=args.seed))
    dense = DenseRetriever(index, index.load_encoder(EncoderConfig(spec=args.retriever)))
    bm25 = BM25Retriever(index, bm25_for_index(index))
    settings = {"dense": None, "bm25": None} | {f"{fusion} w={w}": HybridConfig(fusion=fusion, dense_weight=w) for fusion in ("rrf", "linear") for w in WEIGHTS}
    retrievers = {"dense": dense, "bm25": bm25} | {name: HybridRetriever(dense, bm25, config) for name, config in settings.items() if config}
    report = evaluate_retrieval(retrievers, held, KS)
    accuracy = report.accuracy()
    print(f"{len(held)} held-out training questions ({args.questions}), {len(index.store)} passages")
    print(format_table(["retriever"] + [f"top-{k}" for k in KS], [[r] + [percent(a) for a in acc.values()] for r, acc in accuracy.items()]))
    hybrids = [name for name, config in settings.items() if config]
    best = max(hybrids, key=lambda r: (accuracy[r][20], accuracy[r][5]))
    print(f"best hybrid by top-20: {best} (top-20 {percent(accuracy[best][20])}, dense alone {percent(accuracy['dense'][20])})")
    summary = {"questions": len(held), "files": args.questions, "retriever": args.retriever, "best": best,
               "best_config": settings[best].__dict__, "accuracy": {r: {str(k): a for k, a in acc.items()} for r, acc in accuracy.items()}}
    if args.rerank:
        from rag.pipeline import load_reranker

        head = held[: args.rerank_limit]
        rows = {"dense": dense}
        for name in args.reranker.split(","):
            reranker = load_reranker(RerankConfig(reranker=name))
            for tokens in (int(t) for t in args.rerank_max_lengths.split(",")):
                config = RerankConfig(depth=args.rerank, reranker=name, max_length=tokens)
                rows[f"dense + rerank {args.rerank} ({name}, {tokens} tokens)"] = load_reranking(dense, config, reranker)
        small = evaluate_retrieval(rows, head, KS)
        reranked = small.accuracy()
        print(f"\nre-ranking, first {len(head)} held-out questions")
        print(format_table(["retriever"] + [f"top-{k}" for k in KS] + ["questions/s"],
                           [[r] + [percent(a) for a in acc.values()] + [f"{small.runs[r].questions_per_second:.2f}"] for r, acc in reranked.items()]))
        summary["reranked"] = {"questions": len(head), "rerankers": args.reranker, "max_lengths": args.rerank_max_lengths, "depth": args.rerank,
                               "accuracy": {r: {str(k): a for k, a in acc.items()} for r, acc in reranked.items()},
                               "questions_per_second": {r: run.questions_per_second for r, run in small.runs.items()}}
    print(f"wrote {write_json(Path(args.out_dir) / 'tune_pipeline.json', summary)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
