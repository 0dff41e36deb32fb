"""The Gradio demo: type a question, see the answer and the passages it was read from.

Everything it shows comes from the library: every retriever, re-ranker and reader is loaded by
`rag.pipeline.load_pipeline` (one `LoadedParts`, so each model is in memory once), and each question
goes retrieve -> read through `rag.pipeline.answer_questions`, what `Pipeline.answer` calls, which
also returns the passages the reader read for the page to show. The app itself checks each request (the question, k and the
choices, as `rag ask` does), renders results as HTML, and queues requests so that one question runs
at a time (the models share the CPU), refusing those beyond a bounded queue at once.

`rag demo --index indexes/NAME` and `python demo.py` both call `launch_demo`.
"""
from __future__ import annotations

import html
import os
import reprlib
import sys
from dataclasses import dataclass, field, replace

from rag.paths import default_index
from rag.pipeline import LoadedParts, Pipeline, PipelineConfig, answer_questions, check_question, load_pipeline
from rag.readers import reranker_source
from rag.rerank import RerankConfig
from rag.retrieve import RETRIEVERS
from rag.demo_render import CSS, SOURCE_DEPTH, highlight, render_answer, render_passages, result_json  # noqa: F401 - highlight: tests and callers of rag.app
from rag.types import Answer, Hit, RagError

EXAMPLES = (
    "Who wrote Don Quixote?",
    "Where is the Eiffel Tower?",
    "Who painted the Arnolfini Portrait?",
    "Who wrote Dracula?",
    "Who composed the Brandenburg Concertos?",
)


@dataclass(frozen=True)
class DemoConfig:
    index: str = field(default_factory=lambda: str(default_index()))
    reader: str = "default"  # anything rag.readers.load_reader takes: "default", a checkpoint path, a hub id
    generators: bool = True  # also offer RAG-Sequence and RAG-Token with the shipped generator (models/generator), when it is there
    retrievers: tuple[str, ...] = RETRIEVERS  # loaded at start; the page offers these
    k: int = 5  # passages per question, the slider's start value
    max_k: int = 20
    rerank: int = RerankConfig.depth  # passages the page's "Re-rank" box (on by default, as in the commands) has the cross-encoder re-score (0: no box, no reranker loaded)
    reranker: str = RerankConfig.reranker  # as for --reranker: rag-reranker (models/reranker), reader, or a span-reader folder
    device: str | None = None  # None: cuda when available, else cpu
    host: str = "127.0.0.1"  # localhost only unless asked; "0.0.0.0" listens on every interface
    port: int = 7860
    max_queue: int = 16  # questions waiting behind the one being answered; more are refused at once (HTTP 503) instead of waiting minutes

    def __post_init__(self):
        if not 1 <= self.k <= self.max_k:
            raise RagError(f"k must be between 1 and {self.max_k}, not {self.k}")
        if self.max_queue < 1:
            raise RagError(f"max_queue must be 1 or more, not {self.max_queue}")


@dataclass(frozen=True)
class DemoModels:
    """What the demo loaded at start: one Pipeline per retriever kind, or why nothing could be loaded."""

    pipelines: dict[str, Pipeline] = field(default_factory=dict)
    readers: dict[str, object] = field(default_factory=dict)  # label -> rag.readers.Reader; the first is the pipelines' own
    rerankers: dict[str, object] = field(default_factory=dict)  # retriever kind -> that retriever re-ranked (rag.rerank.RerankingRetriever)
    about: str = ""  # which index and reader, shown under the title
    problem: str | None = None  # e.g. no index yet: shown on the page instead of a crash
    fix: str | None = None  # the command that fixes the problem


