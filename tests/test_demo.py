"""The Gradio demo: question checks, rendering, the HTTP API, and a real headless Chromium end to end.

One demo server (real MiniLM, real FAISS + BM25, the default span reader) over the 300-passage
`small_index` serves the API and browser tests; the screenshot lands in tests/artifacts/demo.png.
"""
from __future__ import annotations

import re
import socket
import threading
import time
from pathlib import Path

import pytest

from rag.app import EXAMPLES, DemoConfig, DemoResult, ask, highlight, launch_demo, load_models, render_answer, render_passages
from rag.pipeline import MAX_QUESTION_CHARS, check_question
from rag.rerank import RerankConfig
from rag.types import Answer, Hit, Passage, RagError, Span

# gradio's queue calls pandas options that pandas 3 deprecates: its warnings, not ours
pytestmark = pytest.mark.filterwarnings("ignore:.*(no_silent_downcasting|copy keyword is deprecated)")

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]
QUESTION = "Who wrote Don Quixote?"  # "Don Quixote" is among the first 300 built-in passages


def cards(html: str) -> int:
    return len(re.findall(r'class="rag-card(?: has-answer)?"', html))


# --- question checks and rendering (no models) ---------------------------------------------


@pytest.mark.parametrize("question", ["", "   ", " \n\t ", None])
def test_empty_questions_are_refused_with_a_message(question):
    with pytest.raises(RagError, match="Type a question"):
        check_question(question)


def test_long_question_is_cut_at_a_word_and_the_page_says_so():
    checked = check_question("why " * 25_600)  # 100 KB
    assert len(checked.text) <= MAX_QUESTION_CHARS and checked.text.endswith("why")
    assert "102,400 characters" in checked.notes[0]


def test_non_latin_question_passes_unchanged():
    assert check_question("  谁写了《堂吉诃德》？ ") .text == "谁写了《堂吉诃德》？"
    assert check_question("Кто написал «Дон Кихота»?").notes == ()


def test_highlight_marks_exact_offsets_and_escapes_html():
    text = "<b>Cervantes</b> wrote Don Quixote & more"
    start = text.index("Cervantes")
    out = highlight(text, [Span("p", start, start + len("Cervantes")), Span("p", start + 2, start + 5), Span("p", 10, 999)])
    assert out == '&lt;b&gt;<mark class="answer-span">Cervantes</mark>&lt;/b&gt; wrote Don Quixote &amp; more'


HOSTILE = '<script>alert("x")</script><img src=x onerror=alert(1)>'


def test_answers_notes_and_titles_are_escaped_on_the_page():
    passage = Passage("p1", f"Title {HOSTILE}", f"before {HOSTILE} after")
    start = passage.text.index(HOSTILE)
    hit = Hit(passage, 0.5, 1)
    answer = Answer("q", HOSTILE, 0.9, (hit,), (Span("p1", start, start + len(HOSTILE)),))
    result = DemoResult("q", answer, (hit,), notes=(f"note {HOSTILE}",))
    page = render_answer(result) + render_passages(result) + render_answer(DemoResult("q", error=f"error {HOSTILE}"))
    assert "<script" not in page and "<img" not in page
    assert page.count("&lt;script&gt;") == 5  # answer, note, title, passage text (marked), error


def test_card_scores_say_what_they_are_per_retriever():
    hit = Hit(Passage("p", "T", "text"), 0.01639, 1)
    assert "fused score 0.0164 (dense + BM25)" in render_passages(DemoResult("q", hits=(hit,), retriever="hybrid"))
    assert "similarity 0.02" in render_passages(DemoResult("q", hits=(hit,), retriever="dense"))
    assert 'title="BM25 term-match' in render_passages(DemoResult("q", hits=(hit,), retriever="bm25"))
    ranked = DemoResult("q", hits=(hit,), retriever="hybrid", source_ranks={hit.passage.id: {"dense": 3, "bm25": None}})
    assert "dense #3 · BM25 not in top 100 (fused 0.0164)" in render_passages(ranked)  # ranks say what a fused score means


def test_cards_highlight_only_the_passage_the_span_points_into():
    a, b = Passage("a", "A", "Miguel de Cervantes wrote it."), Passage("b", "B", "Cervantes again.")
    hits = (Hit(a, 0.9, 1), Hit(b, 0.5, 2))
    answer = Answer("q", "Miguel de Cervantes", 0.7, hits[:1], (Span("a", 0, 19),))
    html = render_passages(DemoResult("q", answer, hits))
    assert html.count("<mark") == 1 and '<mark class="answer-span">Miguel de Cervantes</mark>' in html
    assert cards(html) == 2 and "#2" in html
    page = render_answer(DemoResult("q", answer, hits))
    assert "Miguel de Cervantes" in page and "score 0.700 · in 1 of 2 passages" in page


