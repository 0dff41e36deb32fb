"""`rag` command line: each subcommand parses its arguments into config dataclasses and calls the library."""
from __future__ import annotations

import argparse
import contextlib
import sys

from rag import commands
from rag.console import positive_int, printable, quiet_libraries
from rag.encoders import SHIPPED_RETRIEVER, EncoderConfig
from rag.index import KINDS, REFINES
from rag.paths import checkpoints_dir, default_index
from rag.precision import PRECISIONS, set_threads
from rag.qa_data import FORMATS as QA_FORMATS
from rag.rerank import RerankConfig
from rag.retrieve import FUSIONS, RETRIEVERS, HybridConfig
from rag.types import RagError

DEFAULT_INDEX = str(default_index())

def ks_list(text: str) -> tuple[int, ...]:
    """argparse type for eval's --k: '1,5,20,100', checked before any model is loaded."""
    from rag.evaluate import parse_ks

    try:
        return parse_ks(text)
    except RagError:
        raise argparse.ArgumentTypeError(f"expected comma-separated whole numbers of 1 or more like 1,5,20,100, not {text!r}") from None


class _OldSpelling(argparse.Action):
    """An option's old spelling, kept hidden for one release: it sets the new option and says so once."""

    def __init__(self, option_strings, dest, new: str, **kwargs):
        self.new = new
        super().__init__(option_strings, dest, help=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"rag: note: {option_string} is deprecated and goes in the next release; use {self.new}", file=sys.stderr)
        setattr(namespace, self.dest, self.const if self.nargs == 0 else values)  # nargs=0: a flag that sets `const`


def _add_corpus_args(p: argparse.ArgumentParser, required: bool) -> None:
    from rag.corpus import FORMATS

    p.add_argument("--corpus", required=required, help="corpus file or folder, or 'default' (built-in Wikipedia lead sections)")
    p.add_argument("--format", default="auto", choices=("auto",) + FORMATS, help="corpus format (default: from the file name)")
    p.add_argument("--words-per-passage", type=int, default=100)
    p.add_argument("--skip-bad", action="store_true", help="skip bad records (counted and reported) instead of stopping")


def _add_retriever_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fusion", default=HybridConfig.fusion, choices=FUSIONS, help="hybrid: reciprocal-rank fusion or linear mix of normalized scores "
                   "(default: %(default)s, chosen by eval/tune_pipeline.py)")
    p.add_argument("--dense-weight", type=float, default=HybridConfig.dense_weight, help="hybrid: weight of the dense side, BM25 gets 1 - it (default: %(default)s)")
    p.add_argument("--rerank", type=int, default=RerankConfig.depth, metavar="N", help="re-score the retriever's top N passages with a cross-encoder and keep the best k "
                   "(default: %(default)s, part of the default pipeline; 0: off)")
    p.add_argument("--reranker", default=RerankConfig.reranker, help="with --rerank: 'rag-reranker' (models/reranker, trained on retrieved passages), 'reader' (the shipped span reader's "
                   "passage-selection head) or a span-reader folder (default: %(default)s)")
    p.add_argument("--rerank-max-length", type=int, default=RerankConfig.max_length, metavar="TOKENS", help="with --rerank: tokens of question + passage the cross-encoder reads (default: %(default)s)")
    p.add_argument("--rerank-weight", type=float, default=None, help="with --rerank: order by W x retrieval score + reranker logit (default: the reader's score scale, 20, and 0 over BM25; 0: the reranker alone)")


def _add_reader_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--reader", default="default", help="'default' (the shipped span reader, models/reader), "
                   "a checkpoint or reader folder, a hub QA checkpoint id, or rag-sequence / rag-token")
    p.add_argument("--precision", default="auto", choices=PRECISIONS, help="span reader precision: auto = bf16 where the CPU/GPU runs it fast (default: %(default)s)")
    p.add_argument("--generator", default=None, help="seq2seq model for rag-sequence / rag-token: a generator folder, hub id or path (default: the shipped models/generator; facebook/rag-<variant>-nq where it is missing)")
    p.add_argument("--retriever", default="dense", choices=RETRIEVERS, help="(default: %(default)s)")
    p.add_argument("--device", default=None, help="cpu, cuda ... (default: cuda when available)")
    _add_retriever_args(p)


