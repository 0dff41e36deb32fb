"""When an answer is too unsure to be printed as one: the span reader's "not sure" threshold.

The span reader's score is p(answer | question) marginalized over the passages read. Below
SPAN_READER_NOT_SURE_BELOW its answers were right less than half the time on questions no model
was trained or tuned on: `rag ask` and the demo then say "not sure" and show the answer as a
guess, instead of printing a wrong answer as if it were right. Generators' scores are on another
scale and have no threshold (0: always an answer).
"""
from __future__ import annotations

from rag.types import Answer

# Chosen with eval/bench_misses.py's half-right rule on the 1,021 held-out training questions
# (DPR NQ dev / TriviaQA dev / WebQuestions train, the retriever's holdout) over indexes/wiki2015,
# k=10, default pipeline: answers scored below it were right less than half the time.
SPAN_READER_NOT_SURE_BELOW = 0.30


def not_sure_below(reader) -> float:
    """The threshold that fits `reader`: the span reader's calibrated one, 0 (none) for any other."""
    from rag.read import SpanReader

    return SPAN_READER_NOT_SURE_BELOW if isinstance(reader, SpanReader) else 0.0


def is_sure(answer: Answer | None, threshold: float) -> bool:
    """An answer to print as one: there is text, and its probability reaches the threshold."""
    return answer is not None and bool(answer.text.strip()) and answer.score >= threshold
