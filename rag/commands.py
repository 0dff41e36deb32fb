"""What each `rag` command does, given its parsed arguments (rag.cli builds the parser).

Every command calls the same library functions as the demo and eval/; a RagError it raises is
printed by rag.cli.main as one message with exit code 2.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from pathlib import Path

from rag.cli_render import eval_plan, print_answer, print_search, ranking_json, shortfall
from rag.console import printable
from rag.types import RagError


def cmd_index_build(args) -> None:
    from rag.build import BuildConfig, build_index
    from rag.corpus import SplitConfig
    from rag.encoders import EncoderConfig

    config = BuildConfig(
        corpus=args.corpus,
        fmt=args.format,
        encoder=EncoderConfig(spec=args.encoder, device=args.device, batch_size=args.batch_size, precision=args.precision, inference_only=True),
        index=_index_config(args),
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

    bm25_for_index(folder, explain_missing=False)  # NAME/bm25/: BM25 and hybrid search work from the start


def _index_config(args):
    """IndexConfig from build options (an option that cannot apply to --kind is its error, not ignored)."""
    from rag.index import IndexConfig

    return IndexConfig(kind=args.kind, opq=args.opq, refine=args.refine)


def cmd_index_add(args) -> None:
    from rag.build import add_to_index
    from rag.corpus import SplitConfig

    folder = add_to_index(args.index, args.corpus, args.format, SplitConfig(words_per_passage=args.words_per_passage), "skip" if args.skip_bad else "raise")
    if folder.already_added:
        print(f"{args.corpus} is already in {folder.path} (same passages): nothing to do; the index holds {folder.manifest.passages:,} passages")
    else:
        print(f"{folder.path}: now {folder.manifest.passages:,} passages")


def cmd_index_info(args) -> None:
    from rag.index_folder import Manifest

    manifest = Manifest.read(Path(args.index)).to_json()
    if args.json:
        print(json.dumps(manifest, indent=2))
        return
    index = manifest["index"]
    print(f"{args.index}: {manifest['passages']:,} passages, encoder {manifest['encoder']} ({manifest['dim']}-d), {index['kind']} index, "
          f"{manifest['bytes_per_vector']} bytes/vector, built {manifest['built_at']}")
    for source in manifest["sources"]:
        print(f"  {source['source']} ({source['format']}): {source['passages']:,} passages, {source['skipped']} skipped, added {source['added_at']}"
              + ("  [add not finished: rerun `rag index add`]" if source["pending"] else ""))


def cmd_index_verify(args) -> int:
    from rag.verify import verify_index

    report = verify_index(args.index, progress=not args.quiet)
    for note in report.notes:
        print(f"note: {note}")
    if not report.ok:
        print(f"{report.folder} is damaged:")
        for problem in report.problems:
            print(f"  {problem}")
        print(f"Repair: {report.repair}")
        return 1
    print(f"{report.folder}: all {report.rows:,} passages and every file match the last commit ({report.seconds:.1f} s)")
    return 0


def cmd_index_import(args) -> None:
    from rag.importers import import_command

    import_command(args)


def _hybrid_config(args):
    from rag.retrieve import HybridConfig

    return HybridConfig(fusion=args.fusion, dense_weight=args.dense_weight)


def _rerank_config(args):
    """--rerank N [--reranker R] as a rag.rerank.RerankConfig, or None when off."""
    from rag.rerank import RerankConfig

    if args.rerank < 0:
        raise RagError(f"--rerank must be 0 (off) or more, not {args.rerank}")
    return RerankConfig(depth=args.rerank, reranker=args.reranker, retrieval_weight=args.rerank_weight, max_length=args.rerank_max_length, device=getattr(args, "device", None)) if args.rerank else None


def _maybe_reranked(retriever, args, reranker=None):
    """`retriever`, re-ranked when --rerank asks; `reranker`: the one already loaded (several retrievers share it)."""
    from rag.readers import load_reranker, rerank_if_installed
    from rag.rerank import load_reranking

    config = _rerank_config(args) if reranker else rerank_if_installed(_rerank_config(args))  # rag search: as rag ask without models/reranker
    return load_reranking(retriever, config, reranker or load_reranker(config)) if config else retriever


def cmd_search(args) -> None:
    from rag.index_folder import open_index
    from rag.retrieve import load_retriever

    questions = _asked(args, "search")
    index = open_index(args.index, mmap=args.mmap)
    retriever = _maybe_reranked(load_retriever(index, args.retriever, config=_hybrid_config(args)), args)
    if args.questions is not None:
        return _search_batch(retriever, questions, args)
    question = questions[0][1]
    hits = retriever.retrieve([question], args.k)[0]
    if args.json:  # note: why fewer than k hits came back (None when k did)
        print(json.dumps({"question": question, "retriever": args.retriever, **ranking_json(retriever, args.reranker),
                          "note": shortfall(args.retriever, len(hits), args.k, len(index.store)), "hits": [h.to_json() for h in hits]}, ensure_ascii=False))
        return
    print_search(hits, args.retriever, retriever, args.reranker, args.k, len(index.store), args.width)


def _search_batch(retriever, questions: list[tuple[str, str]], args) -> None:
    """Many questions: a TREC run file (`--run`, pyserini's `qid Q0 docid rank score tag`), else JSON lines."""
    lines = []
    for start in range(0, len(questions), 256):
        batch = questions[start : start + 256]
        for (qid, question), hits in zip(batch, retriever.retrieve([q for _, q in batch], args.k)):
            if args.run:
                lines += [f"{qid} Q0 {h.passage.id.replace(' ', '_')} {h.rank} {h.score:.6f} rag-{args.retriever}" for h in hits]
            else:
                print(json.dumps({"id": qid, "question": question, "hits": [h.to_json() for h in hits]}, ensure_ascii=False), flush=True)
    if args.run:
        from rag.files import write_atomic

        write_atomic(Path(args.run), "".join(line + "\n" for line in lines).encode())
        print(f"{len(questions)} questions, {len(lines)} lines: {args.run}")


def _eval_out(out: str | None, command: str, source: str) -> Path:
    """--out, else eval/out/COMMAND-<name of the question file>."""
    return Path(out) if out else Path("eval/out") / f"{command}-{Path(source).name.split('.')[0]}"


def cmd_eval_retrieval(args) -> None:
    from rag.evaluate import evaluate_retrieval
    from rag.index_folder import open_index
    from rag.qa_data import load_qa
    from rag.retrieve import RETRIEVERS, load_retriever

    ks = args.k_list
    kinds = [k.strip() for k in args.retrievers.split(",") if k.strip()]
    bad = [k for k in kinds if k not in RETRIEVERS]
    if bad or not kinds:
        raise RagError(f"--retrievers: unknown {', '.join(bad) or '(none given)'}; valid: {', '.join(RETRIEVERS)}")
    examples = load_qa(_questions_file(args), args.questions_format, args.limit)
    index = open_index(args.index)
    encoder = index.load_encoder() if {"dense", "hybrid"} & set(kinds) else None
    retrievers = {kind: load_retriever(index, kind, encoder, _hybrid_config(args)) for kind in kinds}
    if args.rerank:  # each retriever with and without reranking, side by side, one reranker loaded for all
        from rag.readers import load_reranker

        reranker = load_reranker(_rerank_config(args))
        retrievers |= {f"{kind} + rerank {args.rerank}": _maybe_reranked(retrievers[kind], args, reranker) for kind in kinds}
        kinds = list(retrievers)
    reranked = [name for name in kinds if "+ rerank" in name]  # what takes long (~0.5 s a question for 50 on 2 cores): timed on the first questions
    per_question = _seconds_per_question(retrievers[reranked[0]], examples[:3], max(ks)) if reranked else 0.0
    print(eval_plan(kinds, len(examples), reranked, per_question), file=sys.stderr, flush=True)
    report = evaluate_retrieval(retrievers, examples, ks, batch_size=args.batch_size, mode=args.match)
    report = replace(report, configuration=_eval_configuration(args, index, retrievers=kinds), ceiling=_ceiling(index, examples))
    _write_eval(report, args, "retrieval")


def _questions_file(args) -> str:
    if not args.questions:
        raise RagError(f"rag eval {args.eval_command}: give the question/answer file with --questions FILE")
    return args.questions


def _seconds_per_question(retriever, examples, k: int) -> float:
    started = time.perf_counter()
    retriever.retrieve([ex.question for ex in examples], k)
    return (time.perf_counter() - started) / max(len(examples), 1)


def cmd_eval_qa(args) -> None:
    from rag.evaluate import evaluate_qa
    from rag.pipeline import load_pipeline
    from rag.qa_data import load_qa

    questions = _questions_file(args)  # before any model loads
    pipeline = load_pipeline(_pipeline_config(args, args.k))
    examples = load_qa(questions, args.questions_format, args.limit)
    report = evaluate_qa(pipeline, examples, args.k_list, batch_size=args.batch_size, mode=args.match, name=f"{args.retriever} + {args.reader}")
    configuration = _eval_configuration(args, pipeline.index, retrievers=[args.retriever], reader=args.reader, read_k=args.k, precision=args.precision)
    _write_eval(replace(report, configuration=configuration, ceiling=_ceiling(pipeline.index, examples)), args, "qa")


def _write_eval(report, args, command: str) -> None:
    """The table on stdout; per-question JSON (with the whole configuration) and the plot (PNG and SVG) beside each other."""
    print(report.table())
    out = _eval_out(args.out, command, args.questions)
    print(f"per-question results: {report.write_json(out.with_name(out.name + '.json'))}")
    shown = {k: ", ".join(v) if isinstance(v, list) else v for k, v in report.configuration.items() if k in ("retrievers", "fusion", "reader", "read_k") and v is not None}
    legend = " · ".join(f"{k} {v}" for k, v in shown.items())
    plot = report.write_plot(out.with_name(out.name + ".png"), title=f"{Path(args.questions).name} on {Path(args.index).name}\n{legend}")
    print(f"plot: {plot} (and {plot.with_suffix('.svg').name})")


def _eval_configuration(args, index, **extra) -> dict:
    """Everything needed to reproduce or compare an eval: what was read, with what, how, when."""
    from rag import __version__

    hybrid = "hybrid" in extra.get("retrievers", [])
    return {
        "qa": str(Path(args.questions).resolve()) if Path(args.questions).exists() else args.questions, "qa_format": args.questions_format, "limit": args.limit,
        "index": str(Path(args.index).resolve()), "passages": index.manifest.passages, "encoder": index.manifest.encoder,
        "passage_precision": index.manifest.precision, "index_kind": index.manifest.index.get("kind"),
        "fusion": args.fusion if hybrid else None, "dense_weight": args.dense_weight if hybrid else None,
        "reranker": f"{args.reranker}, top {args.rerank}" + ("" if args.rerank_weight is None else f", weight {args.rerank_weight}") if args.rerank else None,
        "ks": list(args.k_list), "match": args.match, "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "rag_version": __version__, **extra,
    }


def _ceiling(index, examples) -> float | None:
    """Share of questions answerable from the corpus at all (corpora up to ~1M passages: it reads every passage)."""
    from rag.evaluate import answer_ceiling

    return answer_ceiling(index.store, examples) if len(index.store) <= 1_000_000 else None


def cmd_eval_reader(args) -> None:
    from rag.evaluate import evaluate_reader
    from rag.readers import ReaderOptions, load_reader

    reader = load_reader(args.reader, ReaderOptions(device=args.device, precision=args.precision))
    report = evaluate_reader(reader, args.squad, args.limit, name=args.reader)
    print(report.table())
    out = _eval_out(args.out, "reader", args.squad)
    print(f"per-question results: {report.write_json(out if args.out else out.with_suffix('.json'))}")


def _checked(question: str) -> str:
    from rag.pipeline import check_question

    checked = check_question(question)
    for note in checked.notes:
        print(f"rag: note: {printable(note)}", file=sys.stderr)
    return checked.text


def cmd_ask(args) -> None:
    from rag.pipeline import load_pipeline

    questions = [question for _, question in _asked(args, "ask")]
    started = time.perf_counter()
    pipeline = load_pipeline(_pipeline_config(args, args.k))
    loaded = time.perf_counter()
    for note in pipeline.notes:
        print(f"rag: note: {note}", file=sys.stderr)
    untrained = getattr(pipeline.reader, "trained", True) is False
    threshold = getattr(pipeline.reader, "not_sure_below", 0.0) if args.not_sure_below is None else args.not_sure_below
    if args.questions is not None or args.json:  # data: one JSON object a question (JSONL), models loaded once
        for start in range(0, len(questions), 16):
            for done in pipeline.answer(questions[start : start + 16]):
                print(json.dumps({**done.answer.to_json(), "sure": done.answer.is_sure(threshold), "not_sure_below": threshold, "untrained_reader": untrained}, ensure_ascii=False), flush=True)
        return
    done = pipeline.answer(questions)[0]
    if args.timings:  # model loading is once per process; retrieve + read is what each question costs
        print(f"timings: load {1000 * (loaded - started):.0f} ms (once), retrieve {1000 * done.retrieve_seconds:.0f} ms, "
              f"read {1000 * done.read_seconds:.0f} ms ({len(done.hits)} passages)", file=sys.stderr)
    if untrained:
        print("note: this reader is UNTRAINED (a random span head): its answer is a random span, not a prediction")
    print_answer(done.answer, list(done.hits), args.retriever, pipeline.retriever, args.reranker, args.k, len(pipeline.index.store), args.width, threshold)


def _pipeline_config(args, k: int):
    from rag.pipeline import PipelineConfig

    return PipelineConfig(args.index, args.reader, k, args.retriever, _hybrid_config(args), _rerank_config(args), args.generator, args.device, args.precision)


def _asked(args, command: str) -> list[tuple[str, str]]:
    """(id, question) pairs: the one QUESTION (id "1"), or every question of --questions FILE."""
    if (args.question is None) == (args.questions is None):
        raise RagError(f"rag {command}: give one QUESTION, or --questions FILE (a QA file rag eval reads, or one question a line)")
    from rag.qa_data import read_questions

    return [("1", _checked(args.question))] if args.question is not None else [(qid, _checked(q)) for qid, q in read_questions(args.questions, args.limit)]


def cmd_train(args) -> None:
    from rag.train.joint import TrainConfig, train

    if not args.questions:
        raise RagError("rag train: --questions is required for joint training (or use `rag train reader --squad FILE`)")

    config = TrainConfig(
        questions=args.questions, index=args.index, out=args.out, reader=args.reader, generator=args.generator, k=args.k, epochs=args.epochs,
        max_steps=args.max_steps, max_minutes=args.max_minutes, limit=args.limit or 0, batch_size=args.batch_size, lr=args.lr, query_lr=args.query_lr,
        precision=args.precision, train_query_encoder=not args.freeze_query_encoder, refresh_every=args.refresh_every, max_length=args.max_length,
        save_every=args.save_every, seed=args.seed, device=args.device, fresh=args.fresh,
        rehearse_squad=args.rehearse_squad, rehearse_per_step=args.rehearse_per_step,
    )
    report = train(config)
    print(f"trained {report.steps} steps on {report.questions_seen} questions ({report.questions_used} with an answer in their top-{args.k}), "
          f"mean loss {report.mean_loss:.3f}: checkpoint {report.checkpoint}")
    print(f"use it: rag ask \"QUESTION\" --index {Path(report.checkpoint) / 'index' if args.refresh_every else args.index} --reader {report.checkpoint}")


def cmd_train_reader(args) -> None:
    from rag.train.reader import ReaderTrainConfig, train_reader

    report = train_reader(ReaderTrainConfig(
        squad=args.squad, out=args.out, start_from=args.start_from, max_length=args.max_length, doc_stride=args.doc_stride,
        questions=args.questions, index=args.index, k=args.k, questions_repeat=args.questions_repeat,
        batch_size=args.batch_size, lr=args.lr, epochs=args.epochs, max_steps=args.max_steps, max_minutes=args.max_minutes, limit=args.limit,
        save_every=args.save_every, precision=args.precision, seed=args.seed, device=args.device,
    ))
    print(f"trained {report.steps} steps on {report.windows:,} windows in {report.seconds / 60:.1f} min, loss {report.mean_loss:.3f}: reader {report.reader}")
    print(f"check it: rag eval reader --squad SQUAD_DEV_FILE --reader {report.reader}")


def cmd_train_generator(args) -> None:
    from rag.train.generator import GeneratorTrainConfig, train_generator

    report = train_generator(GeneratorTrainConfig(
        squad=args.squad, out=args.out, encoder_from=args.encoder_from, start_from=args.start_from, window_words=args.window_words, batch_size=args.batch_size, lr=args.lr,
        epochs=args.epochs, max_steps=args.max_steps, max_minutes=args.max_minutes, limit=args.limit, save_every=args.save_every, precision=args.precision, seed=args.seed, device=args.device,
    ))
    print(f"trained {report.steps} steps on {report.examples:,} examples in {report.seconds / 60:.1f} min, loss {report.mean_loss:.3f}: generator {report.generator}")
    print(f"check it: rag eval reader --squad SQUAD_DEV_FILE --reader {report.generator}")


def cmd_train_reranker(args) -> None:
    from rag.train.reranker import RerankerTrainConfig, train_reranker

    folder = train_reranker(RerankerTrainConfig(
        questions=tuple(q.strip() for q in args.questions.split(",") if q.strip()), index=args.index, out=args.out, limit=args.limit, depth=args.depth,
        holdout=args.holdout, negatives=args.negatives, batch_size=args.batch_size, lr=args.lr, epochs=args.epochs, max_steps=args.max_steps, max_minutes=args.max_minutes,
        save_every=args.save_every, max_length=args.max_length, precision=args.precision, seed=args.seed, device=args.device,
    ))
    print(f"reranker: {folder}")
    print(f"use it: rag eval retrieval --questions QA_FILE --index {args.index} --reranker {folder}")


def cmd_train_retriever(args) -> None:
    from rag.train.retriever import RetrieverTrainConfig, train_retriever

    folder, held = train_retriever(RetrieverTrainConfig(
        questions=tuple(q.strip() for q in args.questions.split(",") if q.strip()), index=args.index, out=args.out, limit=args.limit, depth=args.depth,
        holdout=args.holdout, scale=args.scale, squad=args.squad, squad_questions=args.squad_questions, batch_size=args.batch_size, lr=args.lr, epochs=args.epochs, max_steps=args.max_steps,
        max_minutes=args.max_minutes, save_every=args.save_every, precision=args.precision, seed=args.seed, device=args.device,
    ))
    if held.questions:
        ks = sorted(held.before)
        print(f"held-out training questions ({held.questions:,}, never trained on): " + ", ".join(
            f"top-{k} {held.before[k]:.1f} -> {held.after[k]:.1f}" for k in ks))
    print(f"encoder: {folder}")
    print(f"use it: rag index build --corpus CORPUS --encoder {folder}   (the passage vectors are the index's encoder's: "
          f"an index built with {args.index}'s encoder gets the same ones)")


def cmd_export_reader(args) -> None:
    from rag.readers import export_reader

    print(f"exported {args.source} as fp16 weights: {export_reader(args.source, args.out)}")


def cmd_demo(args) -> None:
    from rag.app import DemoConfig, launch_demo

    retrievers = {"retrievers": tuple(args.retrievers)} if args.retrievers else {}
    if args.rerank < 0:
        raise RagError(f"--rerank must be 0 (off) or more, not {args.rerank}")
    launch_demo(DemoConfig(index=args.index, reader=args.reader, k=args.k, rerank=args.rerank, reranker=args.reranker, device=args.device, host=args.host, port=args.port, **retrievers))
