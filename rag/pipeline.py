"""answer(questions) = retrieve -> read: the one path the CLI, demo.py and eval/ all call."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from rag.retrieve import Retriever
from rag.types import Answer, Hit, RagError

MAX_QUESTION_CHARS = 500  # questions are cut here: the reader reads question + passage in 256 tokens; keeps a 100 KB paste fast


@dataclass(frozen=True)
class CheckedQuestion:
    text: str  # what the pipeline is asked
    notes: tuple[str, ...] = ()  # what was changed, to tell the user


def check_question(question: str | None, max_chars: int = MAX_QUESTION_CHARS) -> CheckedQuestion:
    """Empty or whitespace-only questions are refused; very long ones are cut, with a note saying so."""
    text = " ".join((question or "").split())
    if not text:
        raise RagError("Type a question first.")
    if len(text) > max_chars:
        cut = text[:max_chars].rsplit(" ", 1)[0] or text[:max_chars]
        return CheckedQuestion(cut, (f"Your question is {len(question or ''):,} characters long; only the first {len(cut):,} were used (the models read a few hundred tokens).",))
    return CheckedQuestion(text)


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


def load_reader(spec: str = "default", device: str | None = None, generator: str | None = None, max_length: int | None = None, precision: str = "auto") -> Reader:
    """The one place a reader is chosen.

    spec:
      "default"                     the shipped span reader (models/reader, trained on SQuAD and open-domain
                                    QA; see rag.paths), else the UNTRAINED MiniLM with a random span head (with a warning)
      a folder                      a `rag train` checkpoint, a saved span reader or generator, or a
                                    BertForQuestionAnswering-style QA model folder
      "rag-sequence" / "rag-token"  a seq2seq generator (`generator`: hub id or path; default facebook/rag-*-nq)
      anything else                 a hub QA checkpoint id (e.g. a SQuAD-tuned BERT), needs a network
    precision: auto (bf16 where the CPU/GPU runs it fast), bf16 or fp32, for the span reader.
    """
    from pathlib import Path

    from rag.paths import SHIPPED_READER, models_dir, shipped_model
    from rag.read import READER_FILE, ReaderConfig, SpanReader, warn
    from rag.train import is_checkpoint

    span_options = {"device": device, "precision": precision, **({"max_length": max_length} if max_length else {})}
    if spec in ("rag-sequence", "rag-token"):
        from rag.generate import GeneratorConfig, RagGenerator

        variant = spec.removeprefix("rag-")
        return RagGenerator(GeneratorConfig(model=generator or f"facebook/rag-{variant}-nq", variant=variant, device=device))
    if spec == "default":
        shipped = shipped_model(SHIPPED_READER)
        if shipped is not None:
            return SpanReader(ReaderConfig(model=str(shipped), **span_options))
        warn(f"no shipped reader at {models_dir() / SHIPPED_READER}: using the UNTRAINED MiniLM span reader, its answers are random spans. "
             "Train one with: rag train reader --squad SQUAD_TRAIN_FILE --out DIR, then --reader DIR/reader")
        return SpanReader(ReaderConfig(model="default", **span_options))
    path = Path(spec)
    if is_checkpoint(path):
        path = path / "reader"
    if path.is_dir() and not (path / READER_FILE).exists():
        from rag.generate import GENERATOR_FILE, RagGenerator, load_generator

        if (path / GENERATOR_FILE).exists():
            return load_generator(path, device=device)
    return SpanReader(ReaderConfig(model=str(path) if path.exists() else spec, **span_options))


def load_pipeline(index: str, reader: str = "default", k: int = 10, retriever: str = "dense", device: str | None = None, generator: str | None = None, hybrid=None,
                  precision: str = "auto") -> Pipeline:
    """Index folder + reader spec -> Pipeline. A `rag train` checkpoint brings its fine-tuned query encoder.

    `retriever` is dense, bm25 or hybrid (`hybrid`: a rag.retrieve.HybridConfig).
    """
    from rag.build import open_index
    from rag.retrieve import load_retriever
    from rag.train import is_checkpoint, load_query_encoder

    folder = open_index(index)
    encoder = None
    if is_checkpoint(reader) and retriever != "bm25":
        encoder = load_query_encoder(reader, folder, device)
    return Pipeline(load_retriever(folder, retriever, encoder=encoder, config=hybrid), load_reader(reader, device, generator, precision=precision), k)
