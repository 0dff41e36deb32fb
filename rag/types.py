"""Types shared by every stage: what flows from the corpus to the answer."""
from __future__ import annotations

from dataclasses import dataclass, field


class RagError(Exception):
    """A problem the user can fix (bad input, missing index, wrong encoder).

    The CLI prints its message and exits with status 2, never a traceback.
    """


@dataclass(frozen=True)
class Passage:
    id: str  # stable, unique within a store
    title: str
    text: str


@dataclass(frozen=True)
class Hit:
    passage: Passage
    score: float
    rank: int  # 1-based position in the result list


@dataclass(frozen=True)
class Span:
    """An answer span: character offsets into `passage.text` (end exclusive)."""

    passage_id: str
    start: int
    end: int


@dataclass(frozen=True)
class Answer:
    question: str
    text: str
    score: float  # marginal probability p(answer | question) over the passages read, in [0, 1]
    evidence: tuple[Hit, ...] = ()  # passages that support the answer, best first
    spans: tuple[Span, ...] = ()  # where the answer sits in the evidence, when known


@dataclass(frozen=True)
class QAExample:
    id: str
    question: str
    answers: tuple[str, ...] = field(default_factory=tuple)
