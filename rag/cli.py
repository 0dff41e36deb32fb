"""`rag` command line: each subcommand parses its arguments into config dataclasses and calls the library."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rag.types import RagError

DEFAULT_INDEX = "indexes/default"


def _add_corpus_args(p: argparse.ArgumentParser, required: bool) -> None:
    from rag.corpus import FORMATS

    p.add_argument("--corpus", required=required, help="corpus file or folder, or 'default' (built-in Wikipedia lead sections)")
    p.add_argument("--format", default="auto", choices=("auto",) + FORMATS, help="corpus format (default: from the file name)")
    p.add_argument("--words-per-passage", type=int, default=100)
    p.add_argument("--skip-bad", action="store_true", help="skip bad records (counted and reported) instead of stopping")


def cmd_index_build(args) -> None:
    from rag.build import BuildConfig, build_index
    from rag.corpus import SplitConfig
    from rag.encoders import EncoderConfig
    from rag.index import IndexConfig

    config = BuildConfig(
        corpus=args.corpus,
        fmt=args.format,
        encoder=EncoderConfig(spec=args.encoder, device=args.device, batch_size=args.batch_size, fp16=args.fp16),
        index=IndexConfig(kind=args.kind),
        split=SplitConfig(words_per_passage=args.words_per_passage),
        shard_size=args.shard_size,
        on_error="skip" if args.skip_bad else "raise",
        overwrite=args.overwrite,
    )
    encode_shards = None
    if args.ray is not None:
        from rag.distributed import ray_shard_encoder

        encode_shards = ray_shard_encoder(address=args.ray or None, num_workers=args.ray_workers)
    folder = build_index(config, args.out, encode_shards=encode_shards)
    print(f"built {folder.path}: {folder.manifest.passages} passages, {folder.manifest.index['kind']} index, {folder.manifest.bytes_per_vector} bytes/vector")


def cmd_index_add(args) -> None:
    from rag.build import add_to_index
    from rag.corpus import SplitConfig

    folder = add_to_index(args.index, args.corpus, args.format, SplitConfig(words_per_passage=args.words_per_passage), "skip" if args.skip_bad else "raise")
    print(f"{folder.path}: now {folder.manifest.passages} passages")


def cmd_index_info(args) -> None:
    import json
    from dataclasses import asdict

    from rag.build import Manifest

    print(json.dumps(asdict(Manifest.read(Path(args.index))), indent=2))


def cmd_search(args) -> None:
    from rag.build import open_index
    from rag.retrieve import DenseRetriever

    retriever = DenseRetriever(open_index(args.index))
    for hit in retriever.retrieve([args.question], args.k)[0]:
        print(f"{hit.rank:>3}. [{hit.score:.4f}] {hit.passage.title} ({hit.passage.id})")
        print(f"     {_clip(hit.passage.text, args.width)}")


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rag", description="Open-domain question answering over your own Wikipedia.")
    sub = parser.add_subparsers(dest="command", required=True)

    index = sub.add_parser("index", help="build, extend and inspect dense indexes").add_subparsers(dest="index_command", required=True)
    b = index.add_parser("build", help="corpus -> passages -> embeddings -> FAISS index folder")
    _add_corpus_args(b, required=True)
    b.add_argument("--out", default=DEFAULT_INDEX, help="index folder to create (default: %(default)s)")
    b.add_argument("--kind", default="flat", choices=("flat", "hnsw", "ivfpq"))
    b.add_argument("--encoder", default="default", help="'default' (offline MiniLM), a sentence-transformers hub id or path, or dpr:Q_MODEL,CTX_MODEL")
    b.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    b.add_argument("--batch-size", type=int, default=64)
    b.add_argument("--fp16", action="store_true", help="half precision encoding on GPU")
    b.add_argument("--shard-size", type=int, default=4096, help="passages per embedding shard (the most a killed build re-encodes)")
    b.add_argument("--overwrite", action="store_true", help="rebuild an existing index folder")
    b.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS", help="encode shards as Ray tasks; no ADDRESS starts a local cluster")
    b.add_argument("--ray-workers", type=int, default=None, help="Ray encoding tasks at once (default: one per GPU, else per 2 CPUs)")
    b.set_defaults(func=cmd_index_build)

    a = index.add_parser("add", help="append passages to an existing index (no rebuild)")
    a.add_argument("--index", default=DEFAULT_INDEX)
    _add_corpus_args(a, required=False)
    a.set_defaults(func=cmd_index_add)

    i = index.add_parser("info", help="print an index's manifest")
    i.add_argument("--index", default=DEFAULT_INDEX)
    i.set_defaults(func=cmd_index_info)

    s = sub.add_parser("search", help="top-k passages for a question")
    s.add_argument("question")
    s.add_argument("--index", default=DEFAULT_INDEX)
    s.add_argument("-k", type=int, default=5)
    s.add_argument("--width", type=int, default=300, help="characters of passage text to print")
    s.set_defaults(func=cmd_search)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except RagError as e:
        print(f"rag: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rag: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
