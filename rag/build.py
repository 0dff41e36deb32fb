"""Building index folders (resumable, sharded) and adding passages to them (rag.index_folder: the format).

A build writes into NAME.partial/ (a marked scratch folder) and swaps it in as NAME only when
whole. Embeddings go to NAME.partial/shards/ one shard at a time, each by atomic rename, so a killed
build rerun with the same arguments re-encodes at most the shard it was in, and a build killed
after it finished is published by the rerun without redoing anything.

An add takes the folder's lock, records its source in the manifest before reading it, appends the
store (all or nothing), encodes, writes the grown FAISS file under a new name and commits by
rewriting the manifest; searches opened meanwhile keep seeing the last commit.
"""
from __future__ import annotations

import hashlib
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable

from rag.console import log
from rag.corpus import ReadReport, SplitConfig, detect_format, read_passages
from rag.embeddings import encode_shard, encode_store_shards, shard_paths
from rag.encoders import Encoder, EncoderConfig, load_encoder
from rag.files import check_not_inside, check_replaceable, folder_lock, make_scratch, publish_folder, read_json, recover_folder, remove_scratch, write_json_atomic
from rag.index import DenseIndex, IndexConfig
from rag.index_folder import FAISS_FILE, INDEX_KIND, MANIFEST, STORE, IndexFolder, Manifest, Source, check_encoder, commit_record, load_row_digests, open_index, superseded_row_digests
from rag.sharded import SHARD_DIR, ShardedIndex
from rag.store import PassageStore
from rag.types import Passage, RagError

BUILD_STATE = "build.json"  # in NAME.partial/: the arguments the unfinished build was started with
INGESTED = "ingested.json"  # in NAME.partial/: the corpus is wholly in the store (its source record)


@dataclass(frozen=True)
class BuildConfig:
    corpus: str  # a path, or "default" for the built-in Wikipedia lead sections
    fmt: str = "auto"
    encoder: EncoderConfig = EncoderConfig(inference_only=True)  # a build only encodes: plain torch, bf16 weights (rag/mean_pool_encoder.py)
    index: IndexConfig = IndexConfig()
    split: SplitConfig = SplitConfig()
    shard_size: int = 4096  # passages per embedding shard: the most a killed build loses
    index_shards: int = 1  # FAISS indexes the passages are split into (search merges their top-k)
    on_error: str = "raise"  # or "skip": bad records skipped, counted in the manifest
    overwrite: bool = False  # replace an existing index at the output path (only an index folder is ever replaced)


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
    out = _output_path(out)
    partial = out.with_name(out.name + ".partial")
    _check_build_output(config, out)
    state = _build_state(config)
    if partial.exists() and read_json(partial / BUILD_STATE) != state:
        log(f"discarding an unfinished build in {partial}: it was started with other arguments", progress)
        remove_scratch(partial, INDEX_KIND)
    if not (partial / MANIFEST).exists():  # else: a finished build killed before its swap, published below
        if encode_shards is None and encoder is None:
            encoder = load_encoder(config.encoder)  # before anything is written: a bad --encoder leaves nothing behind
        if not partial.exists():
            make_scratch(partial)
            write_json_atomic(partial / BUILD_STATE, state)
        try:
            source = _ingest(config, partial, progress)
        except RagError:  # a bad corpus: nothing worth keeping was made
            remove_scratch(partial, INDEX_KIND)
            raise
        _encode_and_index(config, partial, source, encoder, encode_shards, progress)
    publish_folder(partial, out, INDEX_KIND)
    for scratch in (BUILD_STATE, INGESTED):
        (out / scratch).unlink(missing_ok=True)
    return open_index(out)


def _output_path(out: str | Path) -> Path:
    """`out` as given, or resolved when it has no name of its own ("." or ".."): the build works beside it."""
    out = Path(out)
    if not out.name or out.name == "..":
        out = out.resolve()
    if not out.name:
        raise RagError(f"cannot build an index at {out}: name a folder for it, e.g. --out indexes/NAME (nothing was written)")
    return out


def _check_build_output(config: BuildConfig, out: Path) -> None:
    """Refuse before anything is written: a missing corpus, an existing output without --overwrite,
    an output that is not an index folder, or one that holds the corpus being read."""
    if config.corpus != "default" and not Path(config.corpus).exists():
        raise RagError(f"{config.corpus}: no such corpus file or folder (nothing was written)")
    recover_folder(out, INDEX_KIND)
    if not out.exists():
        return
    if not config.overwrite:
        raise RagError(f"{out} already exists; pass --overwrite to rebuild it, or `rag index add` to add passages")
    if config.corpus != "default":  # first: the more specific reason when the corpus is one of the foreign files
        check_not_inside(config.corpus, out, "the corpus")
    check_replaceable(out, INDEX_KIND, "Choose another --out.")