def _add_eval_args(p: argparse.ArgumentParser) -> None:
    """Arguments every `rag eval` subcommand takes."""
    p.add_argument("--questions", default=None, metavar="FILE", help="question/answer file: NQ-open .jsonl, WebQuestions .json, DPR .csv/.tsv, TriviaQA/SQuAD .json, HF dataset (required)")
    p.add_argument("--questions-format", default="auto", choices=("auto",) + QA_FORMATS, help="default: from the file name")
    p.add_argument("--index", default=DEFAULT_INDEX)
    p.add_argument("--k-list", type=ks_list, default="1,5,20,100", metavar="K,K,...", help="comma-separated k for top-k accuracy (default: %(default)s)")
    # the spellings before the CLI used one name per concept (--questions everywhere, -k an int, --k-list the cut-offs)
    p.add_argument("--qa", dest="questions", action=_OldSpelling, new="--questions")
    p.add_argument("--qa-format", dest="questions_format", action=_OldSpelling, new="--questions-format", choices=("auto",) + QA_FORMATS)
    p.add_argument("--k", dest="k_list", action=_OldSpelling, new="--k-list", type=ks_list)
    p.add_argument("--limit", type=int, default=None, help="only the first N questions")
    p.add_argument("--batch-size", type=int, default=256, help="questions per retrieve call")
    p.add_argument("--match", default="string", choices=("string", "regex"), help="answer matching: DPR's token rule, or regex answers (CuratedTREC)")
    p.add_argument("--out", default=None, help="output path prefix for PREFIX.json and PREFIX.png (default: eval/out/<command>-<qa file>)")


def _add_supervised_args(p: argparse.ArgumentParser, C, trained: str) -> None:
    """Options every SQuAD training command shares."""
    p.add_argument("--squad", required=True, help="SQuAD v1.1 JSON or .json.gz with answer offsets")
    _add_fit_args(p, C, trained)


def _add_fit_args(p: argparse.ArgumentParser, C, trained: str) -> None:
    """Options of every command that trains with rag.train.loop.fit (its settings, with defaults from the config class C)."""
    p.add_argument("--out", required=True, help=f"checkpoint folder; rerunning with the same settings resumes it; OUT/{trained} is the result")
    p.add_argument("--batch-size", type=positive_int, default=C.batch_size, help="examples per optimizer step (default: %(default)s)")
    p.add_argument("--lr", type=float, default=C.lr, help="peak learning rate, linear warmup and decay (default: %(default)s)")
    p.add_argument("--epochs", type=float, default=C.epochs, help="passes over the examples; fractions allowed (default: %(default)s)")
    p.add_argument("--max-steps", type=int, default=C.max_steps, help="stop after N optimizer steps (0: no limit)")
    p.add_argument("--max-minutes", type=float, default=C.max_minutes, help="save and stop once training has run this long, resumes counted in; rerun with a larger value to continue (0: no limit)")
    p.add_argument("--limit", type=int, default=C.limit, help="only the first N questions (0: all)")
    p.add_argument("--save-every", type=positive_int, default=C.save_every, help="steps between checkpoints (default: %(default)s)")
    p.add_argument("--precision", default=C.precision, choices=PRECISIONS, help="autocast: auto = bf16 where the CPU/GPU supports it (default: %(default)s)")
    p.add_argument("--seed", type=int, default=C.seed)
    p.add_argument("--device", default=None, help="cpu, cuda ... (default: cuda when available)")


