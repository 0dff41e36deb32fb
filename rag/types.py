"""Types shared by every stage: what flows from the corpus to the answer."""
from __future__ import annotations

from dataclasses import dataclass, field


class RagError(Exception):
    """A problem the user can fix (bad input, missing index, wrong encoder).

    The CLI prints its message and exits with status 2, never a traceback.
    """


TITLE_SEPARATOR = " [SEP] "  # between title and passage text in a reader's second segment


def title_prefix(title: str, read_titles: bool = True) -> str:
    """What precedes a passage's text in a reader's second segment: `title [SEP] ` ("" when untitled or titles are off)."""
    return f"{title}{TITLE_SEPARATOR}" if title and read_titles else ""


@dataclass(frozen=True)
class Passage:
    id: str  # stable, unique within a store
    title: str
    text: str


@dataclass(frozen=True)
class Hit:
    passage: Passage
    score: float  # the retriever's (readers turn it into p(z|q)); after re-ranking still the retriever's
    rank: int  # 1-based position in the result list
    rerank_score: float | None = None  # re-ranked hits: the score that ordered them (rag.rerank), else None

    def to_json(self) -> dict:
        data = {"rank": self.rank, "score": self.score, "id": self.passage.id, "title": self.passage.title, "text": self.passage.text}
        return data if self.rerank_score is None else {**data, "rerank_score": self.rerank_score}


@dataclass(frozen=True)
class Span:
    """An answer span: character offsets into `passage.text` (end exclusive)."""

    passage_id: str
    start: int
    end: int


@dataclass(frozen=True)
class PassageWeight:
    """How one passage counted in a marginalized answer (the RAG generator's)."""

    passage_id: str
    prior: float  # p(z | question): the retrieval distribution over the passages read
    contribution: float  # p(z | question, answer): that passage's share of p(answer | question)


@dataclass(frozen=True)
class Answer:
    question: str
    text: str
    score: float  # marginal probability p(answer | question) over the passages read, in [0, 1]
    evidence: tuple[Hit, ...] = ()  # passages that support the answer, best first
    spans: tuple[Span, ...] = ()  # where the answer sits in the evidence, when known
    weights: tuple[PassageWeight, ...] = ()  # per passage read, when the reader marginalizes explicitly (RAG)

    def is_sure(self, threshold: float) -> bool:
        """An answer to print as one: there is text, and its probability reaches `threshold` (a reader's not_sure_below)."""
        return bool(self.text.strip()) and self.score >= threshold

    def to_json(self) -> dict:
        """The answer as data: text, probability, and the evidence with the answer's character offsets in each."""
        spans: dict[str, list[list[int]]] = {}
        for span in self.spans:
            spans.setdefault(span.passage_id, []).append([span.start, span.end])
        weights = {w.passage_id: {"p_passage": w.prior, "contribution": w.contribution} for w in self.weights}
        evidence = [{**h.to_json(), "answer_spans": spans.get(h.passage.id, []), **weights.get(h.passage.id, {})} for h in self.evidence]
        return {"question": self.question, "answer": self.text, "probability": self.score, "evidence": evidence}


@dataclass(frozen=True)
class QAExample:
    id: str
    question: str
    answers: tuple[str, ...] = field(default_factory=tuple)
