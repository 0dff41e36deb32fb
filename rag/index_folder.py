"""The index-folder format: what a built index is on disk, and opening it with integrity checks.

indexes/NAME/
    manifest.json     what was built, from what, with which encoder; the commit point of every change
    passages.sqlite   the PassageStore; row i <-> FAISS row i (rows past `passages` are an add in flight)
    index.faiss       the DenseIndex, or
    index_shards/     00000.faiss, 00001.faiss ...: a ShardedIndex (manifest `index_shards` > 1)

    row_digests.gN.npy  one 8-byte digest per row of its number, id, title and text (rag.store.row_digest)

The manifest lists the FAISS files in row order with their sizes, the store's size, and a
fingerprint of sampled rows (passage id + vector), so a truncated, swapped or reordered file is
caught when the index is opened, cheaply (a few dozen rows are read), instead of answering wrong.
Every passage the opened index reads is checked against its row digest, so an edited or swapped
row of the store is reported as damage the moment a search would return it; `verify_index` checks
every row and every file whole (`rag index verify`).
"""
from __future__ import annotations

import hashlib
import shlex
import sqlite3
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from rag.encoders import Encoder, EncoderConfig, load_encoder, passage_side
from rag.files import ArtifactKind, describe, read_json, read_versioned_json, recover_folder, save_npy_atomic, write_json_atomic
from rag.index import DenseIndex, IndexConfig
from rag.sharded import SHARD_DIR, ShardedIndex, shard_files
from rag.store import PassageStore
from rag.types import Hit, RagError

MANIFEST_FORMAT = "rag-index v1"
MANIFEST, STORE, FAISS_FILE = "manifest.json", "passages.sqlite", "index.faiss"
# Everything rag writes in an index folder (the build's and add's own files, BM25, the lock); anything
# else is the user's and is never deleted by --overwrite.
INDEX_KIND = ArtifactKind("an index folder", MANIFEST, MANIFEST_FORMAT, owned=(
    "passages.sqlite", "passages.sqlite-*", "index.faiss", "index*.faiss", "index_shards", "row_digests.g*.npy",
    "bm25", "bm25.tmp*", ".lock", "build.json", "ingested.json", "shards"))
FINGERPRINT_ROWS = 64  # rows sampled for the fingerprint: enough to catch a reordering, cheap to check


@dataclass
class Source:
    """One corpus read into the index (`pending` while its `rag index add` has not finished)."""

    source: str
    format: str = "auto"
    sha256: str = ""
    documents: int = 0
    passages: int = 0
    skipped: int = 0
    skipped_examples: list = field(default_factory=list)
    added_at: str = ""
    pending: bool = False

    @classmethod
    def from_json(cls, data: dict, where: str) -> "Source":
        return cls(**_known_fields(cls, data, where))


@dataclass
class Manifest:
    encoder: str
    dim: int
    normalized: bool
    index: dict  # rag.index.IndexConfig as a dict
    passages: int
    sources: list[Source]
    built_at: str
    bytes_per_vector: float = 0.0
    index_shards: int = 1
    faiss_files: list[str] = field(default_factory=list)  # relative paths in row order; [] in indexes older than this field
    file_sizes: dict = field(default_factory=dict)  # relative path -> bytes (the store: its size at the last commit, a minimum)
    fingerprint: str = ""  # rag.index_folder.row_fingerprint at the last commit
    precision: str = "fp32"  # what the passage vectors were computed in (bf16 autocast: cosine >= 0.9999 to fp32)
    row_digests: str = ""  # the row-digest file (relative path); "" in indexes older than this field: passage text unchecked
    file_sha256: dict = field(default_factory=dict)  # FAISS and row-digest files -> sha256 at the last commit (checked by verify_index, not at open)
    format: str = MANIFEST_FORMAT
    extra: dict = field(default_factory=dict)

    @classmethod
    def read(cls, folder: Path) -> "Manifest":
        path = folder / MANIFEST
        if not path.exists():
            recover_folder(folder, INDEX_KIND)
        if not path.exists():
            raise RagError(not_an_index(folder))
        data = read_versioned_json(path, MANIFEST_FORMAT)
        try:
            return cls.from_json(data, str(path))
        except RagError as e:
            raise RagError(f"{folder} is damaged: {e}. Repair: {repair_command(folder, data)}") from e

    @classmethod
    def from_json(cls, data: dict, where: str) -> "Manifest":
        values = _known_fields(cls, data, where)
        values["sources"] = [Source.from_json(s, f"{where}: sources[{i}]") for i, s in enumerate(_typed(values, "sources", list, where))]
        for name, kind in (("dim", int), ("passages", int), ("index_shards", int), ("index", dict), ("encoder", str)):
            _typed(values, name, kind, where)
        if values["dim"] < 1 or values["passages"] < 0 or values["index_shards"] < 1:
            raise RagError(f"{where}: dim, passages or index_shards out of range")
        try:
            IndexConfig(**values["index"])
        except (TypeError, RagError) as e:
            raise RagError(f"{where}: field 'index': {e}") from e
        return cls(**values)

    def to_json(self) -> dict:
        return asdict(self)

    def write(self, folder: Path) -> None:
        write_json_atomic(folder / MANIFEST, self.to_json())

    def dense_files(self, folder: Path) -> list[Path]:
        """The FAISS files, in row order."""
        if self.faiss_files:
            return [folder / name for name in self.faiss_files]
        if self.index_shards > 1:
            return shard_files(folder / SHARD_DIR, self.index_shards)
        return [folder / FAISS_FILE]