def _add_train_squad_parsers(sub) -> None:
    """rag train reader | generator: supervised training on SQuAD."""
    from rag.train.generator import GeneratorTrainConfig as G
    from rag.train.reader import ReaderTrainConfig as C

    r = sub.add_parser("reader", help="supervised reading comprehension: train the span reader on a SQuAD-format file (BERT's recipe)")
    _add_supervised_args(r, C, "reader")
    r.add_argument("--start-from", default=C.start_from, help="'default' (MiniLM + new span head) or a span-reader folder (default: %(default)s)")
    r.add_argument("--max-length", type=int, default=C.max_length, help="tokens per window (default: %(default)s)")
    r.add_argument("--doc-stride", type=int, default=C.doc_stride, help="tokens of overlap between windows of a long paragraph (default: %(default)s)")
    r.add_argument("--questions", default=C.questions, help="open-domain QA files, comma-separated, read over --index as more training windows "
                   "(rag train retriever's training split of them: its held-out share is never read)")
    r.add_argument("--index", default=C.index, help="with --questions: the index whose dense top -k passages they are read over (comma-separated: each question over each)")
    r.add_argument("-k", type=positive_int, default=C.k, help="with --questions: passages retrieved per question (default: %(default)s)")
    r.add_argument("--questions-repeat", type=positive_int, default=C.questions_repeat, help="with --questions: each of their windows this many times per epoch (default: %(default)s)")
    r.set_defaults(func=commands.cmd_train_reader)

    g = sub.add_parser("generator", help="train the RAG generator (BERT-to-BERT from offline MiniLM weights) on SQuAD: passage + question -> answer")
    _add_supervised_args(g, G, "generator")
    g.add_argument("--encoder-from", default=G.encoder_from, help="'reader' (the shipped span reader), 'minilm' or a BERT folder (default: %(default)s)")
    g.add_argument("--start-from", default=G.start_from, help="a generator folder to continue training (default: warm-start a new one from --encoder-from)")
    g.add_argument("--window-words", type=int, default=G.window_words, help="paragraph words around the answer per example (default: %(default)s)")
    g.set_defaults(func=commands.cmd_train_generator)


def build_parser() -> argparse.ArgumentParser:
    from rag import __version__

    parser = argparse.ArgumentParser(prog="rag", description="Open-domain question answering over your own Wikipedia.")
    parser.add_argument("--version", action="version", version=f"rag {__version__}")
    talk = parser.add_mutually_exclusive_group()
    talk.add_argument("--verbose", action="store_true", help="show the model libraries' own messages (load reports, download bars)")
    talk.add_argument("--quiet", action="store_true", help="nothing on stderr but errors: no progress bars, status lines or warnings")
    parser.add_argument("--threads", type=positive_int, default=None, help="CPU threads for torch and FAISS together (default: the cores this process may use)")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_index_parsers, _add_search_parser, _add_eval_parsers, _add_ask_parser, _add_train_parser, _add_export_parser, _add_demo_parser):
        add(sub)
    _talk_options_everywhere(parser)
    return parser


def _talk_options_everywhere(parser: argparse.ArgumentParser) -> None:
    """`rag ask ... --quiet` as well as `rag --quiet ask ...`: every command takes --quiet/--verbose.

    SUPPRESS: a command that is not given the flag leaves the value `rag --quiet` set alone."""
    for action in list(parser._actions):
        if isinstance(action, argparse._SubParsersAction):
            for command in {id(c): c for c in action.choices.values()}.values():
                command.add_argument("--quiet", action="store_true", default=argparse.SUPPRESS, help="as rag --quiet")
                command.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS, help="as rag --verbose")
                _talk_options_everywhere(command)


