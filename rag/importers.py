"""`rag index import`: pre-computed passage vectors -> an index folder, the same kind a build makes.

No passage is re-encoded: the vectors come from a .npy / .safetensors matrix beside a passage file,
Hugging Face `wiki_dpr` (parquet files, a `save_to_disk` folder, or streamed from the hub) or a
pyserini FAISS index folder (rag.import_sources reads them). Rows stream through in chunks: the
passages go to the store in batches, the vectors to FAISS (flat, HNSW) or, for IVF-PQ, to spill
files in NAME.partial/shards/ that a sample is trained on before they are added chunk by chunk.

Like a build, an import writes NAME.partial/ and publishes it whole; the manifest gets the same
integrity record (row digests, file sizes and sha256, fingerprint) through commit_record, so
`open_index`, `rag search`, `rag index verify`, BM25 and `rag index add` treat it as any index.
Nothing is ever unpickled: .npy files are read with allow_pickle=False, an object array is refused.
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from rag.console import log, positive_int
from rag.index import IndexConfig
from rag.types import RagError

DPR_NQ_ENCODER = "dpr:facebook/dpr-question_encoder-single-nq-base,facebook/dpr-ctx_encoder-single-nq-base"
DEFAULT_ENCODERS = {"wiki-dpr": DPR_NQ_ENCODER, "hub": DPR_NQ_ENCODER}  # the other sources cannot say which encoder made them
SPILL = "shards"  # NAME.partial/shards/: IVF-PQ's vectors between reading and adding (a build's shard folder)
UNIT_TOLERANCE = 5e-3  # |norm - 1| under this for every row of the first chunk: unit-normalized (fp16 rounding included)


@dataclass(frozen=True)
class ImportConfig:
    encoder: str  # the query encoder that goes with the vectors (recorded in the manifest; never loaded here)
    index: IndexConfig = IndexConfig()
    normalized: bool | None = None  # None: measured on the first chunk; True is checked against it
    chunk_size: int = 65_536  # rows read, stored and added at a time (768-d float32: 200 MB)
    overwrite: bool = False
    command: str = ""  # the `rag index import ...` that made it, recorded in the manifest (extra.import.command)


@dataclass
class _Origin:
    """What one input file contributed (a manifest source): its passages' sha256, as a build records it."""

    sha256: object = field(default_factory=hashlib.sha256)
    passages: int = 0


def import_index(source, out: str | Path, config: ImportConfig, progress: bool = True):
    """Write `source`'s passages and vectors as the index folder `out` (an IndexFolder, opened and checked).

    A kill leaves only OUT.partial/; a rerun of the same import discards it and starts over, or, when
    the import had finished and was killed before its swap, publishes it without redoing anything.
    """
    from rag.build import BUILD_STATE, _output_path
    from rag.files import make_scratch, publish_folder, read_json, remove_scratch, write_json_atomic
    from rag.index_folder import INDEX_KIND, MANIFEST, open_index

    out = _output_path(out)
    partial = out.with_name(out.name + ".partial")
    _check_output(out, config, source.inputs)
    state = {"import": source.state(), "encoder": config.encoder, "index": asdict(config.index), "normalized": config.normalized}
    finished = (partial / MANIFEST).exists() and read_json(partial / BUILD_STATE) == state
    if partial.exists() and not finished:
        log(f"discarding the unfinished import or build in {partial}: starting over", progress)
        remove_scratch(partial, INDEX_KIND)
    if not finished:
        make_scratch(partial)
        write_json_atomic(partial / BUILD_STATE, state)
        try:
            _fill(source, partial, config, progress)
        except RagError:  # bad input found midway: nothing worth keeping was made
            remove_scratch(partial, INDEX_KIND)
            raise
    publish_folder(partial, out, INDEX_KIND)
    (out / BUILD_STATE).unlink(missing_ok=True)
    return open_index(out)


def _check_output(out: Path, config: ImportConfig, inputs: list[Path]) -> None:
    """As a build: refuse an existing output without --overwrite, one that is not an index folder, or one holding an input."""
    from rag.files import check_not_inside, check_replaceable, recover_folder
    from rag.index_folder import INDEX_KIND

    recover_folder(out, INDEX_KIND)
    if not out.exists():
        return
    if not config.overwrite:
        raise RagError(f"{out} already exists; pass --overwrite to replace it, or choose another --out (nothing was written)")
    for path in inputs:
        check_not_inside(path, out, "the input")
    check_replaceable(out, INDEX_KIND, "Choose another --out.")


