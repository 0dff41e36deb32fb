"""rank-bm25 as the oracle for rag.bm25's scores: the slow pure-Python BM25 that tests/test_bm25.py and
eval/bench_retrieval.py compare bm25s against (rag.bm25's docstring says how the two parameterizations meet).
A test and benchmark helper, not part of the library: rank-bm25 is a test dependency only."""
from __future__ import annotations

import math

from rag.bm25 import BM25Config


def reference_scorer(token_lists: list[list[str]], config: BM25Config = BM25Config()):
    """rank-bm25's BM25Okapi with the idf of `config.method`: the oracle for BM25Index's scores.

    `scorer.get_scores(tokens)` equals BM25Index's score for every passage (rank-bm25's, divided
    by k1 + 1 where bm25s' tf part lacks that factor). O(corpus) Python per query: for tests and
    benchmarks, not for search.
    """
    from rank_bm25 import BM25Okapi

    idf = {
        "lucene": lambda n, df: math.log(1 + (n - df + 0.5) / (df + 0.5)),
        "robertson": lambda n, df: max(0.0, math.log((n - df + 0.5) / (df + 0.5))),
        "atire": lambda n, df: math.log(n / df),
    }[config.method]

    scale = 1.0 if config.method == "atire" else config.k1 + 1  # bm25s' atire tf part keeps the (k1 + 1)

    class ReferenceBM25(BM25Okapi):
        def _calc_idf(self, nd):
            self.idf = {word: idf(self.corpus_size, df) for word, df in nd.items()}

        def get_scores(self, query):
            return super().get_scores(query) / scale

    return ReferenceBM25(token_lists, k1=config.k1, b=config.b)
