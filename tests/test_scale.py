"""The streamed index build (rag.index.VectorBlocks, DenseIndex.build_from_files): the same index as
DenseIndex.build over the concatenated vectors, without ever holding them all in memory."""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from rag.files import save_npy_atomic
from rag.index import DenseIndex, IndexConfig, VectorBlocks
from rag.sharded import ShardedIndex
from rag.types import RagError

SHARD_ROWS = (700, 1, 1200, 333, 900, 866)  # uneven, one of a single row: 4,000 vectors in 6 files


def unit_vectors(n: int, dim: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim), dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    folder = tmp_path_factory.mktemp("shards")
    x = unit_vectors(sum(SHARD_ROWS), 32, 0)
    paths, lo = [], 0
    for i, rows in enumerate(SHARD_ROWS):
        paths.append(folder / f"emb_{i:05d}.npy")
        save_npy_atomic(paths[-1], x[lo : lo + rows])
        lo += rows
    return x, paths


def serialized(dense) -> bytes:
    import faiss

    return faiss.serialize_index(dense._index).tobytes()


CONFIGS = {
    "flat": IndexConfig(kind="flat"),
    # train_sample < n: the sampled rows are read from several files, not all of them
    "ivfpq": IndexConfig(kind="ivfpq", train_sample=1500, ivf_nlist=32, ivf_nprobe=8),
    "ivfpq+sq8": IndexConfig(kind="ivfpq", train_sample=1500, ivf_nlist=32, ivf_nprobe=8, refine="sq8"),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_streamed_build_is_the_index_build_makes(shards, name):
    x, paths = shards
    q = unit_vectors(200, 32, 1)
    whole = DenseIndex.build(np.concatenate([np.load(p) for p in paths]), CONFIGS[name])
    streamed = DenseIndex.build_from_files(paths, CONFIGS[name])
    assert streamed.config == whole.config and len(streamed) == len(x)
    a, b = whole.search(q, 20), streamed.search(q, 20)
    np.testing.assert_array_equal(a.rows, b.rows)
    np.testing.assert_array_equal(a.scores, b.scores)
    assert serialized(streamed) == serialized(whole)  # byte for byte: same training, same codes, same lists


def test_sharded_build_from_files_matches_the_in_memory_one(shards):
    x, paths = shards
    q = unit_vectors(100, 32, 2)
    config = CONFIGS["ivfpq"]
    from_files = ShardedIndex.build_from_files(paths, config, 3)
    in_memory = ShardedIndex.build(x, config, 3)
    assert from_files.shard_sizes() == in_memory.shard_sizes() == [1333, 1333, 1334]
    assert [serialized(s) for s in from_files.shards] == [serialized(s) for s in in_memory.shards]
    np.testing.assert_array_equal(from_files.search(q, 10).rows, DenseIndex.build(x, config).search(q, 10).rows)


def test_hnsw_is_filled_file_by_file(shards):
    x, paths = shards
    hnsw = DenseIndex.build_from_files(paths, IndexConfig(kind="hnsw"))
    assert len(hnsw) == len(x)
    np.testing.assert_array_equal(hnsw.reconstruct(np.arange(len(x))), x)  # every row where it belongs
    assert np.mean(hnsw.search(x[::10], 1).rows[:, 0] == np.arange(0, len(x), 10)) > 0.99


@pytest.mark.parametrize("kind", ["flat", "ivfpq"])
def test_streamed_build_never_holds_all_vectors(tmp_path, kind):
    """numpy's allocations (tracemalloc sees them, not FAISS's own): at most the training sample
    plus a block, never the 40 files' 10 MB at once (the old build concatenated them)."""
    paths = []
    for i in range(40):
        paths.append(tmp_path / f"emb_{i:05d}.npy")
        save_npy_atomic(paths[-1], unit_vectors(1000, 64, i))
    total = 40 * 1000 * 64 * 4
    config = IndexConfig(kind=kind, train_sample=2000, ivf_nlist=16, ivf_nprobe=4, pq_m=8)
    tracemalloc.start()
    try:
        dense = DenseIndex.build_from_files(paths, config)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(dense) == 40_000
    sample = 2000 * 64 * 4 if kind == "ivfpq" else 0
    assert peak < sample + 2 * 1000 * 64 * 4 + 2**20, f"peak {peak:,} B of numpy memory for {total:,} B of vectors"


def test_vector_blocks_read_rows_and_ranges_across_files(shards):
    x, paths = shards
    blocks = VectorBlocks.from_files(paths)
    assert len(blocks) == len(x) and blocks.dim == 32
    rows = np.array([0, 699, 700, 701, 2500, len(x) - 1])
    np.testing.assert_array_equal(blocks.take(rows), x[rows])
    assert blocks.take(np.array([], np.int64)).shape == (0, 32)
    got = list(blocks.blocks(650, 2000))
    assert [len(b) for b in got] == [50, 1, 1200, 99]
    np.testing.assert_array_equal(np.concatenate(got), x[650:2000])


def test_mismatched_shard_files_are_refused(tmp_path):
    save_npy_atomic(tmp_path / "a.npy", np.zeros((3, 8), np.float32))
    save_npy_atomic(tmp_path / "b.npy", np.zeros((3, 16), np.float32))
    with pytest.raises(RagError, match="b.npy: vectors of shape"):
        VectorBlocks.from_files([tmp_path / "a.npy", tmp_path / "b.npy"])
    with pytest.raises(RagError, match="no vectors"):
        VectorBlocks.from_files([])


def test_ivfpq_without_polysemous_training_answers_the_same(shards):
    """rag skips faiss' polysemous training (a relabelling of PQ codes for Hamming filtering it never
    uses): the search results are those of the index the factory's default would have trained."""
    import faiss

    from rag.index import resolve_ivfpq, training_rows

    x, _ = shards
    q = unit_vectors(200, 32, 3)
    config = resolve_ivfpq(CONFIGS["ivfpq"], len(x), x.shape[1])
    ours = DenseIndex.build(x, config)
    assert not faiss.downcast_index(faiss.extract_index_ivf(ours._index)).do_polysemous_training
    default = faiss.index_factory(32, f"IVF{config.ivf_nlist},PQ{config.pq_m}x{config.pq_nbits}", faiss.METRIC_INNER_PRODUCT)
    assert faiss.downcast_index(faiss.extract_index_ivf(default)).do_polysemous_training
    default.train(x[training_rows(len(x), config)])
    default.add(x)
    theirs = DenseIndex(default, config)
    a, b = ours.search(q, 20), theirs.search(q, 20)
    np.testing.assert_array_equal(a.rows, b.rows)
    np.testing.assert_array_equal(a.scores, b.scores)
