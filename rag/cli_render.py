"""What `rag search` and `rag ask` print for people: each score named, the ranking said, the evidence listed;
and what `rag eval retrieval` is about to run, with an estimate of how long.

Pure functions of hits and answers (no models), as rag/demo_render.py is for the demo page. The JSON
forms are the hits' and answers' own to_json (rag/types.py), with the fields `ranking_json` adds.
"""
from __future__ import annotations

from rag.console import printable

SCORE_NAMES = {"dense": "similarity", "bm25": "BM25", "hybrid": "fused"}  # what a retriever's hit score is, in a bracket
RANKED_BY = {"dense": "dense similarity", "bm25": "BM25", "hybrid": "hybrid fusion of dense and BM25"}
NO_MATCH = "no passage shares a word with the question"
MARK = "marked >>like this<<"


def reranking(retriever):
    """The rag.rerank.RerankingRetriever when `retriever` is one, else None."""
    from rag.rerank import RerankingRetriever

    return retriever if isinstance(retriever, RerankingRetriever) else None


def score_label(hit, kind: str) -> str:
    """`reranker 14.20` for a re-ranked hit (the score that ordered it), else the retriever's: `similarity 0.6123`, `BM25 12.30`, `fused 0.8000`."""
    if hit.rerank_score is not None:
        return f"reranker {hit.rerank_score:.2f}"
    name = SCORE_NAMES.get(kind, "score")
    return f"{name} {hit.score:.2f}" if kind == "bm25" else f"{name} {hit.score:.4f}"  # BM25 scores run to 10-30


def ranked_by(kind: str, retriever, reranker: str) -> str:
    """How the passages were ordered: "ranked by dense similarity, re-ranked by rag-reranker from the top 50 (...)"."""
    text = f"ranked by {RANKED_BY.get(kind, kind)}"
    r = reranking(retriever)
    if r is None:
        return text
    formula = f"{r.retrieval_weight:g} x {SCORE_NAMES.get(kind, 'retrieval score')} + cross-encoder logit" if r.retrieval_weight else "the cross-encoder's logit"
    return f"{text}, re-ranked by {printable(reranker)} from the top {r.depth} (reranker score = {formula})"


def ranking_json(retriever, reranker: str) -> dict:
    """The fields `rag search --json` adds: how the hits were ordered."""
    r = reranking(retriever)
    return {"reranker": reranker if r else None, "reranked_from": r.depth if r else 0}


def shortfall(kind: str, found: int, k: int, index_size: int) -> str | None:
    """Why fewer than k passages came back (None when k did): the index is smaller, or BM25 matched fewer."""
    if found >= k:
        return None
    if k > index_size and found >= index_size:
        return f"the index holds only {index_size:,} passage{'s' * (index_size != 1)}"
    if kind == "bm25":
        return NO_MATCH if found == 0 else f"only {found:,} passage{'s share' if found != 1 else ' shares'} a word with the question"
    return f"the retriever returned only {found:,}"


def print_search(hits, kind: str, retriever, reranker: str, k: int, index_size: int, width: int) -> None:
    """`rag search`: a header saying how the passages were ranked, then each one numbered with its named score."""
    short = shortfall(kind, len(hits), k, index_size)
    if not hits:
        print(short or NO_MATCH)
        return
    print(f"{len(hits)} passage{'s' * (len(hits) != 1)}{f' ({short})' if short else ''}, {ranked_by(kind, retriever, reranker)}:")
    for hit in hits:
        print_hit(f"{hit.rank:>3}. [{score_label(hit, kind)}]", hit, hit.passage.text, width)


def print_answer(answer, hits, kind: str, retriever, reranker: str, k: int, index_size: int, width: int, not_sure_below: float = 0.0) -> None:
    """`rag ask`: the answer, its probability over the passages really read, how they were ranked, and the evidence
    in reading order (numbered 1.., each with its rank among the passages read and the score that ranked it).
    Below `not_sure_below` (the reader's threshold) the answer is printed as a guess under "not sure"."""

    read = len(hits)
    short = shortfall(kind, read, k, index_size)
    if answer.text.strip() and not answer.is_sure(not_sure_below):
        print(f"answer: not sure (best guess: {printable(answer.text)}, p {answer.score:.2f}, below the not-sure threshold {not_sure_below:.2f})")
    else:
        print(f"answer: {printable(answer.text) or '(none)'}")
    if not read:
        print(f"score:  {answer.score:.4f}  (no passage to read: {short})")
        return
    print(f"score:  {answer.score:.4f}  (p(answer | question), marginalized over the {read} passage{'s' * (read != 1)} read"
          f"{f'; -k {k} asked for more: {short}' if short else ''})")
    print(f"passages read: the top {read}, {ranked_by(kind, retriever, reranker)}")
    marked = _answer_spans(answer)
    evidence = {h.passage.id for h in answer.evidence}
    shown = [h for h in hits if h.passage.id in evidence]  # reading order, not the reader's
    shares = {w.passage_id: w.contribution for w in answer.weights}
    if not shown:
        print(f"evidence: none of the {read} passages read holds an answer")
        return
    if shares:
        print(f"evidence: the {len(shown)} passages read, each with its share of the answer's probability (the answer {MARK} where it occurs):")
    else:
        print(f"evidence: {len(shown)} of the {read} passages read hold{'s' * (len(shown) == 1)} the answer ({MARK}):")
    for n, hit in enumerate(shown, 1):
        text = hit.passage.text
        for span in sorted(marked.get(hit.passage.id, ()), key=lambda s: -s.start):  # mark the answer: >>text<<
            text = f"{text[: span.start]}>>{text[span.start : span.end]}<<{text[span.end :]}"
        share = f" share {shares[hit.passage.id]:.2f}" if hit.passage.id in shares else ""
        print_hit(f"{n:>3}. rank {hit.rank} of {read} [{score_label(hit, kind)}]{share}", hit, text, width)  # marked first: spans are raw-text offsets


def _answer_spans(answer) -> dict:
    """passage id -> the answer's spans in it, best first; a span overlapping a better one is not marked again."""
    spans: dict = {}
    for span in answer.spans:
        kept = spans.setdefault(span.passage_id, [])
        if all(span.end <= k.start or span.start >= k.end for k in kept):
            kept.append(span)
    return spans


def print_hit(head: str, hit, text: str, width: int) -> None:
    """One passage: `head` (number, rank, score), title and id, then its text clipped to `width` characters."""
    print(f"{head} {printable(hit.passage.title)} ({printable(hit.passage.id)})")
    print(f"     {clip(printable(text), width)}")


def clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def eval_plan(names: list[str], questions: int, reranked: list[str], seconds_per_question: float) -> str:
    """What `rag eval retrieval` will run, and (with re-ranking) how long the re-ranked configurations take."""
    plan = f"rag eval retrieval: {len(names)} configuration{'s' * (len(names) != 1)} x {questions:,} questions: {', '.join(names)}"
    if not reranked:
        return plan
    total = seconds_per_question * questions * len(reranked)
    return (f"{plan}\nre-ranking takes ~{seconds_per_question:.2f} s a question here (measured on the first {min(questions, 3)}): "
            f"about {duration(total)} for the {len(reranked)} re-ranked configuration{'s' * (len(reranked) != 1)} "
            "(--rerank 0 leaves them out, --limit N takes the first N questions)")


def duration(seconds: float) -> str:
    """12 s, 4.5 min, 1.6 h."""
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"
