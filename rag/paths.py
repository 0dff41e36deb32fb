"""Where default artifacts and data live, resolved in one place and never from the working directory.

The project's folders sit beside the `rag` package (a checkout or an editable install):
  models/      shipped weights (models/reader ...)        RAG_MODELS_DIR overrides
  indexes/     index folders; indexes/default is the one commands use when given none
                                                          RAG_INDEXES_DIR overrides
  checkpoints/ where `rag train` writes when given no --out RAG_CHECKPOINTS_DIR overrides
  ../shared/data  the QA and corpus files the benchmarks read   RAG_SHARED_DATA overrides
"""
from __future__ import annotations

import os
from pathlib import Path

PROJECT = Path(__file__).resolve().parent.parent
SHIPPED_READER = "reader"  # models/reader: the span reader trained on SQuAD (see its README.md)
SHIPPED_RETRIEVER_FOLDER = "retriever"  # models/retriever: the query tower trained by `rag train retriever` (see its README.md)
SHIPPED_RERANKER = "reranker"  # models/reranker: the span reader's selection head trained on retrieved passages (`rag train reranker`, see its README.md)
SHIPPED_GENERATOR = "generator"  # models/generator: the RAG generator, trained on SQuAD, then RAG fine-tuned (see its README.md)


def _configured(env: str, default: Path) -> Path:
    value = os.environ.get(env)
    return Path(value) if value else default


def models_dir() -> Path:
    return _configured("RAG_MODELS_DIR", PROJECT / "models")


def indexes_dir() -> Path:
    return _configured("RAG_INDEXES_DIR", PROJECT / "indexes")


def default_index() -> Path:
    return indexes_dir() / "default"


def checkpoints_dir() -> Path:
    return _configured("RAG_CHECKPOINTS_DIR", PROJECT / "checkpoints")


def shared_data() -> Path:
    return _configured("RAG_SHARED_DATA", PROJECT.parent / "shared" / "data")


def looks_like_a_path(spec: str) -> bool:
    """A hub id is 'name' or 'org/name'; anything else with a slash, or starting with . / ~, is a local path
    (a missing one is an error at once, not minutes of hub retries)."""
    return spec.startswith((".", "/", "~")) or spec.count("/") > 1 or "\\" in spec


def shipped_model(name: str) -> Path | None:
    """models/NAME when it is there, else None."""
    path = models_dir() / name
    return path if path.is_dir() else None
