"""Sharded and compressed indexes against their oracle: one unsharded index over the same real vectors."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest

from rag.build import BuildConfig, add_to_index, build_index
from rag.index import DenseIndex, IndexConfig, resolve_ivfpq
from rag.index_folder import open_index
from rag.qa_data import load_qa
from rag.sharded import ShardedIndex, merge_top_k
from tests.conftest import shared


@pytest.fixture(scope="module")
def passage_vectors(encoder, default_passages) -> np.ndarray:
    return encoder.encode_passages(default_passages)


@pytest.fixture(scope="module")
def query_vectors(encoder) -> np.ndarray:
    questions = [ex.question for ex in load_qa(shared("nq-open/NQ-open.dev.jsonl"), limit=40)]
    return encoder.encode_queries(questions)


def assert_same_results(got, want):
    """Same rows in the same order; rows whose float32 scores tie exactly may come in either order (FAISS' heap
    orders ties arbitrarily; with 40 real queries at k=400 some do tie)."""
    np.testing.assert_array_equal(canonical(got), canonical(want))
    np.testing.assert_allclose(got.scores, want.scores, rtol=1e-5, atol=1e-6)


def canonical(result) -> np.ndarray:
    order = np.stack([np.lexsort((r, -s)) for r, s in zip(result.rows, result.scores)])
    return np.take_along_axis(result.rows, order, axis=1)


@pytest.mark.parametrize("n_shards", [1, 2, 3, 7])
@pytest.mark.parametrize("k", [10, 100, 400])  # 400 > 300 passages: the tail is row -1 in both
def test_sharded_flat_returns_the_flat_top_k(passage_vectors, query_vectors, n_shards, k):
    flat = DenseIndex.build(passage_vectors)
    sharded = ShardedIndex.build(passage_vectors, IndexConfig(), n_shards)
    assert len(sharded) == len(flat) and len(sharded.shards) == n_shards
    assert_same_results(sharded.search(query_vectors, k), flat.search(query_vectors, k))


def test_sharded_ivfpq_shares_one_training_and_answers_like_unsharded(passage_vectors, query_vectors):
    # Without the refine stage: with it, each shard re-scores its own refine_k_factor * k candidates, so a
    # sharded index re-scores more candidates than the unsharded one and may (rightly) answer better.
    config = IndexConfig(kind="ivfpq", refine="none")
    whole = DenseIndex.build(passage_vectors, config)
    sharded = ShardedIndex.build(passage_vectors, config, 3)
    assert sharded.config == whole.config
    assert_same_results(sharded.search(query_vectors, 10), whole.search(query_vectors, 10))


def test_sharded_ivfpq_with_refine_is_at_least_as_close_to_flat(passage_vectors, query_vectors):
    flat = DenseIndex.build(passage_vectors, IndexConfig("flat")).search(query_vectors, 10)
    whole = DenseIndex.build(passage_vectors, IndexConfig("ivfpq", refine="sq8")).search(query_vectors, 10)
    sharded = ShardedIndex.build(passage_vectors, IndexConfig("ivfpq", refine="sq8"), 3).search(query_vectors, 10)

    def recall(r):
        return np.mean([len(set(a) & set(b)) / 10 for a, b in zip(r.rows, flat.rows)])

    assert recall(sharded) >= recall(whole)  # 300 vectors give 2-bit PQ codes: absolute recall is tested in test_index


@pytest.mark.slow  # OPQ training: ~2 min on 2 busy cores
def test_opq_rotation_is_shared_by_shards_and_kept_on_reload(tmp_path):
    """OPQ needs 8-bit codes, so >= 9,984 vectors: 12k synthetic 64-d ones with structure (a 16-d subspace)."""
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((12_000, 16)) @ rng.standard_normal((16, 64)) + 0.1 * rng.standard_normal((12_000, 64))).astype(np.float32)
    q = x[:50] + 0.05 * rng.standard_normal((50, 64)).astype(np.float32)
    whole = DenseIndex.build(x, IndexConfig(kind="ivfpq", opq=True))
    assert whole.config.opq and whole.config.pq_nbits == 8
    sharded = ShardedIndex.build(x, IndexConfig(kind="ivfpq", opq=True), 2)
    assert_same_results(sharded.search(q, 10), whole.search(q, 10))
    sharded.save(tmp_path)
    reloaded = ShardedIndex.load(sorted(tmp_path.glob("*.faiss")), sharded.config, mmap=True)
    assert_same_results(reloaded.search(q, 10), whole.search(q, 10))
    assert not DenseIndex.build(x[:300], IndexConfig(kind="ivfpq", opq=True)).config.opq  # too few vectors for 8-bit codes


def test_merge_keeps_row_order_on_ties_and_drops_missing_rows():
    from rag.index import SearchResult

    a = SearchResult(np.array([[0.5, 0.2, -3.4e38]], np.float32), np.array([[1, 0, -1]]))
    b = SearchResult(np.array([[0.5, 0.4, 0.1]], np.float32), np.array([[2, 0, 1]]))
    merged = merge_top_k([a, b], [2, 3], 4)
    np.testing.assert_array_equal(merged.rows, [[1, 4, 2, 0]])
    np.testing.assert_allclose(merged.scores, [[0.5, 0.5, 0.4, 0.2]])


@pytest.mark.parametrize("kind", ["flat", "ivfpq", "hnsw"])
def test_mmap_loaded_index_answers_like_the_in_memory_one(tmp_path, passage_vectors, query_vectors, kind):
    built = DenseIndex.build(passage_vectors, IndexConfig(kind=kind, hnsw_ef_construction=40))
    built.save(tmp_path / "index.faiss")
    in_memory = DenseIndex.load(tmp_path / "index.faiss", built.config)
    mapped = DenseIndex.load(tmp_path / "index.faiss", built.config, mmap=True)
    assert_same_results(mapped.search(query_vectors, 10), in_memory.search(query_vectors, 10))
    assert_same_results(mapped.search(query_vectors, 10), built.search(query_vectors, 10))


def test_ivfpq_parameters_follow_corpus_size():
    wiki = resolve_ivfpq(IndexConfig(kind="ivfpq"), 21_015_324, 768)  # DPR's psgs_w100
    assert (wiki.ivf_nlist, wiki.ivf_nprobe, wiki.pq_m, wiki.pq_nbits) == (18336, 2292, 96, 8)
    assert wiki.train_sample == 64 * 18336
    small = resolve_ivfpq(IndexConfig(kind="ivfpq"), 300, 384)
    assert small.ivf_nlist == 7 and small.pq_nbits == 2 and small.train_sample == 300  # k-means gets >= 39 points per centroid
    assert resolve_ivfpq(IndexConfig(kind="ivfpq", pq_m=48, ivf_nlist=1024), 10**6, 384).pq_m == 48  # explicit values are kept


def test_ivfpq_is_smaller_per_vector_than_flat(tmp_path, passage_vectors):
    sizes = {}
    for kind in ("flat", "ivfpq"):
        DenseIndex.build(passage_vectors, IndexConfig(kind=kind)).save(tmp_path / kind)
        sizes[kind] = (tmp_path / kind).stat().st_size / len(passage_vectors)
    assert sizes["flat"] >= 384 * 4
    assert sizes["ivfpq"] < sizes["flat"] / 3


def test_sharded_index_folder_builds_opens_adds_and_maps(tmp_path, small_corpus_jsonl, small_index, encoder, query_vectors, default_passages):
    out = tmp_path / "sharded"
    folder = build_index(BuildConfig(corpus=str(small_corpus_jsonl), shard_size=128, index_shards=3), out, encoder=encoder, progress=False)
    assert folder.manifest.index_shards == 3 and folder.manifest.passages == 300
    assert sorted(p.name for p in (out / "index_shards").iterdir()) == ["00000.faiss", "00001.faiss", "00002.faiss"]
    assert not (out / "index.faiss").exists()
    assert 384 * 4 <= folder.manifest.bytes_per_vector < 384 * 4 + 50
    want = small_index.search(query_vectors, 10)
    for opened in (folder, open_index(out), open_index(out, mmap=True)):
        got = opened.search(query_vectors, 10)
        assert [[h.passage.id for h in hits] for hits in got] == [[h.passage.id for h in hits] for hits in want]

    new = tmp_path / "new.jsonl"
    extra = [replace(p, id=p.id + "-copy") for p in default_passages[:3]]
    new.write_text("".join(json.dumps({"id": p.id, "title": p.title, "text": p.text}) + "\n" for p in extra))
    grown = add_to_index(out, str(new), encoder=encoder, progress=False)
    assert grown.manifest.passages == len(grown.dense) == 303
    assert grown.dense.shard_sizes()[-1] == 100 + 3
    hits = grown.search(encoder.encode_passages(extra[:1]), 2)[0]
    assert [h.passage.text for h in hits] == [extra[0].text] * 2  # the copy and its original, from two shards
    assert sum("-copy" in h.passage.id for h in hits) == 1