def _fill(source, partial: Path, config: ImportConfig, progress: bool) -> None:
    """Stream the source into NAME.partial: store and FAISS chunk by chunk, then the manifest (the commit)."""
    from tqdm import tqdm

    from rag.build import _now, _passage_record
    from rag.index_folder import FAISS_FILE, STORE, Manifest, Source, commit_record
    from rag.store import PassageStore

    if source.note:  # e.g. vectors decoded from a compressed FAISS index
        log(source.note, progress)
    dense = _DenseWriter(config.index, partial / SPILL)
    origins: dict[str, _Origin] = {}
    vectors_sha256 = hashlib.sha256()
    normalized = config.normalized
    with PassageStore(partial / STORE) as store, \
            tqdm(total=source.rows, desc="importing", unit=" passages", disable=not progress, file=sys.stderr) as bar, \
            contextlib.closing(source.chunks(config.chunk_size, partial)) as chunks:
        for chunk in chunks:
            vectors = _checked_vectors(chunk, dense.dim)
            if dense.dim is None:
                normalized = _normalized(vectors, config.normalized, chunk.where)
            _add_passages(store, chunk)
            origin = origins.setdefault(chunk.origin, _Origin())
            for p in chunk.passages:
                origin.sha256.update(_passage_record(p))
            origin.passages += len(chunk.passages)
            vectors_sha256.update(vectors.tobytes())
            dense.add(vectors)
            bar.update(len(chunk.passages))
        n = len(store)
    if n == 0:
        raise RagError(f"{source.name}: no passages to import")
    log(f"building the {config.index.kind} index over {n:,} imported vectors", progress)
    index = dense.finish(n)
    index.save(partial / FAISS_FILE)
    sources = [Source(source=name, format=source.origin_format(name), sha256=o.sha256.hexdigest(), documents=o.passages, passages=o.passages, added_at=_now())
               for name, o in origins.items()]
    manifest = Manifest(encoder=config.encoder, dim=index.dim, normalized=normalized, index=asdict(index.config), passages=n, sources=sources,
                        built_at=_now(), precision=source.precision, extra={"import": {**source.extra(), "vectors_sha256": vectors_sha256.hexdigest(), "command": config.command}})
    with PassageStore(partial / STORE, readonly=True) as store:
        commit_record(partial, manifest, store, index).write(partial)


class _DenseWriter:
    """FAISS filled chunk by chunk: flat and HNSW take each chunk as it comes; IVF-PQ spills the chunks
    to .npy files, trains on rag's fixed sample of rows (rag.index.training_sample) and then adds them."""

    def __init__(self, config, spill: Path):
        self.config, self.spill = config, spill
        self.dim: int | None = None
        self.raw = None
        self.files: list[tuple[Path, int]] = []

    def add(self, vectors: np.ndarray) -> None:
        from rag.files import save_npy_atomic
        from rag.index import INDEX_KINDS

        self.dim = vectors.shape[1]
        kind = INDEX_KINDS[self.config.kind]
        if kind.trains:  # the training sample is drawn from all the rows: keep them until the last chunk
            self.spill.mkdir(exist_ok=True)
            path = self.spill / f"{len(self.files):05d}.npy"
            save_npy_atomic(path, vectors)
            self.files.append((path, len(vectors)))
            return
        if self.raw is None:  # the raw FAISS index: DenseIndex.add would copy it to a GPU after every chunk
            self.raw = kind.factory(vectors[:0], self.config)
        self.raw.add(vectors)

    def finish(self, n: int):
        from rag.index import INDEX_KINDS, DenseIndex, VectorBlocks, training_sample

        kind = INDEX_KINDS[self.config.kind]
        if not kind.trains:
            return DenseIndex(self.raw, self.config)
        config = kind.resolve(self.config, n, self.dim)
        raw = kind.factory(training_sample(VectorBlocks.from_files([path for path, _ in self.files]), config), config)
        for path, _ in self.files:
            raw.add(np.load(path, allow_pickle=False))
            path.unlink()
        self.spill.rmdir()
        return DenseIndex(raw, config)


def _checked_vectors(chunk, dim: int | None) -> np.ndarray:
    """The chunk's vectors as contiguous float32, checked: the same dimension as before, finite values."""
    vectors = chunk.vectors
    if vectors.ndim != 2 or len(vectors) != len(chunk.passages):
        raise RagError(f"{chunk.where}: {len(chunk.passages)} passages but vectors of shape {vectors.shape}")
    if dim is not None and vectors.shape[1] != dim:
        raise RagError(f"{chunk.where}: {vectors.shape[1]}-d vectors after {dim}-d ones (embeddings of unequal length): every vector must have the same dimension")
    with np.errstate(over="ignore"):  # float64 beyond float32's range becomes inf, refused below
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    bad = np.flatnonzero(~np.isfinite(vectors).all(axis=1))
    if len(bad):
        raise RagError(f"{chunk.where}: the vector of passage {chunk.passages[bad[0]].id!r} holds NaN or infinity ({len(bad)} such vectors in these rows)")
    return vectors


