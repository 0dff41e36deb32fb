"""Readers: the `Reader` interface, how one is chosen and loaded, and how a trained one is exported.

A reader reads the retrieved passages of each question and returns one Answer per question:
the extractive span reader (rag/read.py) or the RAG generator (rag/generate.py). A folder says
what it is by its type header, and READER_FOLDERS is the one table from header to loader:

    checkpoint.json   a `rag train` checkpoint: its reader/ (or generator) is loaded
    reader.json       a span reader
    generator.json    a RAG generator
    reranker.json     a reranker (a span reader trained as a cross-encoder): refused as a reader;
                      load_reranker loads it for --reranker

A new reader is one module plus one entry in NAMED_READERS or READER_FOLDERS.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from rag.checkpoint import CHECKPOINT_FILE
from rag.files import check_replaceable, fresh_scratch, publish_folder
from rag.generate import GENERATOR_FILE, GENERATOR_KIND
from rag.read import READER_FILE, RERANKER_FILE, RERANKER_KIND, SPAN_READER_KIND
from rag.types import Answer, Hit, RagError


class Reader(Protocol):
    """Reads the retrieved passages of each question and returns one Answer per question.

    Implementations: the extractive span reader (rag/read.py) and the RAG generator (rag/generate.py).
    Both marginalize over the passages they are given, using the hits' retrieval scores.
    """

    def read(self, questions: list[str], hits: list[list[Hit]]) -> list[Answer]: ...


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
    """
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
    from rag.console import warn
    from rag.paths import SHIPPED_READER, models_dir, shipped_model

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


def _not_a_reader(path, options: ReaderOptions) -> Reader:
    raise RagError(f"{path} is a reranker ({RERANKER_FILE}): its span heads were not trained to read; use it with --reranker {path}")


SHIPPED_RERANKER_SPEC = "rag-reranker"  # --reranker for models/reranker (rag.paths.SHIPPED_RERANKER), rag.rerank.RerankConfig's default
NAMED_READERS = {"default": _default_reader, "rag-sequence": _rag_generator("sequence"), "rag-token": _rag_generator("token")}
READER_FOLDERS = {CHECKPOINT_FILE: _checkpoint_reader, READER_FILE: _span_reader, GENERATOR_FILE: _generator_folder, RERANKER_FILE: _not_a_reader}  # type header -> loader
EXPORTED_KINDS = {READER_FILE: SPAN_READER_KIND, GENERATOR_FILE: GENERATOR_KIND, RERANKER_FILE: RERANKER_KIND}  # type header -> what export may replace


def load_reranker(config, loaded: Reader | None = None) -> Reader:
    """The span reader a rag.rerank.RerankConfig names: "rag-reranker" is models/reranker, "reader" the shipped
    span reader (`loaded`, when it is already in memory, so that it is loaded once), else a reranker or span-reader folder."""
    from rag.paths import SHIPPED_RERANKER, models_dir

    if config.reranker == "reader" and loaded is not None:
        return loaded
    source = reranker_source(config.reranker)
    if source is None:
        raise RagError(f"--reranker {config.reranker}: {models_dir() / SHIPPED_RERANKER} is not there; use --reranker reader, turn re-ranking off with --rerank 0, "
                       "or train one with `rag train reranker`")
    options = ReaderOptions(config.device, None, config.precision, inference_only=True)
    return _span_reader(source, options) if (Path(source) / RERANKER_FILE).exists() else load_reader(source, options)


def rerank_if_installed(rerank):
    """`rerank` (a rag.rerank.RerankConfig), or None (with a warning) when it asks for models/reranker and it is not installed.

    The shipped reranker is to a pipeline what the shipped reader is: without it `rag ask` and
    `rag search` still answer, and say what they do instead (read the retriever's own top passages).
    load_reranker, which `rag eval retrieval` and eval/ call to measure a reranker, refuses instead.
    """
    from rag.console import warn
    from rag.paths import SHIPPED_RERANKER, models_dir

    if rerank is None or rerank.reranker != SHIPPED_RERANKER_SPEC or reranker_source(rerank.reranker) is not None:
        return rerank
    warn(f"no shipped reranker at {models_dir() / SHIPPED_RERANKER}: reading the retriever's top passages without re-ranking. "
         "Train one with `rag train reranker`, or re-rank with the reader's own head: --reranker reader")
    return None


def reranker_source(spec: str) -> str | None:
    """What load_reranker loads for a --reranker: "default" for "reader", models/reranker for "rag-reranker"
    (None when it is not installed), else `spec` itself (a reranker or span-reader folder)."""
    from rag.paths import SHIPPED_RERANKER, shipped_model

    if spec == SHIPPED_RERANKER_SPEC:
        folder = shipped_model(SHIPPED_RERANKER)
        return str(folder) if folder else None
    return "default" if spec == "reader" else spec


def export_reader(source: str | Path, out: str | Path) -> Path:
    """A span reader, reranker or RAG generator (its folder, or a `rag train` / `rag train reader` checkpoint) as fp16
    weights only: what ships in models/. Its type header says which it is, and stays the same.

    `out` must not exist yet, or be a folder of the same kind this function wrote (it is then replaced).
    """
    out = Path(out).resolve()
    for folder in (Path(source), Path(source) / "reader"):  # the folder itself, or the one a training checkpoint holds
        header = next((h for h in EXPORTED_KINDS if (folder / h).exists()), None)
        if header is not None:
            break
    else:
        raise RagError(f"{source} is not a span-reader, reranker or generator folder (no {' or '.join(EXPORTED_KINDS)})")
    kind = EXPORTED_KINDS[header]
    check_replaceable(out, kind, "Choose another output.")
    options = ReaderOptions(device="cpu", precision="fp32")  # fp32 weights, halved on saving
    model = _span_reader(folder, options) if header == RERANKER_FILE else load_reader(str(folder), options)
    partial = fresh_scratch(out.with_name(out.name + ".partial"), kind)
    model.save(partial, half=True)
    if (out / "README.md").exists():  # the model card stays with the weights it describes
        shutil.copy2(out / "README.md", partial / "README.md")
    publish_folder(partial, out, kind)
    return out