def _add_index_parsers(sub) -> None:
    """rag index build | add | info | verify | import"""
    index = sub.add_parser("index", help="build, extend and inspect dense indexes").add_subparsers(dest="index_command", required=True)
    b = index.add_parser("build", help="corpus -> passages -> embeddings -> FAISS index folder")
    _add_corpus_args(b, required=True)
    b.add_argument("--out", default=DEFAULT_INDEX, help="index folder to create (default: %(default)s)")
    b.add_argument("--kind", default="flat", choices=KINDS, help="FAISS index kind (default: %(default)s)")
    b.add_argument("--encoder", default=SHIPPED_RETRIEVER, help="'rag-retriever' (MiniLM passage vectors, the query tower trained by `rag train retriever`, models/retriever), "
                   "'rag-retriever-wiki' (the same trained against full Wikipedia, models/retriever-wiki), 'default' (offline MiniLM both sides), a sentence-transformers hub id or path, a two-tower folder, or dpr:Q_MODEL,CTX_MODEL (default: %(default)s)")
    b.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available)")
    b.add_argument("--batch-size", type=int, default=EncoderConfig.batch_size, help="passages per encoder call (default: %(default)s)")
    b.add_argument("--precision", default="auto", choices=PRECISIONS + ("fp16", "int8"), help="passage encoding: auto = bf16 where the CPU/GPU runs it fast "
                   "(2.9x fp32 on an AMX Xeon, cosine >= 0.9999); fp16 = half-precision weights (GPU only); int8 = the default model as int8 ONNX (onnxruntime) (default: %(default)s)")
    b.add_argument("--fp16", dest="precision", action=_OldSpelling, new="--precision fp16", nargs=0, const="fp16")
    b.add_argument("--shard-size", type=int, default=4096, help="passages per embedding shard (the most a killed build re-encodes)")
    b.add_argument("--index-shards", type=int, default=1, help="split the FAISS index into N files; search merges their exact top-k")
    b.add_argument("--opq", action="store_true", help="with --kind ivfpq: OPQ rotation before PQ (better recall, same bytes/vector)")
    b.add_argument("--refine", default="none", choices=REFINES, help="with --kind ivfpq: re-score candidates with 8-bit (+dim bytes/vector) or exact vectors; none keeps 1/16 of flat's bytes at flat's top-20 accuracy (default: %(default)s)")
    b.add_argument("--overwrite", action="store_true", help="rebuild an existing index folder")
    b.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS", help="encode shards as Ray tasks; no ADDRESS starts a local cluster")
    b.add_argument("--ray-workers", type=int, default=None, help="Ray encoding tasks at once (default: one per GPU, else per 2 CPUs)")
    b.set_defaults(func=commands.cmd_index_build)

    a = index.add_parser("add", help="append passages to an existing index (no rebuild)")
    a.add_argument("--index", default=DEFAULT_INDEX)
    _add_corpus_args(a, required=False)
    a.set_defaults(func=commands.cmd_index_add)

    i = index.add_parser("info", help="print an index's manifest")
    i.add_argument("--index", default=DEFAULT_INDEX, help="index folder (default: %(default)s)")
    i.add_argument("--json", action="store_true", help="the whole manifest as JSON")
    i.set_defaults(func=commands.cmd_index_info)

    v = index.add_parser("verify", help="check every passage and file of an index against what its last commit recorded (exit 1 on damage)")
    v.add_argument("--index", default=DEFAULT_INDEX, help="index folder (default: %(default)s)")
    v.set_defaults(func=commands.cmd_index_verify)

    from rag.importers import add_import_parser

    add_import_parser(index, commands.cmd_index_import)  # rag index import: pre-computed vectors, nothing re-encoded


def _add_search_parser(sub) -> None:
    """rag search"""
    s = sub.add_parser("search", help="top-k passages for a question")
    s.add_argument("question", nargs="?", help="the question (or --questions FILE)")
    s.add_argument("--questions", default=None, metavar="FILE", help="search every question of FILE (a QA file, or .txt one a line, - for stdin): JSON lines, or --run")
    s.add_argument("--run", default=None, metavar="PATH", help="with --questions: write a TREC run file (qid Q0 docid rank score tag, as pyserini)")
    s.add_argument("--limit", type=positive_int, default=None, help="with --questions: only the first N")
    s.add_argument("--index", default=DEFAULT_INDEX, help="index folder (default: %(default)s)")
    s.add_argument("--json", action="store_true", help="print the hits as one JSON object (ids, titles, texts, scores)")
    s.add_argument("-k", type=positive_int, default=5, help="passages to print (default: %(default)s)")
    s.add_argument("--width", type=int, default=300, help="characters of passage text to print")
    s.add_argument("--mmap", action="store_true", help="memory-map the FAISS index instead of reading it (indexes larger than RAM)")
    s.add_argument("--retriever", default="dense", choices=RETRIEVERS, help="(default: %(default)s)")
    _add_retriever_args(s)
    s.set_defaults(func=commands.cmd_search)