def test_missing_index_gives_a_page_message_with_the_build_command(tmp_path):
    models = load_models(DemoConfig(index=str(tmp_path / "nope")))
    assert models.pipelines == {} and "no index" in models.problem
    assert models.fix == f"rag index build --corpus default --out {tmp_path / 'nope'}"
    page = render_answer(ask(models, QUESTION, "dense", 5))
    assert "rag index build --corpus default" in page and "Traceback" not in page


def test_unknown_retriever_is_a_clear_error(small_index):
    with pytest.raises(RagError, match="valid: dense, bm25, hybrid"):
        load_models(DemoConfig(index=str(small_index.path), retrievers=("dense", "tfidf")))


def test_cli_parses_demo_options():
    from rag.cli import build_parser
    from rag.commands import cmd_demo

    args = build_parser().parse_args(["demo", "--index", "indexes/x", "--reader", "default", "--host", "0.0.0.0", "--port", "7999", "-k", "3", "--retrievers", "bm25,dense"])
    assert (args.func, args.index, args.host, args.port, args.k, args.retrievers) == (cmd_demo, "indexes/x", "0.0.0.0", 7999, 3, ["bm25", "dense"])
    assert build_parser().parse_args(["demo"]).host == "127.0.0.1"  # localhost unless asked
    assert (build_parser().parse_args(["demo"]).rerank, build_parser().parse_args(["demo", "--rerank", "0"]).rerank) == (RerankConfig.depth, 0)
    with pytest.raises(RagError, match="k must be between 1 and 20"):
        DemoConfig(k=50)
    with pytest.raises(RagError, match="max_queue must be 1 or more, not 0"):
        DemoConfig(max_queue=0)


def test_request_problems_name_each_field_as_the_cli_checks_it():
    from rag.app import DemoModels, check_demo_k, request_problems

    models = DemoModels(pipelines={"dense": None, "bm25": None}, readers={"span reader": None})
    assert request_problems(models, 20, QUESTION, 3, "dense", "span reader") == {}
    assert (check_demo_k(3.0, 20), check_demo_k(20, 20)) == (3, 20)  # 3.0 is the number 3
    for k in (2.7, 21, 0, -5, "3", True, None, float("nan")):
        assert request_problems(models, 20, QUESTION, k, "dense", "span reader") == {"k": f"k must be a whole number from 1 to 20, not {k!r}"}
    assert request_problems(models, 20, ["x" * 100_000], 3, "dense", "span reader")["question"].startswith("question must be text, not ['xxx")
    assert len(request_problems(models, 20, ["x" * 100_000], 3, "dense", "span reader")["question"]) < 100  # a 100 KB value is quoted short
    assert request_problems(models, 20, "", 3, {"a": 1}, 5) == {
        "question": "question: Type a question first.",
        "retriever": "retriever must be one of dense, bm25, not {'a': 1}",
        "reader": "reader must be one of span reader, not 5",
    }
    assert request_problems(DemoModels(problem="no index"), 20, QUESTION, 3, "dense", "span reader") == {}  # ask() says why instead


# --- one real server ------------------------------------------------------------------------


class ReadTimes:
    """Wraps the real reader and records when each read ran, to check that the queue serializes them."""

    def __init__(self, reader):
        self.reader, self.intervals, self._lock = reader, [], threading.Lock()

    def read(self, questions, hits):
        start = time.perf_counter()
        try:
            return self.reader.read(questions, hits)
        finally:
            with self._lock:
                self.intervals.append((start, time.perf_counter()))


def post_json(url: str, body) -> tuple[int, dict]:
    """POST `body` as JSON: the HTTP status and the JSON reply, 4xx and 5xx included."""
    import json
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=60) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def problems_named(refused: dict) -> dict[str, str]:
    """A Gradio validator's 422 reply: the refused fields, name -> message."""
    return {v["parameter_name"]: v["message"] for v in refused["detail"] if not v["is_valid"]}


