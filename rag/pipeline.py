"""answer(questions) = retrieve -> read: the one path the CLI, demo.py and eval/ all call."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from rag.readers import Reader, ReaderOptions, load_reader, load_reranker, rerank_if_installed
from rag.rerank import RerankConfig
from rag.retrieve import HybridConfig, Retriever, check_k
from rag.types import Answer, Hit, RagError

MAX_QUESTION_CHARS = 500  # questions are cut here: the reader reads question + passage in 256 tokens; keeps a 100 KB paste fast
LONGEST_WORD = 40  # how far back a cut looks for the end of a word


@dataclass(frozen=True)
class CheckedQuestion:
    text: str  # what the pipeline is asked
    notes: tuple[str, ...] = ()  # what was changed, to tell the user


def check_question(question: str | None, max_chars: int = MAX_QUESTION_CHARS) -> CheckedQuestion:
    """Empty or whitespace-only questions are refused; terminal escape sequences and control characters are
    removed before anything encodes the question (a pasted colour code is no words); very long ones are cut.
    Each change comes with a note saying so."""
    from rag.console import printable

    text = " ".join(printable(question or "").split())
    notes = ("Terminal escape sequences or control characters were removed from your question.",) if text != " ".join((question or "").split()) else ()
    if not text:
        raise RagError("Type a question first.")
    if len(text) > max_chars:
        cut = cut_at_word(text, max_chars)
        notes += (f"Your question is {len(question or ''):,} characters long; only the first {len(cut):,} were used (the models read a few hundred tokens).",)
        return CheckedQuestion(cut, notes)
    return CheckedQuestion(text, notes)


def cut_at_word(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, between two words where one is near the limit.

    It goes back at most LONGEST_WORD characters, to the last space, else to the last character
    that is not a letter or digit; with neither (Chinese, Thai, a URL) it cuts at the limit.
    Looking back for a space without that bound cut "Who is " + 616 characters of Chinese (one
    space in 623 characters) to "Who is": 6 characters.
    """
    if len(text) <= limit:
        return text
    head = text[:limit]
    if not (head[-1].isalnum() and text[limit].isalnum()):  # the limit falls between words already
        return head.rstrip()
    near = max(limit - LONGEST_WORD, 1)
    space = head.rfind(" ", near)
    if space >= near:
        return head[:space]
    other = max((i for i in range(near, limit) if not head[i].isalnum()), default=None)
    return head[: other + 1].rstrip() if other is not None else head


@dataclass(frozen=True)
class Answered:
    """One question's answer with every passage retrieved for it (the reader read the first k)."""

    answer: Answer
    hits: tuple[Hit, ...]
    retrieve_seconds: float  # this question's share of its batch's retrieval (encode + search + re-rank)
    read_seconds: float  # and of its reading


def answer_questions(retriever: Retriever, reader: Reader, questions: list[str], k: int, depth: int | None = None) -> list[Answered]:
    """Retrieve max(depth, k) passages per question, read the first k: what Pipeline.answer and the demo do."""
    questions = list(questions)
    check_k(k)
    started = time.perf_counter()
    hits = retriever.retrieve(questions, max(depth or k, k))
    retrieved = time.perf_counter()
    answers = reader.read(questions, [h[:k] for h in hits])
    if len(hits) != len(questions) or len(answers) != len(questions):
        raise RagError(f"{len(questions)} questions gave {len(hits)} hit lists and {len(answers)} answers")
    n = max(len(questions), 1)
    read = time.perf_counter() - retrieved
    return [Answered(a, tuple(h), (retrieved - started) / n, read / n) for a, h in zip(answers, hits)]


@dataclass(frozen=True)
class PipelineConfig:
    """Everything that picks a pipeline's parts: what load_pipeline builds from."""

    index: str  # an index folder (rag index build)
    reader: str = "default"  # rag.readers.load_reader's spec: default, a folder, a `rag train` checkpoint, rag-sequence, rag-token, a hub id
    k: int = 10  # passages read per question
    retriever: str = "dense"  # a rag.retrieve.RETRIEVERS name: dense, bm25, hybrid
    hybrid: HybridConfig | None = None  # the hybrid's fusion (None: HybridConfig's defaults)
    rerank: RerankConfig | None = RerankConfig()  # re-score the retriever's top passages before reading (None: no re-ranking)
    generator: str | None = None  # rag-sequence / rag-token: the seq2seq model (None: the shipped generator)
    device: str | None = None  # None: cuda when available, else cpu
    precision: str = "auto"  # auto: bf16 where the CPU/GPU runs it fast
    mmap: bool = False  # memory-map the dense index instead of reading it into RAM

    def __post_init__(self):
        check_k(self.k)


@dataclass
class Pipeline:
    retriever: Retriever
    reader: Reader
    k: int = 10
    index: object = None  # the rag.index_folder.IndexFolder retrieved from, when load_pipeline made it (for reports)
    notes: tuple[str, ...] = ()  # what the user should know about how it was assembled (a checkpoint's own query encoder)

    def __post_init__(self):
        check_k(self.k)

    def answer(self, questions: list[str], k: int | None = None, depth: int | None = None) -> list[Answered]:
        """Each question's answer and the passages retrieved for it; `depth`: retrieve more than the k read (top-k accuracy)."""
        return answer_questions(self.retriever, self.reader, questions, self.k if k is None else k, depth)  # k=0 is refused, not read as "default"