class IndexFolder:
    """An opened index: manifest, passage store and dense index. Searching never changes it."""

    def __init__(self, path: Path, manifest: Manifest, store: PassageStore, dense: DenseIndex | ShardedIndex):
        self.path, self.manifest, self.store, self.dense = path, manifest, store, dense

    def search(self, query_vectors: np.ndarray, k: int) -> list[list[Hit]]:
        return self.store.hits(self.dense.search(query_vectors, k))

    def load_encoder(self, config: EncoderConfig | None = None) -> Encoder:
        """The encoder this index was built with (device, batch size and precision may differ)."""
        config = config or EncoderConfig(spec=self.manifest.encoder)
        check_encoder(self.manifest, config.spec, self.path)
        return load_encoder(config)


def passage_vectors(folder: IndexFolder) -> np.ndarray:
    """The index's passage vectors, read back from FAISS (exact for flat and HNSW indexes): what training scores against."""
    if folder.manifest.index.get("kind") == "ivfpq":
        raise RagError(f"{folder.path} is an IVF-PQ index: its vectors are compressed; joint training needs a flat or hnsw index of the same corpus")
    return np.ascontiguousarray(folder.dense.reconstruct(np.arange(len(folder.dense))), dtype=np.float32)


def write_refreshed_index(target: Path, folder: IndexFolder, vectors: np.ndarray, encoder_spec: str) -> None:
    """A new index folder at `target` over `folder`'s passages, with `vectors` from a fine-tuned passage encoder
    `encoder_spec` (joint training's index refresh)."""
    import shutil
    from dataclasses import replace

    target.mkdir(parents=True)
    shutil.copy(folder.path / STORE, target / STORE)
    dense = DenseIndex.build(vectors)
    dense.save(target / FAISS_FILE)
    manifest = replace(folder.manifest, encoder=encoder_spec, index=asdict(dense.config), index_shards=1, faiss_files=[],
                       extra={**folder.manifest.extra, "refreshed_from": str(folder.path.resolve())})
    with PassageStore(target / STORE, readonly=True, rows=manifest.passages) as store:
        commit_record(target, manifest, store, dense).write(target)


def not_an_index(folder: Path) -> str:
    """Why `folder` cannot be opened as an index, and the command that makes one (or resumes it)."""
    partial = folder.with_name(folder.name + ".partial") if folder.name else None
    if partial is not None and partial.is_dir():
        state = read_json(partial / "build.json") or {}
        corpus = state.get("corpus") if isinstance(state.get("corpus"), str) else "YOUR_CORPUS"
        return (f"{folder} is not built yet: an unfinished build waits in {partial}. Resume it by running the same build again: "
                f"rag index build --corpus {shlex.quote(corpus)} --out {shlex.quote(str(folder))} (with the options it was started with)")
    if not folder.exists():
        return f"there is no index at {folder}; build one with: rag index build --corpus default --out {shlex.quote(str(folder))}"
    if not folder.is_dir():
        return f"{folder} is a file, not an index folder"
    return f"{folder} is not an index folder (it holds {describe(folder)}, no {MANIFEST}); build one with: rag index build --corpus default --out {shlex.quote(str(folder) + '-index')}"


def check_encoder(manifest: Manifest, spec: str, folder: Path) -> None:
    """`spec` may search the index when it is the encoder the index was built with, or shares its passage
    tower (a query tower trained by `rag train retriever` against an index of that encoder, or the reverse)."""
    if spec != manifest.encoder and passage_side(spec) != passage_side(manifest.encoder):
        raise RagError(f"{folder} was built with encoder {manifest.encoder!r}, not {spec!r}: query vectors would not match its passage vectors. Use --encoder {manifest.encoder} or rebuild the index.")