@dataclass(frozen=True)
class DemoResult:
    question: str
    answer: Answer | None = None
    hits: tuple[Hit, ...] = ()  # the top-k passages the reader read, in retrieval order
    notes: tuple[str, ...] = ()
    error: str | None = None  # a message for the user; never a traceback
    seconds: float = 0.0  # retrieve + read
    retrieve_seconds: float = 0.0  # encode the question + search (the page shows both parts)
    retriever: str = ""  # dense, bm25 or hybrid: says what the passages' scores are
    reranked_from: int = 0  # the passages were re-ranked from the retriever's top N (0: not re-ranked)
    reader: str = ""  # the reader's label
    source_ranks: dict = field(default_factory=dict)  # hybrid: passage id -> {"dense": rank, "bm25": rank} (None: not in that top list)
    not_sure_below: float = 0.0  # the reader's "not sure" threshold (SpanReader.not_sure_below): below it the answer shows as a guess


# --- loading ---------------------------------------------------------------------------------


def build_command(index: str) -> str:
    """What builds the index the demo was pointed at (over the built-in Wikipedia corpus)."""
    return f"rag index build --corpus default --out {index}"


def load_models(config: DemoConfig) -> DemoModels:
    """Open the index and load the query encoder, the retrievers and the reader, once.

    A missing index is not an error here: the page says so and names the command that builds it.
    A bad reader or retriever choice is an error (the command line is wrong).
    """
    from pathlib import Path

    from rag.index_folder import Manifest

    try:
        Manifest.read(Path(config.index))
    except RagError as e:
        if not Path(config.index).exists():
            return DemoModels(problem=f"There is no index at {config.index} yet.", fix=build_command(config.index))
        return DemoModels(problem=f"The index at {config.index} cannot be read: {e}", fix=build_command(config.index) + " --overwrite")
    unknown = [kind for kind in config.retrievers if kind not in RETRIEVERS]
    if unknown or not config.retrievers:
        raise RagError(f"unknown retriever {', '.join(unknown) or '(none)'}; valid: {', '.join(RETRIEVERS)}")
    # Every part comes from load_pipeline; one LoadedParts keeps each model and index in memory once, shared by
    # the retrievers (the hybrid fuses the same dense and BM25 retrievers), the re-ranked ones and the readers.
    parts = LoadedParts()
    base = PipelineConfig(config.index, config.reader, config.k, config.retrievers[0], device=config.device, rerank=None)
    pipelines = {kind: load_pipeline(replace(base, retriever=kind), parts) for kind in config.retrievers}
    first = next(iter(pipelines.values()))
    index = first.index
    rerankers, note = {}, ""
    if config.rerank and reranker_source(config.reranker) is None:  # models/reranker missing: the page works without it, no re-rank box
        note = f" Re-ranking is off: `{config.reranker}` (models/reranker) is not installed."
    elif config.rerank:
        rerank = RerankConfig(depth=config.rerank, reranker=config.reranker, device=config.device)
        rerankers = {kind: load_pipeline(replace(base, retriever=kind, rerank=rerank), parts).retriever for kind in config.retrievers}
    dense = first
    readers = {SPAN_READER if config.reader == "default" else config.reader: dense.reader, **(_shipped_generators(base, parts) if config.generators else {})}
    about = f"Index `{config.index}`: {index.manifest.passages:,} passages, encoder `{index.manifest.encoder}`. Readers: {', '.join(f'`{r}`' for r in readers)}.{note}"
    if getattr(dense.reader, "trained", True) is False:
        about += " The reader is **untrained**: its answers are random spans, not predictions (train one with `rag train reader`)."
    return DemoModels(pipelines, readers, rerankers, about)


SPAN_READER = "span reader"


def _shipped_generators(base: PipelineConfig, parts: LoadedParts) -> dict:
    """RAG-Sequence and RAG-Token over the shipped generator, one model in memory for both; none when it is not installed."""
    from rag.paths import SHIPPED_GENERATOR, shipped_model

    folder = shipped_model(SHIPPED_GENERATOR)
    if folder is None:
        return {}
    return {label: load_pipeline(replace(base, reader=spec, generator=str(folder)), parts).reader for label, spec in (("RAG-Sequence", "rag-sequence"), ("RAG-Token", "rag-token"))}


