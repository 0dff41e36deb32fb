"""answer(questions) = retrieve -> read: the one path the CLI, demo.py and eval/ all call."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from rag.retrieve import Retriever
from rag.types import Answer, Hit


class Reader(Protocol):
    """Reads the retrieved passages of each question and returns one Answer per question.

    Implementations: the extractive span reader (rag/read.py) and the RAG generator (rag/generate.py).
    Both marginalize over the passages they are given, using the hits' retrieval scores.
    """

    def read(self, questions: list[str], hits: list[list[Hit]]) -> list[Answer]: ...


@dataclass
class Pipeline:
    retriever: Retriever
    reader: Reader
    k: int = 10

    def answer(self, questions: list[str], k: int | None = None) -> list[Answer]:
        hits = self.retriever.retrieve(list(questions), k or self.k)
        return self.reader.read(list(questions), hits)
