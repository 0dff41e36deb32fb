"""`rag` command line: each subcommand parses its arguments into config dataclasses and calls the library."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rag.precision import PRECISIONS
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
        index=IndexConfig(kind=args.kind, opq=args.opq, refine=args.refine),
        split=SplitConfig(words_per_passage=args.words_per_passage),
        shard_size=args.shard_size,
        index_shards=args.index_shards,
        on_error="skip" if args.skip_bad else "raise",
        overwrite=args.overwrite,
    )
    encode_shards = None
    if args.ray is not None:
        from rag.distributed import ray_shard_encoder

        encode_shards = ray_shard_encoder(address=args.ray or None, num_workers=args.ray_workers)
    folder = build_index(config, args.out, encode_shards=encode_shards)
    print(f"built {folder.path}: {folder.manifest.passages} passages, {folder.manifest.index['kind']} index, {folder.manifest.bytes_per_vector} bytes/vector")
    from rag.bm25 import bm25_for_index

    bm25_for_index(folder)  # NAME/bm25/: BM25 and hybrid search work from the start


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


def _add_retriever_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fusion", default="rrf", choices=("rrf", "linear"), help="hybrid: reciprocal-rank fusion or linear mix of normalized scores")
    p.add_argument("--dense-weight", type=float, default=0.5, help="hybrid: weight of the dense side, BM25 gets 1 - it (default: %(default)s)")


def _add_reader_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--reader", default="default", help="'default' (the shipped span reader, models/reader), "
                   "a checkpoint or reader folder, a hub QA checkpoint id, or rag-sequence / rag-token")
    p.add_argument("--precision", default="auto", choices=PRECISIONS, help="span reader precision: auto = bf16 where the CPU/GPU runs it fast (default: %(default)s)")
    p.add_argument("--generator", default=None, help="seq2seq model for rag-sequence / rag-token: hub id or path (default: facebook/rag-<variant>-nq)")
    p.add_argument("--retriever", default="dense", choices=("dense", "bm25", "hybrid"))
    p.add_argument("--device", default=None, help="cpu, cuda ... (default: cuda when available)")
    _add_retriever_args(p)


def _hybrid_config(args):
    from rag.retrieve import HybridConfig

    return HybridConfig(fusion=args.fusion, dense_weight=args.dense_weight)


def cmd_search(args) -> None:
    from rag.build import open_index
    from rag.retrieve import load_retriever

    question = _checked(args.question)
    retriever = load_retriever(open_index(args.index, mmap=args.mmap), args.retriever, config=_hybrid_config(args))
    for hit in retriever.retrieve([question], args.k)[0]:
        print(f"{hit.rank:>3}. [{hit.score:.4f}] {hit.passage.title} ({hit.passage.id})")
        print(f"     {_clip(hit.passage.text, args.width)}")


def _add_eval_args(p: argparse.ArgumentParser) -> None:
    """Arguments every `rag eval` subcommand takes."""
    p.add_argument("--qa", required=True, help="question/answer file: NQ-open .jsonl, WebQuestions .json, DPR .csv/.tsv, TriviaQA/SQuAD .json, HF dataset")
    p.add_argument("--qa-format", default="auto", choices=("auto", "nq-open", "webquestions", "dpr-qas", "triviaqa", "squad", "hf"), help="default: from the file name")
    p.add_argument("--index", default=DEFAULT_INDEX)
    p.add_argument("--k", default="1,5,20,100", help="comma-separated k for top-k accuracy (default: %(default)s)")
    p.add_argument("--limit", type=int, default=None, help="only the first N questions")
    p.add_argument("--batch-size", type=int, default=256, help="questions per retrieve call")
    p.add_argument("--match", default="string", choices=("string", "regex"), help="answer matching: DPR's token rule, or regex answers (CuratedTREC)")
    p.add_argument("--out", default=None, help="output path prefix for PREFIX.json and PREFIX.png (default: eval/out/<command>-<qa file>)")


def _eval_out(args, command: str) -> Path:
    if args.out:
        return Path(args.out)
    return Path("eval/out") / f"{command}-{Path(args.qa).name.split('.')[0]}"


def cmd_eval_retrieval(args) -> None:
    from rag.build import open_index
    from rag.evaluate import evaluate_retrieval, parse_ks
    from rag.qa_data import load_qa
    from rag.retrieve import RETRIEVERS, load_retriever

    ks = parse_ks(args.k)
    kinds = [k.strip() for k in args.retrievers.split(",") if k.strip()]
    bad = [k for k in kinds if k not in RETRIEVERS]
    if bad or not kinds:
        raise RagError(f"--retrievers: unknown {', '.join(bad) or '(none given)'}; valid: {', '.join(RETRIEVERS)}")
    examples = load_qa(args.qa, args.qa_format, args.limit)
    index = open_index(args.index)
    encoder = index.load_encoder() if {"dense", "hybrid"} & set(kinds) else None
    retrievers = {kind: load_retriever(index, kind, encoder, _hybrid_config(args)) for kind in kinds}
    report = evaluate_retrieval(retrievers, examples, ks, batch_size=args.batch_size, mode=args.match)
    print(report.table())
    out = _eval_out(args, "retrieval")
    print(f"per-question results: {report.write_json(out.with_name(out.name + '.json'))}")
    print(f"plot: {report.write_plot(out.with_name(out.name + '.png'), title=f'{Path(args.qa).name} on {args.index}')}")


def cmd_eval_qa(args) -> None:
    from rag.evaluate import evaluate_qa, parse_ks
    from rag.pipeline import load_pipeline
    from rag.qa_data import load_qa

    pipeline = load_pipeline(args.index, args.reader, args.read_k, args.retriever, args.device, args.generator, _hybrid_config(args), args.precision)
    report = evaluate_qa(pipeline, load_qa(args.qa, args.qa_format, args.limit), parse_ks(args.k), batch_size=args.batch_size, mode=args.match, name=f"{args.retriever} + {args.reader}")
    print(report.table())
    out = _eval_out(args, "qa")
    print(f"per-question results: {report.write_json(out.with_name(out.name + '.json'))}")
    print(f"plot: {report.write_plot(out.with_name(out.name + '.png'), title=f'{Path(args.qa).name} on {args.index}')}")


def cmd_eval_reader(args) -> None:
    from rag.evaluate import evaluate_reader
    from rag.pipeline import load_reader
    from rag.read import SpanReader

    reader = load_reader(args.reader, args.device, precision=args.precision)
    if not isinstance(reader, SpanReader):
        raise RagError(f"rag eval reader: {args.reader!r} is not a span reader")
    report = evaluate_reader(reader, args.squad, args.limit, name=args.reader)
    print(report.table())
    out = Path(args.out) if args.out else Path("eval/out") / f"reader-{Path(args.squad).name.split('.')[0]}.json"
    print(f"per-question results: {report.write_json(out)}")


def _checked(question: str) -> str:
    from rag.pipeline import check_question

    checked = check_question(question)
    for note in checked.notes:
        print(f"rag: note: {note}", file=sys.stderr)
    return checked.text


def cmd_ask(args) -> None:
    from rag.pipeline import load_pipeline

    question = _checked(args.question)
    pipeline = load_pipeline(args.index, args.reader, args.k, args.retriever, args.device, args.generator, _hybrid_config(args), args.precision)
    answer = pipeline.answer([question])[0]
    if getattr(pipeline.reader, "trained", True) is False:
        print("note: this reader is UNTRAINED (a random span head): its answer is a random span, not a prediction")
    print(f"answer: {answer.text or '(none)'}")
    print(f"score:  {answer.score:.4f}  (p(answer | question), marginalized over {args.k} passages)")
    spans = {}
    for span in answer.spans:  # best first; a span overlapping a better one is not marked again
        kept = spans.setdefault(span.passage_id, [])
        if all(span.end <= k.start or span.start >= k.end for k in kept):
            kept.append(span)
    for hit in answer.evidence:
        text = hit.passage.text
        for span in sorted(spans.get(hit.passage.id, ()), key=lambda s: -s.start):  # mark the answer: >>text<<
            text = f"{text[: span.start]}>>{text[span.start : span.end]}<<{text[span.end :]}"
        print(f"{hit.rank:>3}. [{hit.score:.4f}] {hit.passage.title} ({hit.passage.id})")
        print(f"     {_clip(text, args.width)}")


def cmd_train(args) -> None:
    from rag.train import TrainConfig, train

    if not args.questions:
        raise RagError("rag train: --questions is required for joint training (or use `rag train reader --squad FILE`)")

    config = TrainConfig(
        questions=args.questions, index=args.index, out=args.out, reader=args.reader, generator=args.generator, k=args.k, epochs=args.epochs,
        max_questions=args.limit or 0, batch_size=args.batch_size, reader_lr=args.reader_lr, query_lr=args.query_lr,
        train_query_encoder=not args.freeze_query_encoder, refresh_every=args.refresh_every, max_length=args.max_length,
        save_every=args.save_every, seed=args.seed, device=args.device,
    )
    report = train(config)
    print(f"trained {report.steps} steps on {report.questions_seen} questions ({report.questions_used} with an answer in their top-{args.k}), "
          f"mean loss {report.mean_loss:.3f}: checkpoint {report.checkpoint}")
    print(f"use it: rag ask \"QUESTION\" --index {Path(report.checkpoint) / 'index' if args.refresh_every else args.index} --reader {report.checkpoint}")


def _add_train_reader_parser(sub) -> None:
    from rag.train_reader import ReaderTrainConfig as C

    r = sub.add_parser("reader", help="supervised reading comprehension: train the span reader on a SQuAD-format file (BERT's recipe)")
    r.add_argument("--squad", required=True, help="SQuAD v1.1 JSON or .json.gz with answer offsets")
    r.add_argument("--out", required=True, help="checkpoint folder; rerunning with the same settings resumes it; OUT/reader is the trained reader")
    r.add_argument("--start-from", default=C.start_from, help="'default' (MiniLM + new span head) or a span-reader folder (default: %(default)s)")
    r.add_argument("--max-length", type=int, default=C.max_length, help="tokens per window (default: %(default)s)")
    r.add_argument("--doc-stride", type=int, default=C.doc_stride, help="tokens of overlap between windows of a long paragraph (default: %(default)s)")
    r.add_argument("--batch-size", type=int, default=C.batch_size, help="windows per optimizer step (default: %(default)s)")
    r.add_argument("--lr", type=float, default=C.lr, help="peak learning rate, linear warmup and decay (default: %(default)s)")
    r.add_argument("--epochs", type=float, default=C.epochs, help="passes over the windows; fractions allowed (default: %(default)s)")
    r.add_argument("--max-steps", type=int, default=C.max_steps, help="stop after N optimizer steps (0: no limit)")
    r.add_argument("--limit", type=int, default=C.limit, help="only the first N questions (0: all)")
    r.add_argument("--save-every", type=int, default=C.save_every, help="steps between checkpoints (default: %(default)s)")
    r.add_argument("--precision", default=C.precision, choices=PRECISIONS, help="autocast: auto = bf16 where the CPU/GPU supports it (default: %(default)s)")
    r.add_argument("--seed", type=int, default=C.seed)
    r.add_argument("--device", default=None, help="cpu, cuda ... (default: cuda when available)")
    r.set_defaults(func=cmd_train_reader)


def cmd_train_reader(args) -> None:
    from rag.train_reader import ReaderTrainConfig, train_reader

    report = train_reader(ReaderTrainConfig(
        squad=args.squad, out=args.out, start_from=args.start_from, max_length=args.max_length, doc_stride=args.doc_stride,
        batch_size=args.batch_size, lr=args.lr, epochs=args.epochs, max_steps=args.max_steps, limit=args.limit,
        save_every=args.save_every, precision=args.precision, seed=args.seed, device=args.device,
    ))
    print(f"trained {report.steps} steps on {report.windows:,} windows in {report.seconds / 60:.1f} min, loss {report.mean_loss:.3f}: reader {report.reader}")
    print(f"check it: rag eval reader --squad SQUAD_DEV_FILE --reader {report.reader}")


def cmd_export_reader(args) -> None:
    from rag.train_reader import export_reader

    print(f"exported {args.source} as fp16 weights: {export_reader(args.source, args.out)}")


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def cmd_demo(args) -> None:
    from rag.app import DemoConfig, launch_demo

    retrievers = {"retrievers": tuple(args.retrievers)} if args.retrievers else {}
    launch_demo(DemoConfig(index=args.index, reader=args.reader, k=args.k, device=args.device, host=args.host, port=args.port, **retrievers))


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
    b.add_argument("--index-shards", type=int, default=1, help="split the FAISS index into N files; search merges their exact top-k")
    b.add_argument("--opq", action="store_true", help="with --kind ivfpq: OPQ rotation before PQ (better recall, same bytes/vector)")
    b.add_argument("--refine", default="sq8", choices=("sq8", "flat", "none"), help="with --kind ivfpq: re-score candidates with 8-bit (+dim bytes/vector) or exact vectors, or not at all (default: %(default)s)")
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
    s.add_argument("--mmap", action="store_true", help="memory-map the FAISS index instead of reading it (indexes larger than RAM)")
    s.add_argument("--retriever", default="dense", choices=("dense", "bm25", "hybrid"))
    _add_retriever_args(s)
    s.set_defaults(func=cmd_search)

    ev = sub.add_parser("eval", help="evaluate on question/answer sets: retrieval accuracy, QA exact match").add_subparsers(dest="eval_command", required=True)
    er = ev.add_parser("retrieval", help="top-k retrieval accuracy of dense, BM25 and hybrid side by side (DPR Table 2)")
    _add_eval_args(er)
    er.add_argument("--retrievers", default="dense,bm25,hybrid", help="comma-separated, of dense, bm25, hybrid (default: %(default)s)")
    _add_retriever_args(er)
    er.set_defaults(func=cmd_eval_retrieval)

    eq = ev.add_parser("qa", help="exact match and F1 of retrieve -> read, next to top-k retrieval accuracy")
    _add_eval_args(eq)
    _add_reader_args(eq)
    eq.add_argument("--read-k", type=int, default=10, help="passages the reader reads per question (default: %(default)s)")
    eq.set_defaults(func=cmd_eval_qa, batch_size=32)

    rr = ev.add_parser("reader", help="reading comprehension with the gold paragraph: SQuAD EM/F1 of the reader alone")
    rr.add_argument("--squad", required=True, help="SQuAD v1.1 JSON (or .json.gz), e.g. dev-v1.1.json")
    rr.add_argument("--reader", default="default", help="'default' (the shipped span reader) or a reader folder (default: %(default)s)")
    rr.add_argument("--limit", type=int, default=0, help="only the first N questions (0: all)")
    rr.add_argument("--precision", default="auto", choices=PRECISIONS, help="reader precision (default: %(default)s)")
    rr.add_argument("--device", default=None, help="cpu, cuda ... (default: cuda when available)")
    rr.add_argument("--out", default=None, help="per-question JSON path (default: eval/out/reader-<squad file>.json)")
    rr.set_defaults(func=cmd_eval_reader)

    q = sub.add_parser("ask", help="answer a question: retrieve, read, print the answer, its score and its passages")
    q.add_argument("question")
    q.add_argument("--index", default=DEFAULT_INDEX)
    q.add_argument("-k", "--k", type=int, default=10, help="passages retrieved and read (default: %(default)s)")
    q.add_argument("--width", type=int, default=300, help="characters of passage text to print")
    _add_reader_args(q)
    q.set_defaults(func=cmd_ask)

    from rag.train import TrainConfig

    t = sub.add_parser("train", help="joint training of the reader (or generator) and the query encoder from question/answer pairs; "
                       "`rag train reader`: supervised span-reader training on SQuAD")
    t.add_argument("--questions", help="question/answer file(s), comma-separated (NQ-open .jsonl, WebQuestions .json, DPR .csv/.tsv ...); required for joint training")
    t.add_argument("--index", default=DEFAULT_INDEX, help="a flat or hnsw index (passage vectors are read back from it)")
    t.add_argument("--out", default=TrainConfig.out, help="checkpoint folder; rerunning resumes it (default: %(default)s)")
    t.add_argument("--reader", default="default", help="start from: 'default' (MiniLM + new span head), a reader folder, a hub QA id, or rag-sequence / rag-token")
    t.add_argument("--generator", default=None, help="seq2seq model for rag-sequence / rag-token (hub id or path)")
    t.add_argument("--k", type=int, default=TrainConfig.k, help="passages retrieved per question (default: %(default)s)")
    t.add_argument("--epochs", type=int, default=1)
    t.add_argument("--limit", type=int, default=None, help="only the first N questions (several --questions files are taken in turn)")
    t.add_argument("--batch-size", type=int, default=TrainConfig.batch_size, help="questions per optimizer step (default: %(default)s)")
    t.add_argument("--reader-lr", type=float, default=TrainConfig.reader_lr, help="(default: %(default)s)")
    t.add_argument("--query-lr", type=float, default=TrainConfig.query_lr, help="query (and passage) encoder learning rate (default: %(default)s)")
    t.add_argument("--freeze-query-encoder", action="store_true", help="train the reader alone (baseline for joint training)")
    t.add_argument("--refresh-every", type=int, default=0, metavar="N", help="train the passage encoder too; re-encode passages and rebuild the index every N steps")
    t.add_argument("--max-length", type=int, default=TrainConfig.max_length, help="reader input tokens (default: %(default)s)")
    t.add_argument("--save-every", type=int, default=TrainConfig.save_every, help="steps between checkpoints (default: %(default)s)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default=None, help="cpu, cuda ... (default: cuda when available)")
    t.set_defaults(func=cmd_train)
    _add_train_reader_parser(t.add_subparsers(dest="train_command", required=False, metavar="reader"))

    x = sub.add_parser("export-reader", help="save a trained span reader (folder or checkpoint) as fp16 weights only, the form that ships in models/")
    x.add_argument("source", help="a span-reader folder or a `rag train` checkpoint")
    x.add_argument("--out", required=True, help="the new reader folder (an existing one is replaced only if it is a reader folder)")
    x.set_defaults(func=cmd_export_reader)

    d = sub.add_parser("demo", help="the Gradio demo: ask questions in the browser, see the answer and its passages")
    d.add_argument("--index", default=DEFAULT_INDEX, help="index folder (default: %(default)s)")
    d.add_argument("--reader", default="default", help="'default' (MiniLM span reader), a checkpoint path or a hub id (as for `rag ask`)")
    d.add_argument("--retrievers", nargs="+", default=None, metavar="KIND", help="retrievers to load and offer: dense, bm25, hybrid (default: all three)")
    d.add_argument("-k", type=int, default=5, help="passages to read per question, the page's starting value")
    d.add_argument("--device", default=None, help="cpu, cuda ... (default: cuda when available)")
    d.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: localhost only; 0.0.0.0 for all)")
    d.add_argument("--port", type=int, default=7860)
    d.set_defaults(func=cmd_demo)
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
