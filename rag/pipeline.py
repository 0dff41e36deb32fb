"""answer(questions) = retrieve -> read: the one path the CLI, demo.py and eval/ all call."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from rag.checkpoint import CHECKPOINT_FILE
from rag.generate import GENERATOR_FILE
from rag.read import READER_FILE
from rag.rerank import RerankConfig
from rag.retrieve import Retriever, check_k
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
    index: object = None  # the rag.index_folder.IndexFolder retrieved from, when load_pipeline made it (for reports)

    def __post_init__(self):
        check_k(self.k)

    def answer(self, questions: list[str], k: int | None = None) -> list[Answer]:
        hits = self.retriever.retrieve(list(questions), self.k if k is None else k)  # k=0 is refused, not read as "default"
        return self.reader.read(list(questions), hits)


@dataclass(frozen=True)
class ReaderOptions:
    device: str | None = None  # None: cuda when available, else cpu
    generator: str | None = None  # rag-sequence / rag-token: the seq2seq model (folder, hub id or path; default: the shipped generator)
    precision: str = "auto"  # span reader: auto (bf16 where the CPU/GPU runs it fast), bf16 or fp32
    inference_only: bool = False  # answering only (ask, search, demo, eval): a span reader loads without transformers (rag/bert.py), a faster start


def load_reader(spec: str = "default", options: ReaderOptions = ReaderOptions()) -> Reader:
    """The one place a reader is chosen.

    spec:
      a name in NAMED_READERS       "default": the shipped span reader (models/reader; see rag.paths), else
                                    the UNTRAINED MiniLM with a random span head (with a warning);
                                    "rag-sequence" / "rag-token": a seq2seq generator (options.generator)
      a folder                      chosen by the type header it holds (READER_FOLDERS): a `rag train`
                                    checkpoint, a span reader, a generator; else a transformers QA model folder
      anything else                 a hub QA checkpoint id (e.g. a SQuAD-tuned BERT), needs a network
    A new reader is one module plus one entry in NAMED_READERS or READER_FOLDERS.
    """
    from pathlib import Path

    from rag.paths import looks_like_a_path

    if spec in NAMED_READERS:
        return NAMED_READERS[spec](options)
    path = Path(spec)
    if path.is_dir():
        for header, load in READER_FOLDERS.items():
            if (path / header).exists():
                return load(path, options)
    elif looks_like_a_path(spec):
        raise RagError(f"--reader {spec}: no such folder (a reader is a folder, a `rag train` checkpoint, 'default', rag-sequence, rag-token or a hub id)")
    return _span_reader(spec, options)


def _span_reader(model, options: ReaderOptions) -> Reader:
    from rag.read import ReaderConfig, SpanReader

    return SpanReader(ReaderConfig(model=str(model), device=options.device, precision=options.precision, inference_only=options.inference_only))


def _default_reader(options: ReaderOptions) -> Reader:
    from rag.paths import SHIPPED_READER, models_dir, shipped_model
    from rag.console import warn

    shipped = shipped_model(SHIPPED_READER)
    if shipped is not None:
        return _span_reader(shipped, options)
    warn(f"no shipped reader at {models_dir() / SHIPPED_READER}: using the UNTRAINED MiniLM span reader, its answers are random spans. "
         "Train one with: rag train reader --squad SQUAD_TRAIN_FILE --out DIR, then --reader DIR/reader")
    return _span_reader("default", options)


def _rag_generator(variant: str):
    """RAG-Sequence / RAG-Token with options.generator, else the shipped generator (models/generator),
    else the hub's facebook/rag-<variant>-nq (needs a network)."""

    def load(options: ReaderOptions) -> Reader:
        from pathlib import Path

        from rag.generate import GeneratorConfig, RagGenerator, load_generator
        from rag.paths import SHIPPED_GENERATOR, shipped_model

        saved = Path(options.generator) if options.generator else shipped_model(SHIPPED_GENERATOR)
        if saved is not None and (saved / GENERATOR_FILE).exists():  # a generator folder keeps its settings
            return load_generator(saved, device=options.device, variant=variant)
        return RagGenerator(GeneratorConfig(model=options.generator or f"facebook/rag-{variant}-nq", variant=variant, device=options.device))

    return load


def _generator_folder(path, options: ReaderOptions) -> Reader:
    from rag.generate import load_generator

    return load_generator(path, device=options.device)


def _checkpoint_reader(path, options: ReaderOptions) -> Reader:
    return load_reader(str(path / "reader"), options)