def _normalized(vectors: np.ndarray, claimed: bool | None, where: str) -> bool:
    """--normalized as claimed (True is checked against the first chunk), or measured when not given."""
    norms = np.linalg.norm(vectors, axis=1)
    unit = bool(np.all(np.abs(norms - 1) < UNIT_TOLERANCE))
    if claimed and not unit:
        raise RagError(f"--normalized, but the vectors are not of unit length (norms {norms.min():.4g} to {norms.max():.4g} in {where}): "
                       "pass --no-normalized, or neither flag to have it measured")
    return unit if claimed is None else claimed


def _add_passages(store, chunk) -> None:
    """Append the chunk's passages; a duplicate id is named with the rows it was found at."""
    start = len(store)
    try:
        store.add(chunk.passages)
    except RagError as e:
        raise RagError(f"{chunk.where}: {_duplicate(store, chunk.passages, start) or e}; nothing was imported") from e


def _duplicate(store, passages, start: int) -> str:
    """Which id of a failed store.add was a duplicate, and where (the store holds the earlier chunks)."""
    seen: dict[str, int] = {}
    for i, p in enumerate(passages):
        if p.id in seen or store.has(p.id):
            where = f"row {seen[p.id]:,}" if p.id in seen else "an earlier row"
            return f"duplicate passage id {p.id!r} at row {start + i:,} ({where} has it already)"
        seen[p.id] = start + i
    return ""


# --- the command -----------------------------------------------------------------------------


def add_import_parser(index_commands, func) -> None:
    """`rag index import` in the `rag index` subparsers (rag.cli); `func` runs it (rag.commands.cmd_index_import)."""
    from rag.index import KINDS, REFINES

    p = index_commands.add_parser("import", help="pre-computed passage vectors (a .npy/.safetensors matrix, wiki_dpr, a pyserini FAISS index) -> an index folder, nothing re-encoded")
    what = p.add_mutually_exclusive_group(required=True)
    what.add_argument("--vectors", metavar="FILE", help="a 2-d float matrix, .npy (never unpickled) or .safetensors: row i is passage i of --passages")
    what.add_argument("--wiki-dpr", nargs="+", metavar="PATH", help="Hugging Face wiki_dpr: parquet files or folders of them (read in sorted path order), or a save_to_disk folder")
    what.add_argument("--pyserini", metavar="FOLDER", help="a pyserini FAISS index folder (`index` + `docid`); the texts come from --passages, looked up by id")
    what.add_argument("--from-hub", metavar="DATASET", help="stream a wiki_dpr-style dataset from the Hugging Face hub (needs a network), e.g. wiki_dpr with --config psgs_w100.nq.exact")
    p.add_argument("--passages", metavar="FILE", help="with --vectors or --pyserini: the passages, one a record (DPR psgs_w100.tsv kept as is, JSONL, CSV, parquet)")
    p.add_argument("--format", default="auto", choices=("auto", "dpr-tsv", "jsonl", "csv", "hf"), help="format of --passages (default: from the file name)")
    p.add_argument("--tensor", default=None, help="with a .safetensors file holding several tensors: the one holding the vectors")
    p.add_argument("--config", default=None, help="with --from-hub: the dataset's configuration, e.g. psgs_w100.nq.exact")
    p.add_argument("--split", default="train", help="with --from-hub: the split (default: %(default)s)")
    p.add_argument("--encoder", default=None, help="the query encoder the vectors go with, recorded in the manifest: required for --vectors and --pyserini (e.g. 'default' for MiniLM vectors); "
                   f"wiki_dpr default: {DPR_NQ_ENCODER}")
    p.add_argument("--out", required=True, help="index folder to create")
    p.add_argument("--overwrite", action="store_true", help="replace an existing index folder")
    p.add_argument("--kind", default="flat", choices=KINDS, help="FAISS index kind (default: %(default)s)")
    p.add_argument("--opq", action="store_true", help="with --kind ivfpq: OPQ rotation before PQ")
    p.add_argument("--refine", default="none", choices=REFINES, help="with --kind ivfpq: re-score candidates with 8-bit or exact vectors (default: %(default)s)")
    p.add_argument("--normalized", action=argparse.BooleanOptionalAction, default=None, help="record the vectors as unit-normalized (checked), or --no-normalized (DPR's are not); default: measured")
    p.add_argument("--chunk-size", type=positive_int, default=ImportConfig.chunk_size, help="rows read and added at a time (default: %(default)s)")
    p.add_argument("--no-bm25", action="store_true", help="do not build the BM25 index now (the first BM25 search builds it)")
    p.set_defaults(func=func)


