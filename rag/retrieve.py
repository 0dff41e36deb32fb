"""Retrievers: `retrieve(questions, k) -> list[list[Hit]]`, one list of ranked hits per question."""
from __future__ import annotations

from typing import Protocol

from rag.build import IndexFolder
from rag.encoders import Encoder
from rag.types import Hit


class Retriever(Protocol):
    def retrieve(self, questions: list[str], k: int) -> list[list[Hit]]: ...


class DenseRetriever:
    """Questions -> query vectors -> FAISS inner-product search over the index's passages."""

    def __init__(self, index: IndexFolder, encoder: Encoder | None = None):
        self.index = index
        self.encoder = encoder or index.load_encoder()

    def retrieve(self, questions: list[str], k: int) -> list[list[Hit]]:
        return self.index.search(self.encoder.encode_queries(list(questions)), k)