# --- checking requests -----------------------------------------------------------------------


def check_demo_k(k, max_k: int) -> int:
    """k as the page's slider allows it: a whole number from 1 to max_k. The API took k=1000 (1000
    passages read for 15 s while everyone waited) and cut 2.7 to 2; both are refused now. 3.0 is 3;
    the string "3" is refused: the API asks for a JSON number."""
    whole = (isinstance(k, int) and not isinstance(k, bool)) or (isinstance(k, float) and k.is_integer())
    if not whole or not 1 <= k <= max_k:
        raise RagError(f"k must be a whole number from 1 to {max_k}, not {_shown(k)}")
    return int(k)


def request_problems(models: DemoModels, max_k: int, question, k, retriever, reader) -> dict[str, str]:
    """What is wrong with each field of one request: field -> a message that names it ({} when nothing is).

    The checks `rag ask` makes (rag.pipeline.check_question; k from 1 to max_k, as the slider), and the
    retriever and reader must be ones the demo loaded. Values come from JSON, so any type can arrive.
    """
    problems = {}
    if not isinstance(question, str):
        problems["question"] = f"question must be text, not {_shown(question)}"
    else:
        try:
            check_question(question)
        except RagError as e:
            problems["question"] = f"question: {e}"
    try:
        check_demo_k(k, max_k)
    except RagError as e:
        problems["k"] = str(e)
    for name, value, loaded in (("retriever", retriever, models.pipelines), ("reader", reader, models.readers)):
        if loaded and not (isinstance(value, str) and value in loaded):  # nothing loaded (no index): ask() says why instead
            problems[name] = f"{name} must be one of {', '.join(loaded)}, not {_shown(value)}"
    return problems


def _shown(value) -> str:
    """A value as a message quotes it: short, whatever was sent (a 100 KB list stays a line)."""
    return reprlib.repr(value)


# --- answering -------------------------------------------------------------------------------


def ask(models: DemoModels, question: str | None, kind: str, k: int, reader: str | None = None, rerank: bool = False) -> DemoResult:
    """One question through the chosen retriever (re-ranked when `rerank`) and reader (None: the first):
    retrieve the top k passages, read them, answer."""
    if models.problem:
        return DemoResult(question or "", error=f"{models.problem}\nBuild one with: {models.fix}" if models.fix else models.problem)
    try:
        checked = check_question(question)
        if kind not in models.pipelines:
            raise RagError(f"Retriever {kind!r} is not loaded; choose from {', '.join(models.pipelines)}.")
        reader = reader or next(iter(models.readers), "")
        if reader not in models.readers:
            raise RagError(f"Reader {reader!r} is not loaded; choose from {', '.join(models.readers)}.")
        if rerank and kind not in models.rerankers:
            raise RagError("Re-ranking is off in this demo (started with --rerank 0, or models/reranker is not installed).")
        pipeline = models.pipelines[kind]
        retriever = models.rerankers[kind] if rerank else pipeline.retriever
        done = answer_questions(retriever, models.readers[reader], [checked.text], int(k))[0]  # what Pipeline.answer does
        hits, answer = list(done.hits), done.answer if done.hits else None
        sources = _source_ranks(pipeline.retriever, checked.text, hits) if kind == "hybrid" else {}
    except RagError as e:
        return DemoResult(question or "", error=str(e))
    except Exception as e:  # noqa: BLE001 - the page shows a message; the server log keeps the traceback
        import traceback

        traceback.print_exc(file=sys.stderr)
        return DemoResult(question or "", error=f"Something went wrong answering this question ({type(e).__name__}). The server log has the details.")
    notes = checked.notes + (() if hits else ("The index returned no passages.",))
    return DemoResult(checked.text, answer, tuple(hits), notes, seconds=done.retrieve_seconds + done.read_seconds, retrieve_seconds=done.retrieve_seconds, retriever=kind,
                      reranked_from=retriever.depth if rerank else 0, reader=reader, source_ranks=sources, not_sure_below=getattr(models.readers[reader], "not_sure_below", 0.0))


