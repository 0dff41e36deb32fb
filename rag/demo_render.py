"""The demo page's HTML and JSON: an answer, its passages with the answer marked, what each score means.

Pure functions of a rag.app.DemoResult (no Gradio, no models), so they are tested on their own.
"""
from __future__ import annotations

import html

from rag.types import Span

SOURCE_DEPTH = 100  # how deep the page looks up a fused passage's rank in each of the two rankings (rag.app._source_ranks)


def result_json(result: DemoResult) -> dict:
    """What the JSON API returns for one question."""
    base = {"question": result.question, "error": result.error, "notes": list(result.notes), "seconds": result.seconds, "retriever": result.retriever,
            "reranked_from": result.reranked_from, "reader": result.reader}
    if result.answer is None:
        return {**base, "answer": "", "probability": 0.0, "sure": False, "not_sure_below": result.not_sure_below, "passages": [h.to_json() for h in result.hits]}
    data = result.answer.to_json()
    read = {e["id"]: {k: v for k, v in e.items() if k in ("answer_spans", "p_passage", "contribution")} for e in data["evidence"]}
    passages = [{**h.to_json(), "answer_spans": [], **read.get(h.passage.id, {})} for h in result.hits]  # retrieval order
    return {**base, "answer": data["answer"], "probability": data["probability"], "sure": result.answer.is_sure(result.not_sure_below),
            "not_sure_below": result.not_sure_below, "passages": passages}


def highlight(text: str, spans: list[Span]) -> str:
    """HTML of `text` with each span (character offsets) wrapped in <mark>; overlapping or invalid spans are skipped."""
    parts, at = [], 0
    for span in sorted(spans, key=lambda s: (s.start, s.end)):
        if span.start < at or not (0 <= span.start < span.end <= len(text)):
            continue
        parts += [html.escape(text[at : span.start]), f'<mark class="answer-span">{html.escape(text[span.start : span.end])}</mark>']
        at = span.end
    parts.append(html.escape(text[at:]))
    return "".join(parts)


def render_answer(result: DemoResult) -> str:
    notes = "".join(f'<p class="rag-note">{html.escape(n)}</p>' for n in result.notes)
    if result.error:
        return f'<div class="rag-message">{html.escape(result.error)}</div>'
    if result.answer is None or not result.answer.text.strip():
        return f'<div class="rag-answer rag-no-answer" data-seconds="{result.seconds:.4f}"><p>No answer found in the retrieved passages.</p>{notes}</div>'
    a = result.answer
    where = len({s.passage_id for s in a.spans})
    found = f" · in {where} of {len(result.hits)} passages" if where else ""
    sure = a.is_sure(result.not_sure_below)
    label = "Answer" if sure else f"Not sure · best guess (score below {result.not_sure_below:.2f})"
    return (
        f'<div class="rag-answer" data-sure="{str(sure).lower()}" data-score="{a.score:.6g}" data-seconds="{result.seconds:.4f}">'
        f'<div class="rag-answer-label">{html.escape(label)}</div>'
        f'<div class="rag-answer-text">{html.escape(a.text)}</div>'
        f'<div class="rag-answer-score">score {a.score:.3f}{found} · {result.seconds:.2f} s '
        f'(retrieve {1000 * result.retrieve_seconds:.0f} ms, read {1000 * (result.seconds - result.retrieve_seconds):.0f} ms)</div>{notes}</div>'
    )


def render_passages(result: DemoResult) -> str:
    if not result.hits:
        return ""
    spans = list(result.answer.spans) if result.answer else []
    weights = {w.passage_id: w for w in result.answer.weights} if result.answer else {}
    cards = []
    for hit in result.hits:
        mine = [s for s in spans if s.passage_id == hit.passage.id]
        weight = weights.get(hit.passage.id)
        share = (f'<span class="rag-weight" title="p(z|q): how likely retrieval makes this passage; share: p(z|q,answer), its part of the answer\'s probability">'
                 f'p(z|q) {weight.prior:.2f} · share {weight.contribution:.2f}</span>') if weight else ""
        cls = "rag-card has-answer" if mine else "rag-card"
        cards.append(
            f'<div class="{cls}"><div class="rag-card-head"><span class="rag-rank">#{hit.rank}</span> '
            f'<span class="rag-title">{html.escape(hit.passage.title)}</span>'
            f'<span class="rag-score" title="{SCORE_MEANING.get(result.retriever, "")}">{_score_label(result.retriever, hit.score, result.source_ranks.get(hit.passage.id))}</span>{share}</div>'
            f'<div class="rag-text">{highlight(hit.passage.text, mine)}</div></div>'
        )
    reranked = f", re-ranked by the cross-encoder from the retriever's top {result.reranked_from}" if result.reranked_from else ""
    return f'<div class="rag-cards"><div class="rag-cards-label">Top {len(result.hits)} passages{reranked}</div>{"".join(cards)}</div>'


# What a card's score means, per retriever (shown as the score's tooltip).
SCORE_MEANING = {
    "dense": "cosine similarity of the question and passage embeddings (1 = same meaning)",
    "bm25": "BM25 term-match score (higher = more of the question's rare words)",
    "hybrid": "fusion of the dense and BM25 results (by default 0.8 x dense + 0.2 x BM25, each score min-max normalized over its top 100)",
}


def _score_label(retriever: str, score: float, ranks: dict | None = None) -> str:
    if retriever == "dense":
        return f"similarity {score:.2f}"
    if retriever == "hybrid" and ranks:  # ranks say what a fused score cannot
        shown = " · ".join(f"{'BM25' if name == 'bm25' else name} #{rank}" if rank else f"{'BM25' if name == 'bm25' else name} not in top {SOURCE_DEPTH}" for name, rank in ranks.items())
        return f"{shown} (fused {score:.4f})"
    if retriever == "hybrid":
        return f"fused score {score:.4f} (dense + BM25)"
    return f"{retriever.upper() or 'retrieval'} score {score:.2f}"


CSS = """
.rag-message { padding: 12px 16px; border-radius: 8px; background: #fff4e5; color: #663c00; white-space: pre-wrap; }
.rag-answer { padding: 12px 16px; border-radius: 8px; background: #eef6ff; }
.rag-answer[data-sure="false"] { background: #f3f3f3; }
.rag-answer-label, .rag-cards-label { font-size: 0.8em; text-transform: uppercase; letter-spacing: 0.05em; opacity: 0.7; }
.rag-answer-text { font-size: 1.5em; font-weight: 600; }
.rag-answer-score { opacity: 0.8; }
.rag-note { font-size: 0.9em; opacity: 0.8; margin: 4px 0 0; }
.rag-cards { display: flex; flex-direction: column; gap: 8px; }
.rag-card { border: 1px solid #d0d7de; border-radius: 8px; padding: 10px 14px; }
.rag-card.has-answer { border-color: #bf8700; }
.rag-card-head { display: flex; gap: 8px; align-items: baseline; margin-bottom: 4px; }
.rag-title { font-weight: 600; flex: 1; }
.rag-rank, .rag-score, .rag-weight { font-size: 0.85em; opacity: 0.7; }
mark.answer-span { background: #ffe58f; color: inherit; padding: 0 2px; border-radius: 3px; }
"""
