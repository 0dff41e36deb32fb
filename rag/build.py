"""Index folders: build (resumable, sharded), add passages, open for search.

indexes/NAME/
    manifest.json     what was built, from what, with which encoder (checked on load)
    passages.sqlite   the PassageStore; row i <-> FAISS row i
    index.faiss       the DenseIndex, or
    index_shards/     00000.faiss, 00001.faiss ...: a ShardedIndex (manifest `index_shards` > 1)

A build writes into NAME.partial/ and renames it to NAME only when whole. Embeddings go to
NAME.partial/shards/ one shard at a time, each by atomic rename, so a killed build rerun with the
same arguments re-encodes at most the shard it was in.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from rag.corpus import ReadReport, SplitConfig, detect_format, read_passages
from rag.encoders import Encoder, EncoderConfig, load_encoder, passage_text
from rag.index import DenseIndex, IndexConfig
from rag.sharded import SHARD_DIR, ShardedIndex, shard_files
from rag.store import PassageStore
from rag.types import Hit, Passage, RagError

MANIFEST_FORMAT = "rag-index v1"
MANIFEST, STORE, FAISS_FILE = "manifest.json", "passages.sqlite", "index.faiss"


@dataclass(frozen=True)
class BuildConfig:
    corpus: str  # a path, or "default" for the built-in Wikipedia lead sections
    fmt: str = "auto"
    encoder: EncoderConfig = EncoderConfig()
    index: IndexConfig = IndexConfig()
    split: SplitConfig = SplitConfig()
    shard_size: int = 4096  # passages per embedding shard: the most a killed build loses
    index_shards: int = 1  # FAISS indexes the passages are split into (search merges their top-k)
    on_error: str = "raise"  # or "skip": bad records skipped, counted in the manifest
    overwrite: bool = False  # replace an existing index at the output path (rebuild from a new corpus)


@dataclass
class Manifest:
    encoder: str
    dim: int
    normalized: bool
    index: dict
    passages: int
    sources: list[dict]  # one per corpus read: source, format, sha256 of its passages, counts, date
    built_at: str
    bytes_per_vector: float = 0.0
    index_shards: int = 1
    format: str = MANIFEST_FORMAT
    extra: dict = field(default_factory=dict)

    @classmethod
    def read(cls, folder: Path) -> "Manifest":
        path = folder / MANIFEST
        if not path.exists():
            raise RagError(f"{folder} is not an index folder (no {MANIFEST}); build one with: rag index build --corpus default --out {folder}")
        return cls(**read_versioned_json(path, MANIFEST_FORMAT))

    def write(self, folder: Path) -> None:
        _write_atomic(folder / MANIFEST, json.dumps(asdict(self), indent=2).encode())


class IndexFolder:
    """An opened index: manifest, passage store and dense index. Searching never changes it."""

    def __init__(self, path: Path, manifest: Manifest, store: PassageStore, dense: DenseIndex | ShardedIndex):
        self.path, self.manifest, self.store, self.dense = path, manifest, store, dense

    def search(self, query_vectors: np.ndarray, k: int) -> list[list[Hit]]:
        return self.store.hits(self.dense.search(query_vectors, k))

    def load_encoder(self, config: EncoderConfig | None = None) -> Encoder:
        """The encoder this index was built with (device/batch size may differ)."""
        config = config or EncoderConfig(spec=self.manifest.encoder)
        check_encoder(self.manifest, config.spec, self.path)
        return load_encoder(config)


def check_encoder(manifest: Manifest, spec: str, folder: Path) -> None:
    if spec != manifest.encoder:
        raise RagError(f"{folder} was built with encoder {manifest.encoder!r}, not {spec!r}: query vectors would not match its passage vectors. Use --encoder {manifest.encoder} or rebuild the index.")


def open_index(path: str | Path, encoder_spec: str | None = None, mmap: bool = False, ray_actors: bool = False) -> IndexFolder:
    """mmap: map the FAISS files instead of reading them; ray_actors: hold each index shard in a Ray
    actor (rag.distributed.RayShardedIndex; Ray must be initialized) and fan searches out to them."""
    folder = Path(path)
    manifest = Manifest.read(folder)
    if encoder_spec is not None:
        check_encoder(manifest, encoder_spec, folder)
    store = PassageStore(folder / STORE, readonly=True)
    dense = load_dense(folder, manifest, mmap, ray_actors)
    if not (len(store) == len(dense) == manifest.passages):
        raise RagError(
            f"{folder} is inconsistent: {len(store)} stored passages, {len(dense)} vectors, manifest says {manifest.passages}; "
            f"an `rag index add` was interrupted: finish it with `rag index add --index {folder}`"
        )
    return IndexFolder(folder, manifest, store, dense)


def dense_files(folder: Path, manifest: Manifest) -> list[Path]:
    """The FAISS files of an index folder, in row order."""
    if manifest.index_shards > 1:
        return shard_files(folder / SHARD_DIR, manifest.index_shards)
    return [folder / FAISS_FILE]


def load_dense(folder: Path, manifest: Manifest, mmap: bool = False, ray_actors: bool = False) -> DenseIndex | ShardedIndex:
    config, files = IndexConfig(**manifest.index), dense_files(folder, manifest)
    if ray_actors:
        from rag.distributed import RayShardedIndex

        return RayShardedIndex.load(files, config, mmap=mmap)
    if len(files) == 1:
        return DenseIndex.load(files[0], config, mmap=mmap)
    return ShardedIndex.load(files, config, mmap=mmap)


def _bytes_per_vector(folder: Path, manifest: Manifest) -> float:
    return round(sum(p.stat().st_size for p in dense_files(folder, manifest)) / max(manifest.passages, 1), 1)


# --- build -----------------------------------------------------------------------------------


def build_index(
    config: BuildConfig,
    out: str | Path,
    encoder: Encoder | None = None,
    encode_shards: Callable[..., None] | None = None,
    progress: bool = True,
) -> IndexFolder:
    """Read the corpus into a store, encode it shard by shard, build FAISS, publish atomically.

    `encode_shards(store_path, shard_dir, shard_size, encoder_config)` may replace the in-process
    shard loop (the Ray backend does); it must leave the same shard files.
    """
    out = Path(out)
    if out.exists() and not config.overwrite:
        raise RagError(f"{out} already exists; pass --overwrite to rebuild it, or `rag index add` to add passages")
    partial = out.with_name(out.name + ".partial")
    state = _build_state(config)
    if partial.exists() and _read_json(partial / "build.json") != state:
        _log(f"discarding an unfinished build in {partial}: it was started with other arguments", progress)
        shutil.rmtree(partial)
    partial.mkdir(parents=True, exist_ok=True)
    _write_atomic(partial / "build.json", json.dumps(state, indent=2).encode())

    source = _ingest(config, partial, progress)
    with PassageStore(partial / STORE) as store:
        n = len(store)
    shard_dir = partial / "shards"
    if encode_shards is not None:
        encode_shards(partial / STORE, shard_dir, config.shard_size, config.encoder)
        encoder_info = load_encoder_info(config.encoder, encoder)
    else:
        encoder = encoder or load_encoder(config.encoder)
        encoder_info = (encoder.dim, encoder.normalized)
        encode_store_shards(partial / STORE, shard_dir, config.shard_size, encoder, progress=progress)
    embedding_files = shard_paths(shard_dir, n, config.shard_size)
    _log(f"building a {config.index.kind} index over {n} vectors" + (f" in {config.index_shards} shards" if config.index_shards > 1 else ""), progress)
    if config.index_shards > 1:
        dense = ShardedIndex.build_from_files(embedding_files, config.index, config.index_shards)
        dense.save(partial / SHARD_DIR)
    else:
        dense = DenseIndex.build(np.concatenate([np.load(p) for p in embedding_files]), config.index)
        dense.save(partial / FAISS_FILE)
    manifest = Manifest(
        encoder=config.encoder.spec,
        dim=encoder_info[0],
        normalized=encoder_info[1],
        index=asdict(dense.config),
        passages=n,
        sources=[source],
        built_at=_now(),
        index_shards=config.index_shards,
    )
    manifest.bytes_per_vector = _bytes_per_vector(partial, manifest)
    manifest.write(partial)
    shutil.rmtree(shard_dir)
    for scratch in ("build.json", "ingested.json"):
        (partial / scratch).unlink()
    publish_folder(partial, out)
    return open_index(out)


def load_encoder_info(config: EncoderConfig, encoder: Encoder | None) -> tuple[int, bool]:
    encoder = encoder or load_encoder(config)
    return encoder.dim, encoder.normalized


def _build_state(config: BuildConfig) -> dict:
    """What must match for an unfinished build to be resumed (device and batch size may change)."""
    corpus = config.corpus
    stat = None
    if corpus != "default":
        st = Path(corpus).stat() if Path(corpus).exists() else None
        stat = st and [st.st_size, int(st.st_mtime)]
    return {
        "corpus": str(Path(corpus).resolve()) if corpus != "default" else corpus,
        "corpus_stat": stat,
        "format": config.fmt,
        "encoder": config.encoder.spec,
        "split": asdict(config.split),
        "shard_size": config.shard_size,
        "on_error": config.on_error,
    }


def _ingest(config: BuildConfig, folder: Path, progress: bool) -> dict:
    """Corpus -> passage store, once: a resumed build finds the store complete and reuses it."""
    done = _read_json(folder / "ingested.json")
    if done:
        return done
    (folder / STORE).unlink(missing_ok=True)
    report = ReadReport()
    source = _append_corpus(folder / STORE, config.corpus, config.fmt, config.split, config.on_error, report, progress)
    _write_atomic(folder / "ingested.json", json.dumps(source).encode())
    return source


def _append_corpus(store_path: Path, corpus: str, fmt: str, split: SplitConfig, on_error: str, report: ReadReport, progress: bool) -> dict:
    digest = hashlib.sha256()

    def hashed(passages: Iterable[Passage]):
        for p in passages:
            digest.update(f"{p.id}\t{p.title}\t{p.text}\n".encode())
            yield p

    from tqdm import tqdm

    with PassageStore(store_path) as store:
        passages = tqdm(read_passages(corpus, fmt, split, on_error, report), desc="reading corpus", unit=" passages", disable=not progress, file=sys.stderr)
        store.add(hashed(passages))
    _log(report.summary(), progress)
    return {
        "source": str(corpus),
        "format": detect_format(corpus) if fmt == "auto" else fmt,
        "sha256": digest.hexdigest(),
        "documents": report.documents,
        "passages": report.passages,
        "skipped": len(report.skipped),
        "skipped_examples": report.skipped[:10],
        "added_at": _now(),
    }


def shard_paths(shard_dir: Path, n: int, shard_size: int) -> list[Path]:
    return [shard_dir / f"emb_{i:05d}.npy" for i in range((n + shard_size - 1) // shard_size)]


def encode_shard(store: PassageStore, encoder: Encoder, start: int, stop: int, on_batch: Callable[[int], None] = lambda n: None, batch: int = 256) -> np.ndarray:
    """Vectors for store rows [start, stop), in row order, encoded `batch` passages at a time.

    The rows are encoded longest first, so each batch holds passages of similar length and
    little padding is computed; a shard (4,096 passages by default) fits in memory for that.
    """
    passages = [p for chunk in store.iter_batches(4096, start, stop) for p in chunk]
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
            _log(f"resuming: {done} of {n} passages already encoded", progress)
        with tqdm(total=n, initial=done, desc="encoding passages", unit=" passages", disable=not progress, file=sys.stderr) as bar:
            for i, path in enumerate(paths):
                if path.exists():
                    continue
                start, stop = i * shard_size, min(n, (i + 1) * shard_size)
                vectors = encode_shard(store, encoder, start, stop, on_batch=bar.update)
                save_npy_atomic(path, vectors)


def save_npy_atomic(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        np.save(f, array)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def publish_folder(partial: Path, out: Path) -> None:
    """Move a finished folder into place; an existing one is swapped out first, then deleted."""
    if out.exists():  # --overwrite: swap in the new build, then drop the old one
        old = out.with_name(out.name + ".old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out, old)
        os.replace(partial, out)
        shutil.rmtree(old)
    else:
        os.replace(partial, out)


# --- add -------------------------------------------------------------------------------------


def add_to_index(
    path: str | Path,
    corpus: str | None = None,
    fmt: str = "auto",
    split: SplitConfig = SplitConfig(),
    on_error: str = "raise",
    encoder: Encoder | None = None,
    progress: bool = True,
) -> IndexFolder:
    """Append a corpus's passages to an index; they become searchable without a rebuild.

    The store is appended first (all or nothing), then every stored passage the index lacks is
    encoded and added; so rerunning with no corpus finishes an interrupted add.
    """
    folder = Path(path)
    manifest = Manifest.read(folder)
    dense = load_dense(folder, manifest)
    if corpus is not None:
        report = ReadReport()
        manifest.sources.append(_append_corpus(folder / STORE, corpus, fmt, split, on_error, report, progress))
    encoder = encoder or load_encoder(EncoderConfig(spec=manifest.encoder))
    check_encoder(manifest, encoder.spec, folder)
    with PassageStore(folder / STORE, readonly=True) as store:
        n = len(store)
        missing = n - len(dense)
        if missing:
            from tqdm import tqdm

            with tqdm(total=missing, desc="encoding new passages", unit=" passages", disable=not progress, file=sys.stderr) as bar:
                dense.add(encode_shard(store, encoder, len(dense), n, on_batch=bar.update))
    # Each FAISS file is replaced atomically; new rows of a sharded index went to its last shard.
    dense.save(folder / SHARD_DIR if isinstance(dense, ShardedIndex) else folder / FAISS_FILE)
    manifest.passages = n
    manifest.bytes_per_vector = _bytes_per_vector(folder, manifest)
    manifest.write(folder)
    return open_index(folder)


# --- small helpers ---------------------------------------------------------------------------


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def read_versioned_json(path: Path, expected_format: str) -> dict:
    """A JSON file that names its format version, checked against the one this code reads."""
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise RagError(f"{path}: invalid JSON ({e})") from e
    if not isinstance(data, dict) or data.get("format") != expected_format:
        found = data.get("format") if isinstance(data, dict) else None
        raise RagError(f"{path}: format {found!r}, this version of rag reads {expected_format!r}")
    return data


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def _log(msg: str, enabled: bool) -> None:
    if enabled:
        print(msg, file=sys.stderr)