def _add_eval_parsers(sub) -> None:
    """rag eval retrieval | qa | reader"""
    ev = sub.add_parser("eval", help="evaluate on question/answer sets: retrieval accuracy, QA exact match").add_subparsers(dest="eval_command", required=True)
    er = ev.add_parser("retrieval", help="top-k retrieval accuracy of dense, BM25 and hybrid side by side (DPR Table 2)")
    _add_eval_args(er)
    er.add_argument("--retrievers", default="dense,bm25,hybrid", help="comma-separated, of dense, bm25, hybrid (default: %(default)s)")
    _add_retriever_args(er)
    er.set_defaults(func=commands.cmd_eval_retrieval)

    eq = ev.add_parser("qa", help="exact match and F1 of retrieve -> read, next to top-k retrieval accuracy")
    _add_eval_args(eq)
    _add_reader_args(eq)
    eq.add_argument("-k", type=positive_int, default=10, help="passages the reader reads per question (default: %(default)s)")
    eq.add_argument("--read-k", dest="k", action=_OldSpelling, new="-k", type=positive_int)
    eq.set_defaults(func=commands.cmd_eval_qa, batch_size=32)

    rr = ev.add_parser("reader", help="reading comprehension with the gold paragraph: SQuAD EM/F1 of the reader alone")
    rr.add_argument("--squad", required=True, help="SQuAD v1.1 JSON (or .json.gz), e.g. dev-v1.1.json")
    rr.add_argument("--reader", default="default", help="'default' (the shipped span reader) or a reader folder (default: %(default)s)")
    rr.add_argument("--limit", type=int, default=0, help="only the first N questions (0: all)")
    rr.add_argument("--precision", default="auto", choices=PRECISIONS, help="reader precision (default: %(default)s)")
    rr.add_argument("--device", default=None, help="cpu, cuda ... (default: cuda when available)")
    rr.add_argument("--out", default=None, help="per-question JSON path (default: eval/out/reader-<squad file>.json)")
    rr.set_defaults(func=commands.cmd_eval_reader)


def _add_ask_parser(sub) -> None:
    """rag ask"""
    q = sub.add_parser("ask", help="answer a question: retrieve, read, print the answer, its score and its passages")
    q.add_argument("question", nargs="?", help="the question (or --questions FILE)")
    q.add_argument("--questions", default=None, metavar="FILE", help="answer every question of FILE (any QA format rag eval reads, or .txt one a line, - for stdin): "
                   "one JSON line per answer, models loaded once")
    q.add_argument("--limit", type=positive_int, default=None, help="with --questions: only the first N")
    q.add_argument("--json", action="store_true", help="print the answer as JSON (answer, probability, evidence with answer spans)")
    q.add_argument("--timings", action="store_true", help="print load, retrieve and read milliseconds to stderr")
    q.add_argument("--index", default=DEFAULT_INDEX, help="index folder (default: %(default)s)")
    q.add_argument("-k", "--k", type=positive_int, default=10, help="passages retrieved and read (default: %(default)s)")
    q.add_argument("--width", type=int, default=300, help="characters of passage text to print")
    q.add_argument("--not-sure-below", type=float, default=None, metavar="P", help="below this p(answer) say 'not sure' and show the answer as a guess "
                   "(default: the reader's threshold, 0.25 for the span reader, none for generators; 0: never)")
    _add_reader_args(q)
    q.set_defaults(func=commands.cmd_ask)