def complete_event(url: str, event_id: str) -> list:
    """The data of a /gradio_api/call/NAME event, read from its stream."""
    import json
    import urllib.request

    stream = urllib.request.urlopen(f"{url}/{event_id}", timeout=120).read().decode()
    return json.loads(stream.split("event: complete\ndata: ", 1)[1].splitlines()[0])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def demo_models(small_index):
    """Loaded once for the module: the main server and the small-queue server share them."""
    models = load_models(DemoConfig(index=str(small_index.path), k=5))
    models.readers["span reader"] = ReadTimes(models.readers["span reader"])
    return models


@pytest.fixture(scope="module")
def demo(small_index, demo_models):
    config = DemoConfig(index=str(small_index.path), k=5, port=_free_port())
    times = demo_models.readers["span reader"]
    app = launch_demo(config, demo_models, block=False)
    assert app.local_url.startswith("http://127.0.0.1:")  # localhost unless asked otherwise
    try:
        yield app.local_url, times
    finally:
        app.close()


@pytest.fixture(scope="module")
def client(demo):
    from gradio_client import Client

    return Client(demo[0], verbose=False)


@pytest.mark.parametrize("kind", ["dense", "bm25", "hybrid"])
def test_api_answers_with_each_retriever(client, kind):
    answer_html, passages_html = client.predict(QUESTION, kind, 3, api_name="/ask")
    assert 'class="rag-answer"' in answer_html
    assert cards(passages_html) == 3 and "Don Quixote" in passages_html
    answer = re.search(r'<div class="rag-answer-text">(.*?)</div>', answer_html).group(1)
    assert "Cervantes" in answer and f'<mark class="answer-span">{answer}</mark>' in passages_html  # the answer, marked where it was read
    if kind == "hybrid":  # each fused passage shows its rank in both rankings
        assert passages_html.count("dense #") + passages_html.count("dense not in top") == 3 and "BM25 " in passages_html


def test_api_reranks_by_default_and_says_so(client):
    """Re-ranking is part of the default pipeline: the retriever's top N re-scored by models/reranker unless switched off."""
    reranked = client.predict("Who wrote Dracula?", 5, "dense", "span reader", api_name="/answer")
    assert reranked["reranked_from"] == RerankConfig.depth
    assert reranked["answer"] == "Bram Stoker" and "Bram Stoker" in reranked["passages"][0]["text"]
    _, passages_html = client.predict(QUESTION, "dense", 3, "span reader", True, api_name="/ask")
    assert f"re-ranked by the cross-encoder from the retriever's top {RerankConfig.depth}" in passages_html and cards(passages_html) == 3
    _, passages_html = client.predict(QUESTION, "dense", 3, "span reader", False, api_name="/ask")
    assert "re-ranked" not in passages_html and cards(passages_html) == 3


def test_json_api_over_plain_http(demo):
    """POST the question, GET the result: the answer, its probability and the passages as data."""
    import json
    import urllib.request

    url = demo[0].rstrip("/") + "/gradio_api/call/answer"
    request = urllib.request.Request(url, data=json.dumps({"data": ["Who wrote Dracula?", 3, "bm25", "span reader"]}).encode(), headers={"Content-Type": "application/json"})
    event = json.loads(urllib.request.urlopen(request, timeout=60).read())["event_id"]
    stream = urllib.request.urlopen(f"{url}/{event}", timeout=120).read().decode()
    (result,) = json.loads(stream.split("event: complete\ndata: ", 1)[1].splitlines()[0])
    assert result["answer"] == "Bram Stoker" and 0 < result["probability"] <= 1 and result["error"] is None
    assert (result["retriever"], result["reader"]) == ("bm25", "span reader")
    assert [p["rank"] for p in result["passages"]] == [1, 2, 3]
    read = [p for p in result["passages"] if p["answer_spans"]]
    start, end = read[0]["answer_spans"][0]
    assert read[0]["text"][start:end] == "Bram Stoker"
    status, refused = post_json(url, {"data": ["", 3, "bm25", "span reader"]})  # refused when posted: no event to read
    assert status == 422 and problems_named(refused) == {"question": "question: Type a question first."}


# The page's example questions (rag.app.EXAMPLES), answered by the shipped reader over the small index.
EXAMPLE_ANSWERS = {
    "Who wrote Don Quixote?": "Miguel de Cervantes",
    "Where is the Eiffel Tower?": "Paris",
    "Who painted the Arnolfini Portrait?": "Jan van Eyck",
    "Who wrote Dracula?": "Bram Stoker",
    "Who composed the Brandenburg Concertos?": "Johann Sebastian Bach",
}