NAMED_READERS = {"default": _default_reader, "rag-sequence": _rag_generator("sequence"), "rag-token": _rag_generator("token")}
READER_FOLDERS = {CHECKPOINT_FILE: _checkpoint_reader, READER_FILE: _span_reader, GENERATOR_FILE: _generator_folder}  # type header -> loader


RERANK_DEFAULT = RerankConfig()  # the default pipeline re-ranks: held-out top-20 25.1 -> 26.5, top-1 10.3 -> 11.7 (eval/tune_pipeline.py)


def load_pipeline(index: str, reader: str = "default", k: int = 10, retriever: str = "dense", device: str | None = None, generator: str | None = None, hybrid=None,
                  precision: str = "auto", rerank: RerankConfig | None = RERANK_DEFAULT) -> Pipeline:
    """Index folder + reader spec -> Pipeline. A `rag train` checkpoint brings its fine-tuned query encoder.

    `retriever` is dense, bm25 or hybrid (`hybrid`: a rag.retrieve.HybridConfig); `rerank`, a
    rag.rerank.RerankConfig, re-scores its top passages with a cross-encoder before reading (the
    default pipeline does, with models/reranker, and warns and reads without it when it is not
    installed; None: no re-ranking).
    """
    from rag.checkpoint import is_checkpoint, load_query_encoder
    from rag.encoders import EncoderConfig
    from rag.index_folder import open_index
    from rag.retrieve import load_retriever

    folder = open_index(index)
    encoder = None
    if is_checkpoint(reader) and retriever != "bm25":
        encoder = load_query_encoder(reader, folder, device)
    elif retriever != "bm25":  # the index's encoder, at the precision asked for (queries: auto = bf16 where fast)
        encoder = folder.load_encoder(EncoderConfig(spec=folder.manifest.encoder, device=device, precision=precision, inference_only=True))
    chosen = load_retriever(folder, retriever, encoder=encoder, config=hybrid)
    reading = load_reader(reader, ReaderOptions(device, generator, precision, inference_only=True))
    rerank = rerank_if_installed(rerank)
    if rerank is not None:
        from rag.rerank import load_reranking

        chosen = load_reranking(chosen, rerank, load_reranker(rerank, reading if reader == "default" else None))
    return Pipeline(chosen, reading, k, folder)


def rerank_if_installed(rerank: RerankConfig | None) -> RerankConfig | None:
    """None (with a warning) when `rerank` asks for models/reranker and it is not installed.

    The shipped reranker is to a pipeline what the shipped reader is: without it `rag ask` and
    `rag search` still answer, and say what they do instead (read the retriever's own top passages).
    load_reranker, which `rag eval retrieval` and eval/ call to measure a reranker, refuses instead.
    """
    from rag.paths import SHIPPED_RERANKER, models_dir
    from rag.console import warn
    from rag.rerank import SHIPPED_RERANKER_SPEC

    if rerank is None or rerank.reranker != SHIPPED_RERANKER_SPEC or reranker_source(rerank.reranker) is not None:
        return rerank
    warn(f"no shipped reranker at {models_dir() / SHIPPED_RERANKER}: reading the retriever's top passages without re-ranking. "
         "Train one with `rag train reranker`, or re-rank with the reader's own head: --reranker reader")
    return None


def load_reranker(config, loaded: Reader | None = None) -> Reader:
    """The span reader a rag.rerank.RerankConfig names: "rag-reranker" is models/reranker, "reader" the shipped
    span reader (`loaded`, when it is already in memory, so that it is loaded once), else a span-reader folder."""
    from rag.paths import SHIPPED_RERANKER, models_dir

    if config.reranker == "reader" and loaded is not None:
        return loaded
    source = reranker_source(config.reranker)
    if source is None:
        raise RagError(f"--reranker {config.reranker}: {models_dir() / SHIPPED_RERANKER} is not there; use --reranker reader, turn re-ranking off with --rerank 0, "
                       "or train one with `rag train reranker`")
    return load_reader(source, ReaderOptions(config.device, None, config.precision, inference_only=True))


def reranker_source(spec: str) -> str | None:
    """What load_reader loads for a --reranker: "default" for "reader", models/reranker for "rag-reranker"
    (None when it is not installed), else `spec` itself (a span-reader folder)."""
    from rag.paths import SHIPPED_RERANKER, shipped_model
    from rag.rerank import SHIPPED_RERANKER_SPEC

    if spec == SHIPPED_RERANKER_SPEC:
        folder = shipped_model(SHIPPED_RERANKER)
        return str(folder) if folder else None
    return "default" if spec == "reader" else spec
