"""Ray backends: encode embedding shards as Ray tasks, and hold index shards in Ray actors.

`rag index build --ray [ADDRESS]` calls `ray_shard_encoder(...)`, whose `encode_shards` does what
rag.embeddings.encode_store_shards does in process: every missing shard file emb_NNNNN.npy of the passage
store is encoded, by one Ray task per shard (one GPU each where the cluster has GPUs, else CPUs), and
written by atomic rename. A task whose worker dies is retried by Ray (`max_retries`) without touching
the other shards; a build that fails anyway keeps its finished shards and resumes when rerun.

The tasks read the passage store and write shard files by path, so on a multi-node cluster the index's
parent folder must be on a filesystem every node mounts (NFS, Lustre, ...), as for any Ray job over
files. With no address, a local Ray cluster is started and shut down after the build.
"""
from __future__ import annotations

import functools
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from rag.embeddings import encode_shard, shard_paths
from rag.encoders import Encoder, EncoderConfig, load_encoder
from rag.files import save_npy_atomic
from rag.index import DenseIndex, IndexConfig, SearchResult
from rag.sharded import ShardedIndex
from rag.store import PassageStore
from rag.types import RagError

@contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None, object_store_memory: int | None = None):
    """Ray, initialized: joins `address` ("auto", "HOST:PORT", "ray://..."), or starts a local cluster
    when None. A Ray already initialized in this process is used as it is and left running."""
    import ray

    if ray.is_initialized():
        yield ray
        return
    try:
        ray.init(address=address, num_cpus=None if address else num_cpus, include_dashboard=False,
                 object_store_memory=None if address else object_store_memory, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise RagError(f"cannot start or join the Ray cluster {address or '(local)'}: {e}") from e
    try:
        yield ray
    finally:
        ray.shutdown()


def ray_shard_encoder(
    address: str | None = None,
    num_workers: int | None = None,
    max_retries: int = 3,
    runtime_env: dict | None = None,
    progress: bool = True,
    on_batch: Callable[[int], None] | None = None,
) -> Callable[[Path, Path, int, EncoderConfig], None]:
    """`encode_shards(store_path, shard_dir, shard_size, encoder_config)` for rag.build.build_index.

    num_workers: shard tasks running at once (default: one per GPU, else one per 2 CPUs); on CPUs
    each task gets an equal part of the cluster's cores. runtime_env: Ray's, for the tasks.
    on_batch: called in the worker after each encoded batch with its size (Ray pickles it with the
    task: per-worker logging or metrics, or a fault to inject when testing retries).
    """

    def encode_shards(store_path: Path, shard_dir: Path, shard_size: int, encoder_config: EncoderConfig) -> None:
        store_path, shard_dir = Path(store_path).resolve(), Path(shard_dir).resolve()
        shard_dir.mkdir(exist_ok=True)
        with PassageStore(store_path, readonly=True) as store:
            n = len(store)
        paths = shard_paths(shard_dir, n, shard_size)
        todo = [(i, p) for i, p in enumerate(paths) if not p.exists()]
        with ray_session(address, object_store_memory=256 * 2**20) as ray:
            resources = ray.cluster_resources()
            gpus, cpus = int(resources.get("GPU", 0)), int(resources.get("CPU", 1))
            workers = num_workers or (gpus or max(1, cpus // 2))
            if gpus:
                options = {"num_gpus": 1, "num_cpus": 1}
            else:  # equal parts of the cores, but no more than the biggest node has
                biggest = max((int(node["Resources"].get("CPU", 1)) for node in ray.nodes() if node["Alive"]), default=1)
                options = {"num_cpus": max(1, min(biggest, cpus // workers))}
            task = ray.remote(_encode_shard_task).options(max_retries=max_retries, runtime_env=runtime_env, **options)
            _run_windowed(ray, task, todo, workers, store_path, shard_size, n, encoder_config, on_batch, progress)

    return encode_shards


def _run_windowed(ray, task, todo, workers: int, store_path: Path, shard_size: int, n: int, encoder_config: EncoderConfig, on_batch, progress: bool) -> None:
    """At most `workers` shard tasks in flight; a shard that fails after Ray's retries stops the build."""
    from tqdm import tqdm

    done = n - sum(min(shard_size, n - i * shard_size) for i, _ in todo)
    pending: dict = {}
    queue = list(todo)
    with tqdm(total=n, initial=done, desc=f"encoding passages (Ray, {workers} workers)", unit=" passages", disable=not progress, file=sys.stderr) as bar:
        while queue or pending:
            while queue and len(pending) < workers:
                i, path = queue.pop(0)
                start, stop = i * shard_size, min(n, (i + 1) * shard_size)
                pending[task.remote(str(store_path), str(path), start, stop, encoder_config, on_batch)] = path
            finished, _ = ray.wait(list(pending), num_returns=1)
            for ref in finished:
                path = pending.pop(ref)
                try:
                    bar.update(ray.get(ref))
                except (ray.exceptions.RayTaskError, ray.exceptions.RayError) as e:
                    raise RagError(
                        f"encoding shard {path.name} failed after Ray's retries: {str(e).splitlines()[0]}; "
                        "the finished shards are kept: rerun the same command to resume"
                    ) from e


def _encode_shard_task(store_path: str, shard_path: str, start: int, stop: int, encoder_config: EncoderConfig, on_batch) -> int:
    """Runs in a Ray worker: store rows [start, stop) -> vectors -> shard_path (atomic)."""
    import ray
    import torch

    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
    torch.set_num_threads(max(1, int(cpus)))
    encoder = _worker_encoder(encoder_config)
    with PassageStore(store_path, readonly=True) as store:
        vectors = encode_shard(store, encoder, start, stop, on_batch=on_batch or (lambda n: None))
    save_npy_atomic(Path(shard_path), vectors)
    return stop - start


@functools.lru_cache(maxsize=1)
def _worker_encoder(config: EncoderConfig) -> Encoder:
    """One model load per Ray worker process, reused by the shard tasks it runs next."""
    return load_encoder(config)


# --- search: index shards held by Ray actors ------------------------------------------------


def open_index_in_ray_actors(path: str | Path, mmap: bool = False):
    """An index folder (rag.index_folder.open_index, checked) whose shards are held by Ray actors."""
    from rag.index_folder import open_index

    return open_index(path, mmap=mmap, dense_loader=RayShardedIndex.load)


class _ShardActor:
    """Holds one index shard (a DenseIndex file) in a Ray actor and searches it."""

    def __init__(self, path: str, config: IndexConfig, mmap: bool):
        self.dense = DenseIndex.load(path, config, mmap=mmap)

    def size(self) -> int:
        return len(self.dense)

    def dim(self) -> int:
        return self.dense.dim

    def search(self, queries: np.ndarray, k: int) -> SearchResult:
        return self.dense.search(queries, k)

    def reconstruct(self, rows: np.ndarray) -> np.ndarray:
        return self.dense.reconstruct(rows)


class RayShardedIndex(ShardedIndex):
    """A ShardedIndex whose shards live in Ray actors (one per shard, spread by memory); search
    sends the queries to all of them at once and merges their top-k exactly. Needs Ray initialized
    (e.g. inside `ray_session()`); the actors go when this object or the Ray session does."""

    def __init__(self, actors: Sequence, config: IndexConfig):
        import ray

        self.actors, self.config = list(actors), config
        self._sizes = ray.get([a.size.remote() for a in self.actors])
        self._dim = ray.get(self.actors[0].dim.remote())
        self.shards = []  # nothing in this process

    @classmethod
    def load(cls, paths: Sequence[Path], config: IndexConfig, mmap: bool = False) -> "RayShardedIndex":
        import ray

        if not ray.is_initialized():
            raise RagError("searching index shards in Ray actors needs Ray: call inside rag.distributed.ray_session()")
        actor = ray.remote(_ShardActor)
        actors = [
            actor.options(num_cpus=0, memory=None if mmap else max(1, Path(p).stat().st_size)).remote(str(Path(p).resolve()), config, mmap)
            for p in paths
        ]
        return cls(actors, config)

    @property
    def dim(self) -> int:
        return self._dim

    def shard_sizes(self) -> list[int]:
        return list(self._sizes)

    def add(self, embeddings: np.ndarray) -> None:
        raise RagError("an index held by Ray actors is read-only; add passages with `rag index add`")

    def save(self, folder: str | Path) -> None:
        raise RagError("an index held by Ray actors is saved where it was loaded from; nothing to save")

    def _reconstruct_shard(self, shard: int, rows: np.ndarray) -> np.ndarray:
        import ray

        return ray.get(self.actors[shard].reconstruct.remote(rows))

    def _shard_results(self, queries: np.ndarray, k: int) -> list[SearchResult]:
        import ray

        q = np.ascontiguousarray(queries, dtype=np.float32)
        return ray.get([a.search.remote(q, k) for a in self.actors])
