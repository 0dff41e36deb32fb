"""DenseIndex against an oracle: brute-force numpy inner product for flat, flat for HNSW and IVF-PQ."""
from __future__ import annotations

import json
from itertools import islice

import numpy as np
import pytest

from rag.corpus import read_passages
from rag.index import KINDS, DenseIndex, IndexConfig
from rag.types import RagError
from tests.conftest import shared

N_PASSAGES = 2000  # enough real vectors for IVF-PQ's codebooks to mean something; ~40 s to encode on 2 cores


@pytest.fixture(scope="module")
def corpus_vectors(encoder):
    """Real MiniLM vectors of the first 2,000 passages of the built-in corpus, and 200 real NQ questions."""
    passages = list(islice(read_passages("default"), N_PASSAGES))
    questions = [json.loads(line)["question"] for line in islice(open(shared("nq-open/NQ-open.dev.jsonl")), 200)]
    return encoder.encode_passages(passages), encoder.encode_queries(questions)


def _recall(rows, ref_rows, k):
    return float(np.mean([len(set(a[:k]) & set(b[:k])) / k for a, b in zip(rows, ref_rows)]))


def test_flat_equals_brute_force(corpus_vectors):
    x, q = corpus_vectors
    result = DenseIndex.build(x, IndexConfig("flat")).search(q, 10)
    scores = q @ x.T
    brute = np.argsort(-scores, axis=1, kind="stable")[:, :10]
    assert (result.rows == brute).all()
    np.testing.assert_allclose(result.scores, np.take_along_axis(scores, brute, axis=1), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("config, least", [(IndexConfig("hnsw"), 0.9), (IndexConfig("ivfpq", refine="sq8"), 0.9), (IndexConfig("ivfpq"), 0.6)])
def test_compressed_kinds_recall_at_10_against_flat(corpus_vectors, config, least):
    """PQ codes alone (the ivfpq default, 1/16 of flat) find most neighbours; the sq8 refine restores them."""
    x, q = corpus_vectors
    flat = DenseIndex.build(x, IndexConfig("flat")).search(q, 10)
    approx = DenseIndex.build(x, config).search(q, 10)
    assert _recall(approx.rows, flat.rows, 10) >= least


@pytest.mark.parametrize("kind", KINDS)
def test_save_load_round_trip_and_add(tmp_path, corpus_vectors, kind):
    x, q = corpus_vectors
    first, rest = x[:1500], x[1500:]
    index = DenseIndex.build(first, IndexConfig(kind))
    index.save(tmp_path / "i.faiss")
    loaded = DenseIndex.load(tmp_path / "i.faiss", index.config)
    a, b = index.search(q, 10), loaded.search(q, 10)
    assert (a.rows == b.rows).all() and np.allclose(a.scores, b.scores)

    loaded.add(rest)
    assert len(loaded) == len(x)
    # Each added vector, searched for itself, comes back as its own row: new rows are retrievable.
    hits = loaded.search(rest[:50], 1).rows[:, 0]
    assert (hits == np.arange(1500, 1550)).mean() >= 0.9
    mapped = DenseIndex.load(tmp_path / "i.faiss", index.config, mmap=True)
    assert (mapped.search(q, 10).rows == a.rows).all()


def test_bad_inputs_are_clear_errors(corpus_vectors):
    x, q = corpus_vectors
    index = DenseIndex.build(x[:100], IndexConfig("flat"))
    with pytest.raises(RagError, match="query vectors are 10-d, the index is 384-d"):
        index.search(np.zeros((1, 10), np.float32), 5)
    with pytest.raises(RagError, match="cannot add 10-d vectors to a 384-d index"):
        index.add(np.zeros((1, 10), np.float32))
    with pytest.raises(RagError, match="unknown index kind 'lsh'; valid: flat, hnsw, ivfpq"):
        IndexConfig("lsh")
    result = index.search(q[:2], 200)  # k larger than the index: missing slots are -1
    assert (result.rows[:, 100:] == -1).all()