def _source_ranks(hybrid, question: str, hits: list[Hit]) -> dict:
    """Each fused passage's rank in the dense and the BM25 ranking: what a fused score means to a reader."""
    ranks = {}
    for name, side in (("dense", hybrid.dense), ("bm25", hybrid.bm25)):
        where = {h.passage.id: h.rank for h in side.retrieve([question], SOURCE_DEPTH)[0]}
        for hit in hits:
            ranks.setdefault(hit.passage.id, {})[name] = where.get(hit.passage.id)
    return ranks


# --- rendering -------------------------------------------------------------------------------


# --- the app ---------------------------------------------------------------------------------


def build_app(models: DemoModels, config: DemoConfig):
    """The page: question box, retriever choice and k, answer, passage cards, examples; one queue."""
    import gradio as gr

    kinds = list(models.pipelines) or list(config.retrievers)
    reader_labels = list(models.readers) or [config.reader]
    ready = models.problem is None

    def on_ask(question: str, kind: str, k: float, reader: str, rerank: bool = False) -> tuple[str, str]:
        result = ask(models, question, kind, int(k), reader, bool(rerank))  # check_page_request let only whole numbers through (3.0: 3)
        return render_answer(result), render_passages(result)

    check_page_request, check_api_request = _validators(models, config)

    with gr.Blocks(title="rag: ask Wikipedia", analytics_enabled=False) as app:
        gr.Markdown("## Ask Wikipedia\nThe answer comes from passages retrieved from the index, read by the reader; the passages are shown below with the answer highlighted.")
        if models.about:
            gr.Markdown(models.about, elem_id="about")
        if not ready:
            fix = f"<p>Build one with:</p><pre><code>{html.escape(models.fix)}</code></pre>" if models.fix else ""
            gr.HTML(f'<div class="rag-message" id="rag-problem"><p>{html.escape(models.problem or "")}</p>{fix}</div>')
        with gr.Row():
            question = gr.Textbox(label="Question", placeholder="Who wrote Don Quixote?", max_lines=4, scale=5, elem_id="question", interactive=ready)
            button = gr.Button("Ask", variant="primary", scale=1, elem_id="ask", interactive=ready)
        with gr.Row():
            kind = gr.Radio(kinds, value=kinds[0], label="Retriever", elem_id="retriever", interactive=ready)
            k = gr.Slider(1, config.max_k, value=config.k, step=1, label="Passages to read (k)", elem_id="k", interactive=ready)
            reader = gr.Radio(reader_labels, value=reader_labels[0], label="Reader", elem_id="reader", interactive=ready)
            rerank = gr.Checkbox(bool(models.rerankers), label=f"Re-rank the top {config.rerank} (~0.5 s for 50 on 2 CPU cores)", elem_id="rerank",
                                 interactive=ready and bool(models.rerankers), visible=bool(config.rerank))
        examples = gr.Examples([[q] for q in EXAMPLES], inputs=[question], label="Example questions (click to ask)")
        answer = gr.HTML(elem_id="answer")
        passages = gr.HTML(elem_id="passages")
        gr.on([button.click, question.submit], on_ask, inputs=[question, kind, k, reader, rerank], outputs=[answer, passages], api_name="ask", concurrency_id="pipeline", concurrency_limit=1,
              validator=check_page_request)

        def answer_as_data(question: str, k: int = config.k, retriever: str = kinds[0], reader: str = reader_labels[0]) -> dict:
            """JSON API (POST /gradio_api/call/answer, or gradio_client's predict(..., api_name="/answer")):
            the answer, its probability and the passages read, as data; "error" when it could not answer
            (no index, a failure). Re-ranked as the page is by default (when the demo has a reranker).
            A bad value never gets here: check_api_request refuses it with HTTP 422."""
            return result_json(ask(models, question, retriever, int(k), reader, retriever in models.rerankers))

        gr.api(answer_as_data, api_name="answer", concurrency_id="pipeline")
        _set_validator(app, "answer", check_api_request)
        # A click on an example fills the box, then asks it with the chosen retriever and k.
        examples.load_input_event.then(on_ask, inputs=[question, kind, k, reader, rerank], outputs=[answer, passages], api_visibility="private", concurrency_id="pipeline")
    # One question at a time: concurrent requests wait in Gradio's queue, at most max_queue of them; the
    # next is refused at once (HTTP 503 "Queue is full") rather than waiting minutes behind the others.
    # api_open=False closes /gradio_api/run/NAME, which ran a request at once, past the queue and the validators.
    app.queue(default_concurrency_limit=1, max_size=config.max_queue, api_open=False)
    return app