def test_example_questions_are_answered_correctly(client):
    assert set(EXAMPLE_ANSWERS) == set(EXAMPLES)
    for question, expected in EXAMPLE_ANSWERS.items():
        answer_html, _ = client.predict(question, "dense", 5, api_name="/ask")
        found = re.search(r'<div class="rag-answer-text">(.*?)</div>', answer_html)
        assert found and expected in found.group(1), (question, answer_html)  # e.g. "Champ de Mars in Paris, France"


@pytest.mark.parametrize("reader", ["RAG-Sequence", "RAG-Token"])
def test_generated_answers_come_with_per_passage_weights(client, reader):
    """The shipped generator, chosen by name: the answer and, per passage read, p(z|q) and its share of the answer."""
    result = client.predict("Who wrote Dracula?", 5, "dense", reader, api_name="/answer")
    assert result["answer"] == "Bram Stoker" and result["reader"] == reader and 0 < result["probability"] <= 1
    priors, shares = [p["p_passage"] for p in result["passages"]], [p["contribution"] for p in result["passages"]]
    assert len(priors) == 5 and abs(sum(priors) - 1) < 1e-3 and abs(sum(shares) - 1) < 1e-3
    assert max(result["passages"], key=lambda p: p["contribution"])["answer_spans"]  # the passage that counted most holds the answer


def test_untrained_reader_is_announced_on_the_page(small_index, tmp_path, monkeypatch):
    monkeypatch.setenv("RAG_MODELS_DIR", str(tmp_path))  # no shipped reader: the untrained MiniLM head
    untrained = load_models(DemoConfig(index=str(small_index.path), retrievers=("bm25",)))
    assert "**untrained**" in untrained.about
    assert "Re-ranking is off" in untrained.about and not untrained.rerankers  # no models/reranker either: no box, no crash
    assert "Re-ranking is off in this demo" in ask(untrained, "Who wrote Dracula?", "bm25", 3, rerank=True).error
    monkeypatch.delenv("RAG_MODELS_DIR")
    assert "untrained" not in load_models(DemoConfig(index=str(small_index.path), retrievers=("bm25",))).about


@pytest.mark.parametrize(
    "question, expected",
    [("   ", "Type a question first."), ("x " * 50_000, "100,000 characters"), ("谁写了堂吉诃德？", '<mark class="answer-span">'), ("Кто написал Дон Кихота?", '<mark class="answer-span">')],
    ids=["whitespace", "100KB", "chinese", "russian"],
)
def test_api_odd_questions_get_a_message_or_an_answer(client, question, expected):
    start = time.perf_counter()
    answer_html, passages_html = client.predict(question, "dense", 5, api_name="/ask")
    assert expected in answer_html + passages_html
    assert "Traceback" not in answer_html + passages_html
    assert time.perf_counter() - start < 20


@pytest.mark.parametrize("k, message", [(0, "less than minimum value 1"), (10_000, "greater than maximum value 20")])
def test_api_refuses_k_outside_the_slider_range(demo, capfd, k, message):
    """The slider's own check, run with the page's validator when the request arrives: 400 and its message."""
    status, refused = post_json(demo[0].rstrip("/") + "/gradio_api/call/ask", {"data": [QUESTION, "bm25", k, "span reader", True]})
    assert status == 400 and message in refused["detail"]
    assert "Traceback" not in "".join(capfd.readouterr())


DRACULA = "Who wrote Dracula?"


@pytest.mark.parametrize(
    "data, field, message",
    [
        ([DRACULA, 1000, "dense", "span reader"], "k", "k must be a whole number from 1 to 20, not 1000"),  # took 15.5 s and 0.7 GB
        ([DRACULA, 2.7, "dense", "span reader"], "k", "not 2.7"),  # was cut to 2
        ([DRACULA, 0, "dense", "span reader"], "k", "not 0"),
        ([DRACULA, "3", "dense", "span reader"], "k", "not '3'"),  # a JSON number is asked for
        ([DRACULA, True, "dense", "span reader"], "k", "not True"),
        ([DRACULA, None, "dense", "span reader"], "k", "not None"),
        ([42, 3, "dense", "span reader"], "question", "question must be text, not 42"),
        (["   ", 3, "dense", "span reader"], "question", "question: Type a question first."),
        ([DRACULA, 3, "tfidf", "span reader"], "retriever", "retriever must be one of dense, bm25, hybrid, not 'tfidf'"),
        ([DRACULA, 3, ["dense"], "span reader"], "retriever", "not ['dense']"),
        ([DRACULA, 3, "dense", "T5"], "reader", "reader must be one of span reader, RAG-Sequence, RAG-Token, not 'T5'"),
    ],
    ids=["k-1000", "k-2.7", "k-0", "k-string", "k-bool", "k-null", "question-number", "question-blank", "retriever-unknown", "retriever-list", "reader-unknown"],
)
def test_json_api_refuses_bad_input_with_422_naming_the_field(demo, capfd, data, field, message):
    """Refused when posted, before the queue: HTTP 422, each bad field named with its message; nothing in the server log."""
    capfd.readouterr()
    start = time.perf_counter()
    status, refused = post_json(demo[0].rstrip("/") + "/gradio_api/call/answer", {"data": data})
    assert status == 422, refused
    assert list(problems_named(refused)) == [field] and message in problems_named(refused)[field]
    assert time.perf_counter() - start < 5  # no model ran
    assert "Traceback" not in "".join(capfd.readouterr())


