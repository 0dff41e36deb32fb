"""Choose the default retrieval pipeline on held-out training questions: the hybrid's fusion (RRF or
linear, and the dense weight), then how deep to re-rank and how much the retrieval score weighs.

    .venv/bin/python eval/tune_pipeline.py [--index indexes/default] [--retriever rag-retriever] [--rerank-depths 20,30,50,100 --rerank-limit 0]

The questions are the ones `rag train retriever` keeps aside (the same files, seed and holdout as
models/retriever's card): DPR's NQ dev and TriviaQA dev topics and WebQuestions trainmodel.json,
none of them trained on and none of them a report set. Prints top-1/5/20/100 for every setting and
the best hybrid by top-20 (ties: top-5); rag.retrieve.HybridConfig's defaults are set from that
line. Then dense with and without re-ranking, for every reranker x tokens x depth x weight, on the
first --rerank-limit held-out questions (each passage is scored once and reused across depths and
weights), and the best by top-20 (ties: top-5); rag.rerank.RerankConfig's defaults are set from that
line. eval/bench_retrieval.py reports the choice on the report sets. Numbers go to eval/out/tune_pipeline.json.
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
from rag.rerank import RerankConfig, RerankingRetriever  # noqa: E402
from rag.retrieve import BM25Retriever, DenseRetriever, HybridConfig, HybridRetriever  # noqa: E402
from rag.train.retriever import RetrieverTrainConfig, split_questions  # noqa: E402

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
    parser.add_argument("--rerank-depths", default="20,30,50,100", help="passages re-scored per question, comma-separated (0: skip the re-ranking rows)")
    parser.add_argument("--rerank-weights", default="0,10,20,30", help="retrieval-score weights to try, comma-separated (the reader's own is 20)")
    parser.add_argument("--reranker", default=RerankConfig.reranker, help="rerankers to compare, comma-separated: 'reader' (the shipped span reader's selection head) or span-reader folders")
    parser.add_argument("--rerank-max-lengths", default=f"{RerankConfig.max_length}", help="tokens per passage the reranker reads, comma-separated (each a row)")
    parser.add_argument("--rerank-limit", type=int, default=300, help="held-out questions the re-ranking rows run on (0: all)")
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
    depths = sorted({int(d) for d in args.rerank_depths.split(",") if int(d) > 0}, reverse=True)  # deepest first: it scores every passage the others reuse
    if depths:
        from rag.readers import load_reranker

        head = held[: args.rerank_limit] if args.rerank_limit else held
        rows, settings = {"dense": dense}, {}
        for name in args.reranker.split(","):
            reranker = ScoredOnce(load_reranker(RerankConfig(reranker=name)))
            for tokens in (int(t) for t in args.rerank_max_lengths.split(",")):
                for depth in depths:
                    for weight in (float(w) for w in args.rerank_weights.split(",")):
                        row = f"dense + rerank {depth} ({name}, {tokens} tokens, weight {weight:g})"
                        rows[row] = RerankingRetriever(dense, reranker, depth, weight, tokens)
                        settings[row] = {"reranker": name, "max_length": tokens, "depth": depth, "retrieval_weight": weight}
        small = evaluate_retrieval(rows, head, KS)
        reranked = small.accuracy()
        print(f"\nre-ranking, {len(head)} held-out questions (questions/s: the first row of each reranker scores every passage, the rest reuse its scores)")
        print(format_table(["retriever"] + [f"top-{k}" for k in KS] + ["questions/s"],
                           [[r] + [percent(a) for a in acc.values()] + [f"{small.runs[r].questions_per_second:.2f}"] for r, acc in reranked.items()]))
        best_rerank = max(settings, key=lambda r: (reranked[r][20], reranked[r][5]))
        print(f"best re-ranking by top-20: {best_rerank} (top-20 {percent(reranked[best_rerank][20])}, dense alone {percent(reranked['dense'][20])})")
        summary["reranked"] = {"questions": len(head), "rerankers": args.reranker, "max_lengths": args.rerank_max_lengths, "depths": depths,
                               "weights": args.rerank_weights, "best": best_rerank, "best_config": settings[best_rerank],
                               "accuracy": {r: {str(k): a for k, a in acc.items()} for r, acc in reranked.items()},
                               "questions_per_second": {r: run.questions_per_second for r, run in small.runs.items()}}
    print(f"wrote {write_json(Path(args.out_dir) / 'tune_pipeline.json', summary)}", file=sys.stderr)
    return 0


class ScoredOnce:
    """A reranker that scores each (question, passage, tokens) once: every depth and weight reuses the deepest row's logits."""

    def __init__(self, reranker):
        self.reranker, self.logits = reranker, {}

    def rerank_logits(self, question, passages, max_length=None):
        missing = [p for p in passages if (question, p.id, max_length) not in self.logits]
        for passage, logit in zip(missing, self.reranker.rerank_logits(question, missing, max_length) if missing else []):
            self.logits[(question, passage.id, max_length)] = float(logit)
        return [self.logits[(question, p.id, max_length)] for p in passages]


if __name__ == "__main__":
    sys.exit(main())
