"""Passages -> embeddings: the store's passages encoded in shards, each shard one .npy file.

A shard file is written by atomic rename, so a killed run loses at most the shard it was in, and a
rerun encodes only the shard files that are missing. The Ray backend (rag.distributed) writes the
same files from many workers.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable

import numpy as np

from rag.console import log
from rag.encoders import Encoder, passage_text
from rag.files import save_npy_atomic
from rag.store import PassageStore
from rag.types import Passage


def shard_paths(shard_dir: Path, n: int, shard_size: int) -> list[Path]:
    return [shard_dir / f"emb_{i:05d}.npy" for i in range((n + shard_size - 1) // shard_size)]


def encode_shard(store: PassageStore, encoder: Encoder, start: int, stop: int, on_batch: Callable[[int], None] = lambda n: None, batch: int = 1024) -> np.ndarray:
    """Vectors for store rows [start, stop), in row order, encoded `batch` passages at a time.

    The rows are encoded longest first, 1,024 to an encoder call (which groups them by token length),
    so each batch holds passages of similar length and little padding is computed; a shard (4,096
    passages by default) fits in memory for that.
    """
    passages = [p for chunk in store.iter_batches(4096, start, stop) for p in chunk]
    return encode_passages_sorted(encoder, passages, on_batch, batch)


def encode_passages_sorted(encoder: Encoder, passages: list[Passage], on_batch: Callable[[int], None] = lambda n: None, batch: int = 256) -> np.ndarray:
    """Vectors for `passages` in their order, encoded longest first (batches of similar length pad little)."""
    order = np.argsort([-len(passage_text(p)) for p in passages], kind="stable")
    vectors = np.zeros((len(passages), encoder.dim), np.float32)
    for lo in range(0, len(passages), batch):
        rows = order[lo : lo + batch]
        vectors[rows] = encoder.encode_passages([passages[i] for i in rows])
        on_batch(len(rows))
    return vectors


def encode_store_shards(store_path: Path, shard_dir: Path, shard_size: int, encoder: Encoder, progress: bool = True) -> None:
    """Encode every shard whose file is missing; finished shards are skipped (resume)."""
    from tqdm import tqdm

    shard_dir.mkdir(exist_ok=True)
    with PassageStore(store_path, readonly=True) as store:
        n = len(store)
        paths = shard_paths(shard_dir, n, shard_size)
        done = sum(min(shard_size, n - i * shard_size) for i, p in enumerate(paths) if p.exists())
        if done:
            log(f"resuming: {done} of {n} passages already encoded", progress)
        with tqdm(total=n, initial=done, desc="encoding passages", unit=" passages", disable=not progress, file=sys.stderr) as bar:
            for i, path in enumerate(paths):
                if path.exists():
                    continue
                start, stop = i * shard_size, min(n, (i + 1) * shard_size)
                vectors = encode_shard(store, encoder, start, stop, on_batch=bar.update)
                save_npy_atomic(path, vectors)
