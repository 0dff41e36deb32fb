"""Ray backends on a real local Ray cluster (2 CPUs): the oracle is the single-process flat index."""
from __future__ import annotations

import os

import numpy as np
import pytest

from rag.build import BuildConfig, build_index
from rag.distributed import open_index_in_ray_actors, ray_shard_encoder
from rag.embeddings import encode_store_shards, shard_paths
from rag.encoders import EncoderConfig
from rag.qa_data import load_qa
from rag.store import PassageStore
from tests.conftest import shared

ray = pytest.importorskip("ray")
SHARD = 64  # 300 passages -> 5 embedding shards
N_STORE = 128  # the kill/resume tests encode fewer: 4 shards of 32


@pytest.fixture(scope="module")
def ray_cluster():
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=200 * 2**20, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def store_path(tmp_path_factory, default_passages):
    path = tmp_path_factory.mktemp("ray") / "passages.sqlite"
    with PassageStore(path) as store:
        store.add(default_passages[:N_STORE])
    return path


@pytest.fixture(scope="module")
def reference_vectors(tmp_path_factory, store_path, encoder) -> np.ndarray:
    """The in-process shard loop's output."""
    shard_dir = tmp_path_factory.mktemp("ref") / "shards"
    encode_store_shards(store_path, shard_dir, N_STORE // 4, encoder, progress=False)
    return np.concatenate([np.load(p) for p in shard_paths(shard_dir, N_STORE, N_STORE // 4)])


@pytest.fixture(scope="module")
def query_vectors(encoder):
    return encoder.encode_queries([ex.question for ex in load_qa(shared("nq-open/NQ-open.dev.jsonl"), limit=30)])


def shard_files(shard_dir):
    return sorted(p.name for p in shard_dir.iterdir())


def test_ray_build_of_a_sharded_index_returns_the_single_process_top_10(ray_cluster, tmp_path, small_corpus_jsonl, small_index, query_vectors):
    config = BuildConfig(corpus=str(small_corpus_jsonl), shard_size=SHARD, index_shards=2, encoder=EncoderConfig(precision="fp32"))  # as small_index
    folder = build_index(config, tmp_path / "ray", encode_shards=ray_shard_encoder(num_workers=2, progress=False), progress=False)
    assert folder.manifest.index_shards == 2 and folder.manifest.passages == 300
    ids = lambda hits: [[h.passage.id for h in q] for q in hits]  # noqa: E731
    want = ids(small_index.search(query_vectors, 10))
    assert ids(folder.search(query_vectors, 10)) == want
    in_actors = open_index_in_ray_actors(tmp_path / "ray")  # each index shard in its own Ray actor
    assert ids(in_actors.search(query_vectors, 10)) == want


def test_killed_shard_task_is_retried_and_the_result_is_identical(ray_cluster, tmp_path, store_path, reference_vectors):
    marker = tmp_path / "kill-once"
    marker.touch()
    shard_dir = tmp_path / "shards"
    claim = str(marker)

    def die_once(_: int) -> None:  # runs in a Ray worker: the first task to rename the marker away dies mid-shard,
        try:  # as a worker killed by the OS or a lost node would (os.rename is atomic: exactly one task claims it)
            os.rename(claim, claim + ".claimed")
        except FileNotFoundError:
            return
        os._exit(1)

    encode = ray_shard_encoder(num_workers=2, on_batch=die_once, progress=False)
    encode(store_path, shard_dir, N_STORE // 4, EncoderConfig(precision="fp32"))
    assert not marker.exists() and marker.with_name("kill-once.claimed").exists()  # a worker did die (os._exit)
    assert shard_files(shard_dir) == [p.name for p in shard_paths(shard_dir, N_STORE, N_STORE // 4)]  # no .tmp left
    got = np.concatenate([np.load(p) for p in shard_paths(shard_dir, N_STORE, N_STORE // 4)])
    np.testing.assert_allclose(got, reference_vectors, atol=1e-5)


def test_rerun_encodes_only_missing_shards(ray_cluster, tmp_path, store_path, reference_vectors):
    shard_dir = tmp_path / "shards"
    shard_dir.mkdir()
    size = N_STORE // 4
    paths = shard_paths(shard_dir, N_STORE, size)
    for i, p in enumerate(paths):  # a build killed after all shards but #2
        if i != 2:
            np.save(p, np.full((size, 384), i, np.float32))
    before = {p.name: p.stat().st_mtime_ns for p in paths if p.exists()}
    ray_shard_encoder(num_workers=2, progress=False)(store_path, shard_dir, size, EncoderConfig(precision="fp32"))
    assert {p.name: p.stat().st_mtime_ns for p in paths if p.name in before} == before
    np.testing.assert_allclose(np.load(paths[2]), reference_vectors[2 * size : 3 * size], atol=1e-5)