def open_index(path: str | Path, encoder_spec: str | None = None, mmap: bool = False, dense_loader=None) -> IndexFolder:
    """The index at `path` as of its last commit, checked; an add in flight is not seen.

    mmap: map the FAISS files instead of reading them. dense_loader(files, IndexConfig, mmap) ->
    a VectorIndex: loads the FAISS files some other way (rag.distributed.open_index_in_ray_actors
    holds each shard in a Ray actor).
    """
    folder = Path(path)
    for attempt in range(3):  # an add may commit (and drop the files we were about to read) meanwhile
        manifest = Manifest.read(folder)
        if encoder_spec is not None:
            check_encoder(manifest, encoder_spec, folder)
        try:
            return _open_checked(folder, manifest, mmap, dense_loader)
        except RagError:
            if attempt == 2 or Manifest.read(folder) == manifest:
                raise
    raise AssertionError("unreachable")


def _open_checked(folder: Path, manifest: Manifest, mmap: bool, dense_loader) -> IndexFolder:
    check_file_sizes(folder, manifest)
    try:
        store = PassageStore(folder / STORE, readonly=True, rows=manifest.passages)
    except sqlite3.DatabaseError as e:
        raise damaged(folder, manifest, f"{folder / STORE} cannot be read ({e})") from e
    except RagError as e:  # unreadable, or fewer rows than the manifest committed
        raise damaged(folder, manifest, str(e)) from e
    if manifest.row_digests:
        store.seal(load_row_digests(folder, manifest), f"Repair: {repair_command(folder, manifest.to_json())}")
    dense = load_dense(folder, manifest, mmap, dense_loader)
    if len(dense) != manifest.passages or dense.dim != manifest.dim:
        raise damaged(folder, manifest, f"its FAISS index holds {len(dense)} vectors of {dense.dim} dimensions, the manifest says {manifest.passages} of {manifest.dim}")
    if manifest.fingerprint and row_fingerprint(store, dense, manifest.passages) != manifest.fingerprint:
        raise damaged(folder, manifest, "its passages and vectors no longer line up (a file was replaced or its rows reordered)")
    return IndexFolder(folder, manifest, store, dense)


def check_file_sizes(folder: Path, manifest: Manifest) -> None:
    for name, size in manifest.file_sizes.items():
        path = folder / name
        if not path.exists():
            raise damaged(folder, manifest, f"{path} is missing")
        actual = path.stat().st_size
        if actual < size if name == STORE else actual != size:  # the store only grows (an add in flight appends)
            raise damaged(folder, manifest, f"{path} is {actual:,} bytes, the manifest says {size:,} (truncated or replaced)")


def load_dense(folder: Path, manifest: Manifest, mmap: bool = False, dense_loader=None) -> DenseIndex | ShardedIndex:
    config, files = IndexConfig(**manifest.index), manifest.dense_files(folder)
    for path in files:
        if not path.exists():
            raise damaged(folder, manifest, f"{path} is missing")
    try:
        if dense_loader is not None:
            return dense_loader(files, config, mmap)
        dense = DenseIndex.load(files[0], config, mmap=mmap) if len(files) == 1 else ShardedIndex.load(files, config, mmap=mmap)
    except RuntimeError as e:  # faiss: truncated or not a FAISS file
        raise damaged(folder, manifest, f"a FAISS file cannot be read ({str(e).strip().splitlines()[-1][:200]})") from e
    except RagError as e:  # a FAISS file of another kind than the manifest's
        raise damaged(folder, manifest, str(e)) from e
    return dense


def load_row_digests(folder: Path, manifest: Manifest) -> np.ndarray:
    """The committed rows' digests, memory-mapped (8 bytes a row, read only where a search looks)."""
    path = folder / manifest.row_digests
    try:
        digests = np.load(path, mmap_mode="r")
    except (OSError, ValueError) as e:
        raise damaged(folder, manifest, f"{path} cannot be read ({e})") from e
    if digests.dtype != np.uint64 or digests.ndim != 1 or len(digests) < manifest.passages:
        raise damaged(folder, manifest, f"{path} holds {digests.shape} {digests.dtype}, not a digest for each of {manifest.passages:,} rows")
    return digests