def _encode_and_index(config: BuildConfig, partial: Path, source: dict, encoder: Encoder | None, encode_shards, progress: bool) -> None:
    with PassageStore(partial / STORE) as store:
        n = len(store)
    shard_dir = partial / "shards"
    if encode_shards is not None:
        encode_shards(partial / STORE, shard_dir, config.shard_size, config.encoder)
    else:
        encode_store_shards(partial / STORE, shard_dir, config.shard_size, encoder, progress=progress)
    encoder_info = load_encoder_info(config.encoder, encoder)  # the Ray backend's encoder lives in its workers: loaded here for its dim
    embedding_files = shard_paths(shard_dir, n, config.shard_size)
    log(f"building a {config.index.kind} index over {n} vectors" + (f" in {config.index_shards} shards" if config.index_shards > 1 else ""), progress)
    if config.index_shards > 1:
        dense = ShardedIndex.build_from_files(embedding_files, config.index, config.index_shards)
        dense.save(partial / SHARD_DIR)
    else:
        dense = DenseIndex.build_from_files(embedding_files, config.index)  # streamed: never all vectors in memory at once
        dense.save(partial / FAISS_FILE)
    manifest = Manifest(encoder=config.encoder.spec, dim=encoder_info[0], normalized=encoder_info[1], index=asdict(dense.config),
                        passages=n, sources=[Source(**source)], built_at=_now(), index_shards=config.index_shards, precision=encoder_info[2])
    with PassageStore(partial / STORE, readonly=True) as store:
        commit_record(partial, manifest, store, dense).write(partial)
    for path in embedding_files:
        path.unlink()
    shard_dir.rmdir()


def load_encoder_info(config: EncoderConfig, encoder: Encoder | None) -> tuple[int, bool, str]:
    """(dimension, unit-normalized, precision of the vectors) of the encoder a build used."""
    encoder = encoder or load_encoder(config)
    dtype = str(getattr(encoder, "dtype", None)).removeprefix("torch.")
    return encoder.dim, encoder.normalized, {"None": "fp32", "bfloat16": "bf16", "float16": "fp16"}.get(dtype, dtype)


def _build_state(config: BuildConfig) -> dict:
    """What must match for an unfinished build to be resumed (device and batch size may change)."""
    corpus = config.corpus
    stat = None
    if corpus != "default":
        st = Path(corpus).stat()
        stat = [st.st_size, int(st.st_mtime)]
    return {
        "corpus": str(Path(corpus).resolve()) if corpus != "default" else corpus,
        "corpus_stat": stat,
        "format": config.fmt,
        "encoder": config.encoder.spec,
        "precision": config.encoder.precision,
        "index": asdict(config.index),
        "index_shards": config.index_shards,
        "split": asdict(config.split),
        "shard_size": config.shard_size,
        "on_error": config.on_error,
    }


def _ingest(config: BuildConfig, folder: Path, progress: bool) -> dict:
    """Corpus -> passage store, once: a resumed build finds the store complete and reuses it."""
    done = read_json(folder / INGESTED)
    if done:
        return done
    (folder / STORE).unlink(missing_ok=True)
    report = ReadReport()
    source = _append_corpus(folder / STORE, config.corpus, config.fmt, config.split, config.on_error, report, progress)
    write_json_atomic(folder / INGESTED, source)
    return source


def _append_corpus(store_path: Path, corpus: str, fmt: str, split: SplitConfig, on_error: str, report: ReadReport, progress: bool) -> dict:
    digest = hashlib.sha256()

    def hashed(passages: Iterable[Passage]):
        for p in passages:
            digest.update(_passage_record(p))
            yield p

    from tqdm import tqdm

    with PassageStore(store_path) as store:
        passages = tqdm(read_passages(corpus, fmt, split, on_error, report, stored=store.has), desc="reading corpus", unit=" passages", disable=not progress, file=sys.stderr)
        store.add(hashed(passages))
    log(report.summary(), progress)
    return {
        "source": corpus if corpus == "default" else str(Path(corpus).resolve()),  # absolute: "Repair:" commands work from any directory
        "format": detect_format(corpus) if fmt == "auto" else fmt,
        "sha256": digest.hexdigest(),
        "documents": report.documents,
        "passages": report.passages,
        "skipped": len(report.skipped),
        "skipped_examples": report.skipped[:10],
        "added_at": _now(),
    }

# --- add -------------------------------------------------------------------------------------


class AddedIndex(IndexFolder):
    """What add_to_index returns: the index as committed, and whether the corpus was in it already (nothing was done)."""

    def __init__(self, folder: IndexFolder, already_added: bool = False):
        super().__init__(folder.path, folder.manifest, folder.store, folder.dense)
        self.already_added = already_added