def test_json_api_names_every_bad_field_at_once(demo):
    status, refused = post_json(demo[0].rstrip("/") + "/gradio_api/call/answer", {"data": [42, 2.7, "tfidf", "T5"]})
    assert status == 422 and list(problems_named(refused)) == ["question", "k", "retriever", "reader"]


@pytest.mark.parametrize("data", [[], [DRACULA]], ids=["none", "one"])
def test_json_api_with_too_few_values_is_a_400_naming_them(demo, capfd, data):
    capfd.readouterr()
    status, refused = post_json(demo[0].rstrip("/") + "/gradio_api/call/answer", {"data": data})
    assert status == 400 and f"answer(question, k, retriever, reader)) didn't receive enough input values (needed: 4, got: {len(data)})" in refused["detail"]
    assert "Traceback" not in "".join(capfd.readouterr())


def test_gradio_client_gets_the_validation_message(client):
    from gradio_client.exceptions import ValidationError

    with pytest.raises(ValidationError, match="k must be a whole number from 1 to 20, not 2.7"):
        client.predict(DRACULA, 2.7, "dense", "span reader", api_name="/answer")


def test_run_route_that_skipped_the_queue_is_closed(demo):
    """/gradio_api/run/NAME ran a request at once: past the one-at-a-time queue and the validators."""
    status, refused = post_json(demo[0].rstrip("/") + "/gradio_api/run/answer", {"data": [DRACULA, 1000, "dense", "span reader"]})
    assert status == 404 and "join the queue" in refused["detail"]


@pytest.mark.parametrize(
    "data, field, message",
    [([QUESTION, "bm25", 2.7, "span reader", True], "k", "not 2.7"), ([QUESTION, "bm25", 3, "span reader", "yes"], "rerank", "rerank must be true or false, not 'yes'")],
    ids=["k-2.7", "rerank-string"],
)
def test_page_api_refuses_what_the_page_cannot_send(demo, capfd, data, field, message):
    capfd.readouterr()
    status, refused = post_json(demo[0].rstrip("/") + "/gradio_api/call/ask", {"data": data})
    assert status == 422 and list(problems_named(refused)) == [field] and message in problems_named(refused)[field]
    assert "Traceback" not in "".join(capfd.readouterr())


class SlowReader:
    """The real reader, 2 s slower: a burst of requests arrives while the first is still being answered."""

    def __init__(self, reader, seconds: float = 2.0):
        self.reader, self.seconds = reader, seconds

    def read(self, questions, hits):
        time.sleep(self.seconds)
        return self.reader.read(questions, hits)


@pytest.fixture
def small_queue_demo(small_index, demo_models):
    """A second server over the same models, whose queue holds one question behind the one being answered."""
    from dataclasses import replace

    config = DemoConfig(index=str(small_index.path), k=5, port=_free_port(), max_queue=1)
    models = replace(demo_models, readers={**demo_models.readers, "span reader": SlowReader(demo_models.readers["span reader"])})
    app = launch_demo(config, models, block=False)
    try:
        yield app.local_url
    finally:
        app.close()