def _validators(models: DemoModels, config: DemoConfig):
    """(page validator, API validator): each answers one gr.validate per input, refusing bad values before the queue."""
    # Gradio runs an event's validator when the request arrives, before queueing it, and answers a
    # refusal with HTTP 422 and each field's message; an error raised in the handler itself comes back
    # as 200 and an error event, after the wait in the queue. The validators are async on purpose: an
    # async one runs on the event loop without a pause between Gradio's queue-size check and the
    # queueing, where a sync one (run in a thread) let a burst of 30 requests past max_size=2.
    async def check_page_request(question: str, retriever: str, k: float, reader: str, rerank: bool) -> list[dict]:
        problems = request_problems(models, config.max_k, question, k, retriever, reader)
        problems.pop("question", None)  # the page answers an empty question with a message where the answer goes
        if not isinstance(rerank, bool):
            problems["rerank"] = f"rerank must be true or false, not {_shown(rerank)}"
        return _verdicts(problems, ("question", "retriever", "k", "reader", "rerank"))

    async def check_api_request(question: str, k: int, retriever: str, reader: str) -> list[dict]:
        return _verdicts(request_problems(models, config.max_k, question, k, retriever, reader), ("question", "k", "retriever", "reader"))

    # Gradio refuses a request with too few values (`{"data": []}`) with HTTP 400 before a validator
    # runs, naming the validator: these names make that message say which values were expected.
    check_page_request.__name__ = "ask(question, retriever, k, reader, rerank)"
    check_api_request.__name__ = "answer(question, k, retriever, reader)"

    return check_page_request, check_api_request


def _verdicts(problems: dict[str, str], fields: tuple[str, ...]) -> list[dict]:
    """A Gradio validator's answer: one gr.validate per input, in the inputs' order."""
    import gradio as gr

    return [gr.validate(name not in problems, problems.get(name, "")) for name in fields]


def _set_validator(app, api_name: str, validator) -> None:
    """gr.api (Gradio 6.31) takes no validator=, but its event runs one as every event does: set it on
    the event's BlockFunction, where the other listeners' validator= puts it."""
    (fn,) = [fn for fn in app.fns.values() if fn.api_name == api_name]
    fn.validator = validator


def launch_demo(config: DemoConfig, models: DemoModels | None = None, block: bool = True):
    """Load once, then serve on config.host:config.port until Ctrl-C (or, with block=False, until app.close()).

    Nothing leaves the machine: no analytics or version check, no share link, no run-history uploads.
    """
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    if models is None:
        models = load_models(config)
        if models.problem:
            print(f"rag demo: {models.problem}\nrag demo: build one with: {models.fix}", file=sys.stderr)
    app = build_app(models, config)
    app.launch(
        server_name=config.host,
        server_port=config.port,
        share=False,
        run_history=False,  # its page offers uploading runs to a Hugging Face bucket; keep everything local
        footer_links=["api", "settings"],
        prevent_thread_lock=True,
        css=CSS,
        ssr_mode=False,
        mcp_server=False,
        quiet=True,
    )
    print(f"rag demo: serving {app.local_url} (Ctrl-C stops it)", file=sys.stderr)
    if block:
        app.block_thread()
    return app