def add_to_index(
    path: str | Path,
    corpus: str | None = None,
    fmt: str = "auto",
    split: SplitConfig = SplitConfig(),
    on_error: str = "raise",
    encoder: Encoder | None = None,
    progress: bool = True,
) -> AddedIndex:
    """Append a corpus's passages to an index; they become searchable without a rebuild.

    Under the folder's lock (a second writer is refused): the source is recorded in the manifest
    as pending, the store appended (all or nothing), the new passages encoded, and the manifest
    rewritten as the commit. A killed add is finished by rerunning it, with or without the corpus.
    """
    folder = Path(path)
    Manifest.read(folder)  # a clear error for a folder that is not an index, before the lock file is made in it
    with folder_lock(folder, f"rag index add --index {folder}"):
        committed = open_index(folder)  # under the lock, checked: an add never builds on a damaged index
        manifest, dense = committed.manifest, committed.dense
        pending = _pending_source(folder, manifest, corpus, fmt, split)
        if pending is not None:
            _store_pending(folder, manifest, pending, split, on_error, progress)
        # New vectors in the precision the index's were made in (fp16 from a GPU build: the local default).
        precision = manifest.precision if manifest.precision in ("fp32", "bf16", "int8") else "auto"
        encoder = encoder or load_encoder(EncoderConfig(spec=manifest.encoder, precision=precision, inference_only=True))
        check_encoder(manifest, encoder.spec, folder)
        with PassageStore(folder / STORE, readonly=True) as store:
            n = len(store)
            if n == len(dense) and pending is None:
                return AddedIndex(committed, already_added=corpus is not None)  # nothing to add (`corpus` was added before)
            if n > len(dense):
                from tqdm import tqdm

                with tqdm(total=n - len(dense), desc="encoding new passages", unit=" passages", disable=not progress, file=sys.stderr) as bar:
                    dense.add(encode_shard(store, encoder, len(dense), n, on_batch=bar.update))
            superseded = _save_next_generation(folder, manifest, dense)
            manifest.passages = n
            for source in manifest.sources:
                source.pending = False
            commit_record(folder, manifest, store, dense).write(folder)  # the commit
        committed.store.close()
        for old in superseded + superseded_row_digests(folder, manifest):
            old.unlink(missing_ok=True)
    store = PassageStore(folder / STORE, readonly=True, rows=n)
    store.seal(load_row_digests(folder, manifest))
    return AddedIndex(IndexFolder(folder, manifest, store, dense))  # what was just committed, not read back


def _pending_source(folder: Path, manifest: Manifest, corpus: str | None, fmt: str, split: SplitConfig = SplitConfig()) -> Source | None:
    """The source this add is about: an interrupted one (finished first), else `corpus`, recorded before it is read."""
    pending = manifest.sources[-1] if manifest.sources and manifest.sources[-1].pending else None
    if pending is not None:
        if corpus is not None and Path(corpus).resolve() != Path(pending.source).resolve():
            raise RagError(f"an add of {pending.source} to {folder} was interrupted: finish it first with `rag index add --index {folder}`, then add {corpus}")
        return pending
    if corpus is None:
        return None
    if not Path(corpus).exists():
        raise RagError(f"{corpus}: no such corpus file or folder (nothing was changed)")
    if _already_added(manifest, corpus, fmt, split):
        return None  # a rerun of an add that finished (killed after its commit): nothing to do
    pending = Source(source=str(Path(corpus).resolve()), format=detect_format(corpus) if fmt == "auto" else fmt, added_at=_now(), pending=True)
    manifest.sources.append(pending)
    manifest.write(folder)
    return pending


def _already_added(manifest: Manifest, corpus: str, fmt: str, split: SplitConfig) -> bool:
    """The same file with the same passages (sha256) is a finished source of the index already."""
    same_file = [s for s in manifest.sources if not s.pending and Path(s.source).resolve() == Path(corpus).resolve()]
    if not same_file:
        return False
    digest = hashlib.sha256()
    for p in read_passages(corpus, fmt, split, on_error="skip"):
        digest.update(_passage_record(p))
    return any(s.sha256 == digest.hexdigest() for s in same_file)


def _passage_record(p: Passage) -> bytes:
    """What a source's sha256 covers, passage by passage."""
    return f"{p.id}\t{p.title}\t{p.text}\n".encode()


def _store_pending(folder: Path, manifest: Manifest, pending: Source, split: SplitConfig, on_error: str, progress: bool) -> None:
    """Append the pending source's passages to the store unless a killed run already did."""
    with PassageStore(folder / STORE, readonly=True) as store:
        stored = len(store)
    if stored > manifest.passages:  # appended before the kill (the append is all or nothing)
        return
    try:
        record = _append_corpus(folder / STORE, pending.source, pending.format, split, on_error, ReadReport(), progress)
    except RagError:  # nothing was appended: forget the source again
        manifest.sources.remove(pending)
        manifest.write(folder)
        raise
    for name, value in record.items():
        if name != "source":
            setattr(pending, name, value)
    manifest.write(folder)


def _save_next_generation(folder: Path, manifest: Manifest, dense) -> list[Path]:
    """Write the grown FAISS file under a name the manifest does not use yet (readers of the last
    commit keep reading theirs); returns the files the commit will leave unused."""
    current = manifest.dense_files(folder)
    last = current[-1]
    stem = last.name.split(".")[0]
    generation = len(manifest.sources)
    while (candidate := last.with_name(f"{stem}.g{generation}.faiss")) in current:
        generation += 1
    shard = dense.shards[-1] if isinstance(dense, ShardedIndex) else dense  # new rows went to the last shard
    shard.save(candidate)
    manifest.faiss_files = [str(p.relative_to(folder)) for p in current[:-1] + [candidate]]
    return [last]


# --- small helpers ---------------------------------------------------------------------------


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")