def test_requests_beyond_the_queue_are_refused_at_once(small_queue_demo, capfd):
    """max_queue=1 and 8 requests at once: one answered, one waiting, the rest refused at once with 503, not queued for minutes."""
    url = small_queue_demo.rstrip("/") + "/gradio_api/call/answer"
    capfd.readouterr()
    arrive = threading.Barrier(8)
    replies, lock = [], threading.Lock()

    def ask_one():
        arrive.wait()
        start = time.perf_counter()
        status, reply = post_json(url, {"data": [DRACULA, 3, "bm25", "span reader"]})
        with lock:
            replies.append((status, reply, time.perf_counter() - start))

    threads = [threading.Thread(target=ask_one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    refused = [(reply, seconds) for status, reply, seconds in replies if status == 503]
    admitted = [reply["event_id"] for status, reply, _ in replies if status == 200]
    assert len(replies) == 8 and len(refused) + len(admitted) == 8, replies
    assert 1 <= len(admitted) <= 2 and len(refused) >= 6  # the one being answered and the one waiting
    assert all("Queue is full" in reply["detail"] and seconds < 2 for reply, seconds in refused), refused  # before the first answer (2 s) is done
    for event_id in admitted:  # the admitted ones are answered, none lost
        (result,) = complete_event(url, event_id)
        assert result["answer"] == "Bram Stoker"
    assert "Traceback" not in "".join(capfd.readouterr())


def test_concurrent_questions_are_queued_not_run_in_parallel(demo, client):
    times = demo[1]
    times.intervals.clear()
    jobs = [client.submit(q, "dense", 5, api_name="/ask") for q in (QUESTION, "Who painted the Arnolfini Portrait?", "Where is the Eiffel Tower?", "What is Dune about?")]
    results = [job.result(timeout=60) for job in jobs]
    assert all('class="rag-answer' in answer for answer, _ in results)
    spans = sorted(times.intervals)
    assert len(spans) == 4
    assert all(prev_end <= next_start for (_, prev_end), (next_start, _) in zip(spans, spans[1:])), spans


# --- a real browser -------------------------------------------------------------------------


def test_browser_question_to_answer_with_highlighted_passage(demo):
    if not CHROMIUM.exists():
        pytest.skip(f"Debian's chromium is not installed at {CHROMIUM}: `make test` installs it with apt-get, which was unavailable here")
    sync_playwright = pytest.importorskip("playwright.sync_api").sync_playwright
    url = demo[0]
    outside = []  # requests that would leave localhost: none expected (no analytics, fonts or CDNs)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 1000})
            page.on("request", lambda r: outside.append(r.url) if not r.url.startswith((url.rstrip("/"), "data:", "blob:")) else None)
            page.goto(url)
            page.get_by_label("Question").fill(QUESTION)
            page.get_by_role("button", name="Ask").click()
            page.locator("#answer .rag-answer-text").wait_for(timeout=30_000)
            mark = page.locator("#passages mark.answer-span").first
            mark.wait_for(timeout=10_000)
            answer = page.locator("#answer .rag-answer-text").inner_text()
            assert answer.strip() == "Miguel de Cervantes" and answer.strip() in page.locator("#passages").inner_text()
            assert "untrained" not in page.content()
            assert page.locator("#passages .rag-card").count() == 5
            assert "Don Quixote" in page.locator("#passages .rag-title").all_inner_texts()
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "demo.png"), full_page=True)
            page.get_by_text("Who wrote Dracula?").click()  # an example is asked on click, not only copied into the box
            page.wait_for_function("document.querySelector('#answer .rag-answer-text')?.innerText.includes('Bram Stoker')", timeout=30_000)
            assert "ms, read" in page.locator("#answer .rag-answer-score").inner_text()  # retrieve / read times on the page
            assert page.locator("#passages .rag-weight").count() == 0  # the span reader shows no per-passage RAG weights
            assert "re-ranked by the cross-encoder" in page.locator("#passages").inner_text().lower()  # re-ranking is on by default
            page.get_by_label(f"Re-rank the top {RerankConfig.depth}").uncheck()  # the cross-encoder, switched off from the page
            page.get_by_role("button", name="Ask").click()
            page.wait_for_function("!document.querySelector('#passages').innerText.toLowerCase().includes('re-ranked')", timeout=30_000)
            assert page.locator("#answer .rag-answer-text").inner_text().strip() == "Bram Stoker"
            page.get_by_label("RAG-Token").check()  # the shipped generator, chosen on the page
            page.get_by_role("button", name="Ask").click()
            page.locator("#passages .rag-weight").first.wait_for(timeout=60_000)
            assert page.locator("#answer .rag-answer-text").inner_text().strip() == "Bram Stoker"
            assert "p(z|q)" in page.locator("#passages .rag-weight").first.inner_text()
        finally:
            browser.close()
    assert (ARTIFACTS / "demo.png").stat().st_size > 10_000
    assert outside == []
