"""Where shipped artifacts live, resolved in one place and never from the working directory.

The project's `models/` folder sits beside the `rag` package (a checkout or an editable install);
set RAG_MODELS_DIR to use another folder (a wheel install, a read-only copy, your own models).
"""
from __future__ import annotations

import os
from pathlib import Path

MODELS_ENV = "RAG_MODELS_DIR"
SHIPPED_READER = "reader"  # models/reader: the span reader trained on SQuAD + open-domain QA (see its README.md)


def models_dir() -> Path:
    configured = os.environ.get(MODELS_ENV)
    return Path(configured) if configured else Path(__file__).resolve().parent.parent / "models"


def shipped_model(name: str) -> Path | None:
    """models/NAME when it is there, else None."""
    path = models_dir() / name
    return path if path.is_dir() else None