RERANK_DEFAULT = RerankConfig()  # the default pipeline re-ranks: held-out top-20 25.1 -> 26.5, top-1 10.3 -> 11.7 (eval/tune_pipeline.py)


class LoadedParts:
    """Models and indexes loaded once and shared by every pipeline given the same LoadedParts (the demo's
    retrievers, re-rankers and readers; an eval comparing readers over one retriever)."""

    def __init__(self):
        self._parts: dict = {}

    def get(self, key: tuple, load):
        if key not in self._parts:
            self._parts[key] = load()
        return self._parts[key]

    def find(self, key: tuple):
        return self._parts.get(key)


def load_pipeline(config: PipelineConfig, parts: LoadedParts | None = None, reader: Reader | None = None) -> Pipeline:
    """The one assembly of a pipeline: index, query encoder, retriever, re-ranker, reader.

    `parts`: models and indexes already loaded, shared with other pipelines. `reader`: one already in
    memory to read with (eval/ comparing readers, or decoding settings, over the same retrieval); then
    config.reader still picks the query encoder.

    The query encoder is the index's own, unless `config.reader` is a `rag train` checkpoint that
    carries a fine-tuned one: the pipeline's notes then say so. The default pipeline re-ranks with
    models/reranker, and warns and reads without it when it is not installed.
    """
    from rag.checkpoint import is_checkpoint, load_query_encoder
    from rag.encoders import EncoderConfig
    from rag.index_folder import open_index

    parts = parts or LoadedParts()
    where = str(Path(config.index).resolve())
    folder = parts.get(("index", where, config.mmap), lambda: open_index(config.index, mmap=config.mmap))
    reader = reader if reader is not None else _reader(config, parts)
    encoder, notes = None, ()
    if config.retriever != "bm25" and is_checkpoint(config.reader):
        encoder = parts.get(("query encoder", str(Path(config.reader).resolve()), where, config.device), lambda: load_query_encoder(config.reader, folder, config.device))
        notes = (f"{config.reader} carries its own fine-tuned query encoder: questions are encoded with it, not with the index's {folder.manifest.encoder}",)
    elif config.retriever != "bm25":  # the index's encoder, at the precision asked for (queries: auto = bf16 where fast)
        spec = EncoderConfig(spec=folder.manifest.encoder, device=config.device, precision=config.precision, inference_only=True)
        encoder = parts.get(("query encoder", spec, where), lambda: folder.load_encoder(spec))
    chosen = _retriever(config, folder, encoder, parts)
    rerank = rerank_if_installed(config.rerank)
    if rerank is not None:
        from rag.rerank import load_reranking

        shared = reader if config.reader == "default" else None
        reranker = parts.get(("reranker", rerank.reranker, rerank.device, rerank.precision, shared is not None), lambda: load_reranker(rerank, shared))
        chosen = load_reranking(chosen, rerank, reranker)
    return Pipeline(chosen, reader, config.k, folder, notes)


def _reader(config: PipelineConfig, parts: LoadedParts) -> Reader:
    """The reader, loaded once per LoadedParts; RAG-Sequence and RAG-Token over one generator share its model."""
    key = lambda spec: ("reader", spec, config.generator, config.device, config.precision)  # noqa: E731
    twin = {"rag-sequence": "rag-token", "rag-token": "rag-sequence"}.get(config.reader)
    loaded_twin = parts.find(key(twin)) if twin else None
    if loaded_twin is not None:
        from dataclasses import replace

        from rag.generate import RagGenerator

        variant = config.reader.removeprefix("rag-")
        return parts.get(key(config.reader), lambda: RagGenerator.from_model(replace(loaded_twin.config, variant=variant), loaded_twin.tokenizer, loaded_twin.model))
    options = ReaderOptions(config.device, config.generator, config.precision, inference_only=True)
    return parts.get(key(config.reader), lambda: load_reader(config.reader, options))


def _retriever(config: PipelineConfig, folder, encoder, parts: LoadedParts) -> Retriever:
    """dense, bm25 or hybrid; one BM25 index in memory for the bm25 and hybrid pipelines of one LoadedParts."""
    from rag.retrieve import RETRIEVERS, HybridRetriever, load_retriever

    if config.retriever not in RETRIEVERS:
        raise RagError(f"unknown retriever {config.retriever!r}; valid: {', '.join(RETRIEVERS)}")
    where = str(folder.path)
    if config.retriever == "dense":
        return load_retriever(folder, "dense", encoder)
    bm25 = parts.get(("bm25", where), lambda: load_retriever(folder, "bm25"))
    if config.retriever == "bm25":
        return bm25
    return HybridRetriever(load_retriever(folder, "dense", encoder), bm25, config.hybrid or HybridConfig())