def _add_train_parser(sub) -> None:
    """rag train (joint) and rag train reader"""
    from rag.train.joint import TrainConfig

    t = sub.add_parser("train", help="joint training of the reader (or generator) and the query encoder from question/answer pairs; "
                       "`rag train reader`: supervised span-reader training on SQuAD")
    t.add_argument("--questions", help="question/answer file(s), comma-separated (NQ-open .jsonl, WebQuestions .json, DPR .csv/.tsv ...); required for joint training")
    t.add_argument("--index", default=DEFAULT_INDEX, help="a flat or hnsw index (passage vectors are read back from it)")
    t.add_argument("--out", default=str(checkpoints_dir() / "joint"), help="checkpoint folder; rerunning resumes it (default: %(default)s)")
    t.add_argument("--reader", default="default", help="start from: 'default' (MiniLM + new span head), a reader folder, a hub QA id, or rag-sequence / rag-token")
    t.add_argument("--generator", default=None, help="seq2seq model for rag-sequence / rag-token (hub id or path)")
    t.add_argument("--k", type=positive_int, default=TrainConfig.k, help="passages retrieved per question (default: %(default)s)")
    t.add_argument("--epochs", type=float, default=TrainConfig.epochs, help="passes over the questions; fractions allowed, and more epochs continue a run (default: %(default)s)")
    t.add_argument("--max-steps", type=int, default=TrainConfig.max_steps, help="stop after N optimizer steps (0: no limit)")
    t.add_argument("--max-minutes", type=float, default=TrainConfig.max_minutes, help="save and stop once training has run this long; rerun to continue (0: no limit)")
    t.add_argument("--limit", type=int, default=TrainConfig.limit, help="only the first N questions (several --questions files are taken in turn)")
    t.add_argument("--batch-size", type=positive_int, default=TrainConfig.batch_size, help="questions per optimizer step (default: %(default)s)")
    t.add_argument("--lr", type=float, default=TrainConfig.lr, help="reader (or generator) learning rate, constant (default: %(default)s)")
    t.add_argument("--reader-lr", dest="lr", type=float, action=_OldSpelling, new="--lr")
    t.add_argument("--query-lr", type=float, default=TrainConfig.query_lr, help="query (and passage) encoder learning rate (default: %(default)s)")
    t.add_argument("--precision", default=TrainConfig.precision, choices=PRECISIONS, help="autocast: auto = bf16 where the CPU/GPU supports it (default: %(default)s)")
    t.add_argument("--freeze-query-encoder", action="store_true", help="train the reader alone (baseline for joint training)")
    t.add_argument("--refresh-every", type=int, default=0, metavar="N", help="train the passage encoder too; re-encode passages and rebuild the index every N steps")
    t.add_argument("--rehearse-squad", default="", metavar="FILE", help="a SQuAD v1.1 file: each step also trains on a few (question, gold paragraph) examples, "
                   "so the reader or generator keeps reading a given paragraph well")
    t.add_argument("--rehearse-per-step", type=int, default=TrainConfig.rehearse_per_step, metavar="N", help="SQuAD examples per step with --rehearse-squad (default: %(default)s)")
    t.add_argument("--max-length", type=int, default=TrainConfig.max_length, help="reader input tokens (default: %(default)s)")
    t.add_argument("--save-every", type=int, default=TrainConfig.save_every, help="steps between checkpoints (default: %(default)s)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default=None, help="cpu, cuda ... (default: cuda when available)")
    t.add_argument("--fresh", action="store_true", help="start from step 0 although --out holds a checkpoint (replaced at the first save; a resume must use the same settings)")
    t.set_defaults(func=commands.cmd_train)
    subs = t.add_subparsers(dest="train_command", required=False, metavar="reader|generator|reranker|retriever")
    _add_train_squad_parsers(subs)
    _add_train_reranker_parser(subs)
    _add_train_retriever_parser(subs)


def _add_train_retriever_parser(sub) -> None:
    """rag train retriever: DPR-style query-tower training against an index's passage vectors."""
    from rag.train.retriever import RetrieverTrainConfig as C

    r = sub.add_parser("retriever", help="train the dense retriever's query tower (DPR's recipe, every passage of the index a negative) "
                       "on question/answer pairs; the passage vectors stay the index's")
    r.add_argument("--questions", required=True, help="question/answer file(s), comma-separated (DPR .tsv topics, WebQuestions .json, NQ-open .jsonl ...)")
    r.add_argument("--index", default=DEFAULT_INDEX, help="a flat or hnsw index: its passages are the candidates, its vectors the passage side (default: %(default)s)")
    r.add_argument("--depth", type=positive_int, default=C.depth, help="positives: answer-bearing passages in the dense and BM25 top N (default: %(default)s)")
    r.add_argument("--holdout", type=float, default=C.holdout, help="share of the questions kept aside and measured before and after (default: %(default)s)")
    r.add_argument("--scale", type=float, default=C.scale, help="score = scale x cosine in the softmax (default: %(default)s)")
    r.add_argument("--squad", default=C.squad, help="also train on a SQuAD file's questions, each with its own paragraph as the positive")
    r.add_argument("--squad-questions", type=int, default=C.squad_questions, help="with --squad: a seeded sample of N of its questions (0: all)")
    _add_fit_args(r, C, "encoder")  # --out, --batch-size (questions per step), --lr, --limit (per file) ...
    r.set_defaults(func=commands.cmd_train_retriever)


def _add_train_reranker_parser(sub) -> None:
    """rag train reranker: the selection head on retrieved passages (DPR's reader loss), for --rerank."""
    from rag.train.reranker import RerankerTrainConfig as C

    r = sub.add_parser("reranker", help="train a cross-encoder reranker (the span reader's selection head) on passages retrieved for question/answer pairs")
    r.add_argument("--questions", required=True, help="question/answer file(s), comma-separated (DPR .tsv topics, WebQuestions .json, NQ-open .jsonl ...)")
    r.add_argument("--index", default=DEFAULT_INDEX, help="index to retrieve positives and negatives from (default: %(default)s)")
    r.add_argument("--depth", type=positive_int, default=C.depth, help="passages retrieved per question (default: %(default)s)")
    r.add_argument("--negatives", type=positive_int, default=C.negatives, help="negatives beside each positive (default: %(default)s)")
    r.add_argument("--max-length", type=positive_int, default=C.max_length, help="tokens of question + passage read per passage (default: %(default)s)")
    r.add_argument("--holdout", type=float, default=C.holdout, help="share of the questions never trained on: with the same files and seed, "
                   "the ones `rag train retriever` keeps aside (default: %(default)s)")
    _add_fit_args(r, C, "reranker")  # --out, --batch-size (questions per step), --lr, --limit (per file) ...
    r.set_defaults(func=commands.cmd_train_reranker)


def _add_export_parser(sub) -> None:
    """rag export-reader"""
    x = sub.add_parser("export-reader", help="save a trained span reader or RAG generator (folder or checkpoint) as fp16 weights only, the form that ships in models/")
    x.add_argument("source", help="a span-reader or generator folder, or a `rag train` checkpoint")
    x.add_argument("--out", required=True, help="the new folder (an existing one is replaced only if it is a folder of the same kind)")
    x.set_defaults(func=commands.cmd_export_reader)


def _add_demo_parser(sub) -> None:
    """rag demo"""
    d = sub.add_parser("demo", help="the Gradio demo: ask questions in the browser, see the answer and its passages")
    d.add_argument("--index", default=DEFAULT_INDEX, help="index folder (default: %(default)s)")
    d.add_argument("--reader", default="default", help="'default' (MiniLM span reader), a checkpoint path or a hub id (as for `rag ask`)")
    d.add_argument("--retrievers", type=lambda text: [k.strip() for k in text.split(",") if k.strip()], default=None, metavar="KINDS",
                   help="comma-separated, as for rag eval: retrievers to load and offer, of dense, bm25, hybrid (default: all three)")
    d.add_argument("-k", type=positive_int, default=5, help="passages to read per question, the page's starting value")
    d.add_argument("--rerank", type=int, default=RerankConfig.depth, metavar="N", help="the page's re-rank box re-scores the top N passages (0: no box; default: %(default)s)")
    d.add_argument("--reranker", default=RerankConfig.reranker, help="as for rag ask (default: %(default)s)")
    d.add_argument("--device", default=None, help="cpu, cuda ... (default: cuda when available)")
    d.add_argument("--host", default="127.0.0.1", help="interface to listen on (default: localhost only; 0.0.0.0 for all)")
    d.add_argument("--port", type=int, default=7860)
    d.set_defaults(func=commands.cmd_demo)


def _silenced_stderr():
    """--quiet: what the command writes to sys.stderr (bars, status lines, warnings) goes nowhere; main's
    error line is printed after the command has left this block, so errors still show."""
    import os

    return contextlib.redirect_stderr(open(os.devnull, "w"))  # the file closes with the process


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.verbose:
        quiet_libraries()
    try:
        set_threads(args.threads)
        with _silenced_stderr() if args.quiet else contextlib.nullcontext():
            status = args.func(args)  # a command may return an exit status (rag index verify: 1 on damage)
    except BrokenPipeError:  # `rag ... | head`: the reader left; not an error worth a traceback
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # the exit-time flush must not fail again
        return 0
    except RagError as e:
        message = "\n".join(printable(line) for line in str(e).splitlines())  # messages quote data: ids, titles, file lines
        print(f"rag: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("rag: interrupted", file=sys.stderr)
        return 130
    return status if isinstance(status, int) else 0


if __name__ == "__main__":
    sys.exit(main())