def row_fingerprint(store: PassageStore, dense, n: int) -> str:
    """sha256 of the passage ids and (rounded) vectors of up to FINGERPRINT_ROWS rows spread over [0, n)."""
    if n == 0 or not hasattr(dense, "reconstruct"):
        return ""
    rows = np.unique(np.linspace(0, n - 1, min(n, FINGERPRINT_ROWS)).astype(np.int64))
    digest = hashlib.sha256()
    try:
        digest.update("\n".join(p.id for p in store.get_rows(rows)).encode())
    except sqlite3.DatabaseError as e:
        raise RagError(f"{store.path} cannot be read ({e})") from e
    digest.update(np.round(dense.reconstruct(rows), 3).astype(np.float16).tobytes())
    return digest.hexdigest()


def commit_record(folder: Path, manifest: Manifest, store: PassageStore, dense) -> Manifest:
    """The manifest's integrity fields (files, sizes, row digests, fingerprint) for the folder's current files.

    Row digests are written under a new name (readers of the last commit keep theirs); only rows new
    since the last commit are hashed. Returns the manifest; the caller writes it (the commit)."""
    _record_row_digests(folder, manifest, store)
    names = [str(p.relative_to(folder)) for p in manifest.dense_files(folder)]
    sizes = {name: (folder / name).stat().st_size for name in names + [STORE, manifest.row_digests]}
    manifest.file_sha256 = {name: file_sha256(folder / name) for name in names + [manifest.row_digests]}
    manifest.faiss_files, manifest.file_sizes = names, sizes
    manifest.bytes_per_vector = round(sum(sizes[n] for n in names) / max(manifest.passages, 1), 1)
    manifest.fingerprint = row_fingerprint(store, dense, manifest.passages)
    return manifest


def _record_row_digests(folder: Path, manifest: Manifest, store: PassageStore) -> None:
    # The last commit's digests (its rows are unchanged: an add only appends), then the new rows'.
    last = folder / manifest.row_digests if manifest.row_digests else None
    previous = np.load(last) if last is not None and last.exists() else np.empty(0, np.uint64)
    digests = np.concatenate([previous, store.digests(len(previous), manifest.passages)])
    generation = 0
    while (name := f"row_digests.g{generation}.npy") == manifest.row_digests or (folder / name).exists():
        generation += 1
    save_npy_atomic(folder / name, digests)
    manifest.row_digests = name


def superseded_row_digests(folder: Path, manifest: Manifest) -> list[Path]:
    """Row-digest files of earlier commits (deleted after a commit, as superseded FAISS files are)."""
    return [p for p in folder.glob("row_digests.g*.npy") if p.name != manifest.row_digests]


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def damaged(folder: Path, manifest: Manifest | None, problem: str) -> RagError:
    return RagError(f"{folder} is damaged: {problem}. Repair: {repair_command(folder, manifest.to_json() if manifest else {})}")


def repair_command(folder: Path, manifest: dict) -> str:
    """The commands that rebuild `folder` from the corpora its manifest (as JSON, maybe damaged) lists."""
    imported = (manifest.get("extra") or {}).get("import") if isinstance(manifest.get("extra"), dict) else None
    if isinstance(imported, dict) and isinstance(imported.get("command"), str):  # `rag index import` recorded how to redo it
        return imported["command"] + (" --overwrite" if "--overwrite" not in imported["command"] else "")
    sources = [s["source"] for s in manifest.get("sources") or [] if isinstance(s, dict) and isinstance(s.get("source"), str)]
    encoder = manifest.get("encoder") if isinstance(manifest.get("encoder"), str) else "default"
    steps = [f"rag index build --corpus {shlex.quote(sources[0] if sources else 'YOUR_CORPUS')} --out {shlex.quote(str(folder))} --overwrite"
             + (f" --encoder {shlex.quote(encoder)}" if encoder != "default" else "")]
    steps += [f"rag index add --index {shlex.quote(str(folder))} --corpus {shlex.quote(s)}" for s in sources[1:]]
    return " && ".join(steps)


def _known_fields(cls, data: dict, where: str) -> dict:
    if not isinstance(data, dict):
        raise RagError(f"{where}: expected a JSON object")
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise RagError(f"{where}: unknown field(s) {', '.join(map(repr, unknown))}: written by a newer rag or edited by hand")
    missing = sorted(f.name for f in fields(cls) if _required(f) and f.name not in data)
    if missing:
        raise RagError(f"{where}: missing field(s) {', '.join(map(repr, missing))}")
    return dict(data)


def _required(f) -> bool:
    return f.default is MISSING and f.default_factory is MISSING


def _typed(values: dict, name: str, kind: type, where: str):
    value = values[name]
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise RagError(f"{where}: field {name!r} should be {kind.__name__}, found {value!r}")
    return value