def import_command(args) -> None:
    """rag index import, given its parsed arguments."""
    from rag.bm25 import bm25_for_index

    index_config = IndexConfig(kind=args.kind, opq=args.opq, refine=args.refine)  # options of another kind refused before any reading
    source = open_source(args)
    encoder = args.encoder or DEFAULT_ENCODERS.get(source.kind)
    if not encoder:
        raise RagError(f"--encoder is required with --{source.kind}: name the query encoder these vectors were made for (rag cannot guess it), "
                       "e.g. --encoder default for all-MiniLM-L6-v2 vectors, or dpr:QUESTION_MODEL,CONTEXT_MODEL (nothing was written)")
    if encoder.startswith("dpr:") and len([n for n in encoder.removeprefix("dpr:").split(",") if n.strip()]) != 2:
        raise RagError(f"a DPR encoder is 'dpr:QUESTION_MODEL,CONTEXT_MODEL', got {encoder!r}")
    config = ImportConfig(encoder=encoder, index=index_config, normalized=args.normalized,
                          chunk_size=args.chunk_size, overwrite=args.overwrite, command=_command_line(args, encoder))
    folder = import_index(source, args.out, config, progress=not args.quiet)
    m = folder.manifest
    print(f"imported {folder.path}: {m.passages:,} passages, {m.dim}-d vectors ({'unit-normalized' if m.normalized else 'not normalized'}) for encoder {m.encoder}, "
          f"{m.index['kind']} index, {m.bytes_per_vector} bytes/vector")
    if not args.no_bm25:
        bm25_for_index(folder, progress=not args.quiet, explain_missing=False)


def _command_line(args, encoder: str) -> str:
    """The import as one command (paths absolute), to redo it: what `rag index info --json` shows under extra.import.command."""
    import shlex

    def path(p):
        return str(Path(p).resolve())

    words = ["rag", "index", "import"]
    for flag, value in (("--vectors", args.vectors and path(args.vectors)), ("--pyserini", args.pyserini and path(args.pyserini)),
                        ("--from-hub", args.from_hub), ("--config", args.config), ("--passages", args.passages and path(args.passages)),
                        ("--tensor", args.tensor)):
        words += [flag, value] if value else []
    words += ["--wiki-dpr", *map(path, args.wiki_dpr)] if args.wiki_dpr else []
    words += ["--split", args.split] if args.from_hub else []
    words += ["--format", args.format] if args.format != "auto" else []
    words += ["--encoder", encoder, "--out", path(args.out), "--kind", args.kind] + (["--opq"] if args.opq else []) + (["--refine", args.refine] if args.refine != "none" else [])
    words += ["--normalized" if args.normalized else "--no-normalized"] if args.normalized is not None else []
    return shlex.join(words)


def open_source(args):
    """The import source the arguments name, its inputs checked before anything is written."""
    from rag import import_sources as sources

    needs_passages = args.vectors is not None or args.pyserini is not None
    if needs_passages and not args.passages:
        raise RagError(f"--{'vectors' if args.vectors else 'pyserini'} needs --passages FILE: the passage texts, row by row or by id")
    if not needs_passages and args.passages:
        raise RagError("--passages goes with --vectors or --pyserini; wiki_dpr holds its own texts")
    if args.tensor and not (args.vectors or "").endswith(".safetensors"):
        raise RagError("--tensor names a tensor of a .safetensors --vectors file")
    if args.config and not args.from_hub:
        raise RagError("--config goes with --from-hub")
    if args.vectors:
        return sources.MatrixSource(args.vectors, args.passages, args.format, args.tensor)
    if args.pyserini:
        from rag.import_pyserini import PyseriniSource

        return PyseriniSource(args.pyserini, args.passages, args.format)
    if args.wiki_dpr:
        return sources.WikiDprSource.from_paths(args.wiki_dpr)
    if not args.config:
        raise RagError(f"--from-hub {args.from_hub} needs --config, e.g. --config psgs_w100.nq.exact")
    return sources.WikiDprSource.from_hub(args.from_hub, args.config, args.split)
