"""Honest output (issue "Trust ... honest output", items 5 and 6), each case reproduced for real: what `rag ask`,
`rag search`, `rag index add` and `rag eval retrieval` print says what really happened, with named scores."""
from __future__ import annotations

import contextlib
import io
import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from rag.build import BuildConfig, build_index
from rag.cli import main
from rag.index_folder import open_index

QUESTION = "who wrote anna karenina"  # the 60-passage index holds "Anna Karenina"


def write_corpus(path: Path, passages) -> Path:
    path.write_text("".join(json.dumps({"id": p.id, "title": p.title, "text": p.text}) + "\n" for p in passages))
    return path


@pytest.fixture(scope="module")
def sixty_built(tmp_path_factory, default_passages, encoder):
    corpus = write_corpus(tmp_path_factory.mktemp("messages") / "sixty.jsonl", default_passages[:60])
    return build_index(BuildConfig(corpus=str(corpus), shard_size=32), corpus.parent / "idx", encoder=encoder, progress=False).path


@pytest.fixture
def sixty(tmp_path, sixty_built):
    """A private copy of a 60-passage index (real MiniLM vectors, real FAISS)."""
    shutil.copytree(sixty_built, tmp_path / "idx")
    return open_index(tmp_path / "idx")


def run(capsys, *argv: str) -> tuple[str, str]:
    assert main(list(argv)) == 0
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return captured.out, captured.err


# --- 1. passages really read -----------------------------------------------------------------


def test_ask_says_how_many_passages_it_read_when_k_is_larger_than_the_index(sixty, capsys):
    out, _ = run(capsys, "ask", QUESTION, "--index", str(sixty.path), "-k", "1000", "--rerank", "0")
    assert "marginalized over the 60 passages read" in out
    assert out.count("the index holds only 60 passages") == 1
    assert "1000 passages" not in out and "Tolstoy" in out


# --- 2. a BM25 search without a match --------------------------------------------------------


def test_bm25_search_without_a_match_says_so(sixty, capsys):
    args = ("search", "xyzzy qwertyuiop", "--retriever", "bm25", "--rerank", "0", "--index", str(sixty.path))
    out, _ = run(capsys, *args)
    assert out.strip() == "no passage shares a word with the question"
    data = json.loads(run(capsys, *args, "--json")[0])
    assert data["hits"] == [] and data["note"] == "no passage shares a word with the question"


# --- 3. rag ask: named scores, the order they were read in, the evidence numbered -------------

EVIDENCE = re.compile(r"^\s+(\d+)\. rank (\d+) of (\d+) \[(reranker|similarity) (-?\d+\.\d+)\] ")


def test_ask_names_its_scores_and_lists_the_evidence_in_reading_order(sixty, capsys):
    out, _ = run(capsys, "ask", "who painted the arnolfini portrait", "--index", str(sixty.path), "-k", "8")  # re-ranked: the default
    assert "re-ranked by rag-reranker from the top 50" in out and "reranker score = 20 x similarity + cross-encoder logit" in out
    rows = [EVIDENCE.match(line) for line in out.splitlines() if EVIDENCE.match(line)]
    assert rows and "van Eyck" in out
    assert [int(m[1]) for m in rows] == list(range(1, len(rows) + 1))  # numbered 1.. as shown, never starting at "2."
    ranks, scores = [int(m[2]) for m in rows], [float(m[5]) for m in rows]
    assert ranks == sorted(ranks) and scores == sorted(scores, reverse=True)  # reading order, by the score that made it
    assert {int(m[3]) for m in rows} == {8} and {m[4] for m in rows} == {"reranker"}

    (answer,) = [json.loads(line) for line in run(capsys, "ask", "who painted the arnolfini portrait", "--index", str(sixty.path), "-k", "8", "--json")[0].splitlines()]
    old_fields = {"rank", "score", "id", "title", "text", "answer_spans"}
    assert all(old_fields <= set(e) and "rerank_score" in e for e in answer["evidence"])  # --json only gains fields
    assert {"question", "answer", "probability", "evidence"} <= set(answer)


# --- 4. rag search says it re-ranked -------------------------------------------------------------


def test_search_header_says_when_and_how_the_passages_were_reranked(sixty, capsys):
    out, _ = run(capsys, "search", QUESTION, "--index", str(sixty.path), "-k", "4")
    header, *lines = out.splitlines()
    assert "4 passages, ranked by dense similarity, re-ranked by rag-reranker from the top 50" in header
    scores = [float(m[1]) for m in (re.match(r"^\s+\d+\. \[reranker (-?\d+\.\d+)\]", line) for line in lines) if m]
    assert len(scores) == 4 and scores == sorted(scores, reverse=True)
    data = json.loads(run(capsys, "search", QUESTION, "--index", str(sixty.path), "-k", "4", "--json")[0])
    assert data["reranked_from"] == 50 and data["reranker"] == "rag-reranker"
    assert [h["rerank_score"] for h in data["hits"]] == sorted((h["rerank_score"] for h in data["hits"]), reverse=True)

    plain, _ = run(capsys, "search", QUESTION, "--index", str(sixty.path), "-k", "4", "--rerank", "0")
    assert plain.splitlines()[0] == "4 passages, ranked by dense similarity:" and "re-ranked" not in plain and "[similarity 0." in plain
    assert json.loads(run(capsys, "search", QUESTION, "--index", str(sixty.path), "--rerank", "0", "--json")[0])["reranked_from"] == 0


# --- 5. no bm25s progress bars -------------------------------------------------------------------


def test_building_the_bm25_index_shows_rags_progress_not_bm25s_bars(sixty, capsys):
    from rag.bm25 import bm25_for_index

    bm25_for_index(sixty, progress=True)
    err = capsys.readouterr().err
    assert "BM25: tokenizing passages" in err and "BM25S" not in err  # bm25s' "BM25S Count Tokens" ... bars


# --- 6. adding a file twice ------------------------------------------------------------------------


def test_adding_the_same_file_twice_says_there_is_nothing_to_do(sixty, tmp_path, default_passages, capsys):
    more = write_corpus(tmp_path / "more.jsonl", default_passages[60:65])
    out, _ = run(capsys, "index", "add", "--index", str(sixty.path), "--corpus", str(more))
    assert out.strip() == f"{sixty.path}: now 65 passages"
    again, _ = run(capsys, "index", "add", "--index", str(sixty.path), "--corpus", str(more))
    assert again.strip() == f"{more} is already in {sixty.path} (same passages): nothing to do; the index holds 65 passages"


# --- 7 and 8. rag eval retrieval: the plan before the run, a plot title that fits -----------------


@pytest.fixture(scope="module")
def six_configurations(sixty_built, tmp_path_factory):
    """`rag eval retrieval` as the README runs it (dense, BM25, hybrid, each also re-ranked; 20 deep, not 50, for time), on 3 real questions:
    (stdout, stderr, the plot's figure as it was saved)."""
    import matplotlib.pyplot as plt

    folder = tmp_path_factory.mktemp("eval")
    index = shutil.copytree(sixty_built, folder / "idx")
    qa = folder / "NQ-open.dev.jsonl"
    qa.write_text("".join(json.dumps({"question": q, "answer": [a]}) + "\n" for q, a in
                          [(QUESTION, "Leo Tolstoy"), ("who painted the arnolfini portrait", "Jan van Eyck"), ("where is angkor wat", "Cambodia")]))
    figures, close = [], plt.close
    out, err = io.StringIO(), io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        mp.setattr(plt, "close", lambda fig=None: (figures.append(fig), close(fig)))  # the figure write_plot saved
        assert main(["eval", "retrieval", "--questions", str(qa), "--index", str(index), "--k-list", "1,5,20", "--rerank", "20", "--out", str(folder / "out" / "retrieval")]) == 0
    return out.getvalue(), err.getvalue(), figures


def test_eval_retrieval_says_what_it_will_run_and_how_long_reranking_takes(six_configurations):
    out, err, _ = six_configurations
    plan = "6 configurations x 3 questions: dense, bm25, hybrid, dense + rerank 20, bm25 + rerank 20, hybrid + rerank 20"
    assert plan in err and err.index(plan) < err.index("dense: questions")  # before the first configuration runs
    assert re.search(r"re-ranking takes ~\d+\.\d\d s a question here \(measured on the first 3\): about \d+ s for the 3 re-ranked configurations", err)
    assert "--rerank 0" in err and "top-k retrieval accuracy" in out


def test_eval_retrieval_plot_title_lies_inside_the_figure(six_configurations):
    *_, figures = six_configurations
    (fig,) = figures
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)  # a closed figure keeps no canvas of its own
    canvas.draw()
    title = fig.axes[0].title
    box, frame = title.get_window_extent(canvas.get_renderer()), fig.bbox
    assert "hybrid + rerank 20" in title.get_text() and "n = 3 questions" in title.get_text()
    assert box.x0 >= 0 and box.y0 >= 0 and box.x1 <= frame.width and box.y1 <= frame.height, (box, frame)


# --- 9. answer offsets cover the answer ---------------------------------------------------------------


def test_json_answer_spans_cover_exactly_the_answer(small_index, tmp_path, capsys):
    """Spans that only normalize to the answer ("Bram Stoker." for "Bram Stoker", "centre of ..." for "the centre of ...")
    mark the answer's own words: passage_text[start:end] is the answer (up to case and spacing)."""
    questions = tmp_path / "q.txt"
    questions.write_text("who wrote dracula\nwho wrote don quixote\nwhere is the eiffel tower\nwhere is the colosseum\nwho built the great wall of china\n")
    out, _ = run(capsys, "ask", "--questions", str(questions), "--index", str(small_index.path), "-k", "10", "--rerank", "0")
    answers = [json.loads(line) for line in out.splitlines()]
    assert len(answers) == 5

    def norm(text: str) -> str:
        return " ".join(text.split()).casefold()

    for a in answers:
        spans = [(e["text"], s, t) for e in a["evidence"] for s, t in e["answer_spans"]]
        assert a["answer"] and spans, a["question"]
        assert [norm(text[s:t]) for text, s, t in spans] == [norm(a["answer"])] * len(spans), a["question"]


# --- 10. escape sequences never reach the encoder ---------------------------------------------------


def test_escape_sequences_are_removed_before_the_question_is_encoded(sixty, encoder, capsys):
    from rag.pipeline import check_question

    dirty = "\x1b[31mwho wrote dracula\x1b[0m"
    checked = check_question(dirty)
    assert checked.text == "who wrote dracula" and any("removed" in n for n in checked.notes)
    np.testing.assert_array_equal(encoder.encode_queries([checked.text]), encoder.encode_queries(["who wrote dracula"]))
    out, err = run(capsys, "search", dirty, "--index", str(sixty.path), "--rerank", "0", "--json")
    assert json.loads(out)["question"] == "who wrote dracula" and "rag: note: Terminal escape sequences" in err


# --- 5. "not sure" below the reader's calibrated threshold (SpanReader.not_sure_below) ---------------------


def test_ask_says_not_sure_below_the_threshold_and_answers_above_it(sixty, capsys):
    from rag.read import NOT_SURE_BELOW as SPAN_READER_NOT_SURE_BELOW

    question = ("ask", "who painted the arnolfini portrait", "--index", str(sixty.path), "-k", "8")
    unsure = run(capsys, *question, "--not-sure-below", "1.01")[0].splitlines()[0]
    assert unsure.startswith("answer: not sure (best guess: ") and "van Eyck" in unsure and "below the not-sure threshold 1.01" in unsure
    assert run(capsys, *question, "--not-sure-below", "0")[0].splitlines()[0].startswith("answer: ") and "not sure" not in run(capsys, *question, "--not-sure-below", "0")[0]
    (record,) = [json.loads(line) for line in run(capsys, *question, "--json")[0].splitlines()]
    assert record["not_sure_below"] == SPAN_READER_NOT_SURE_BELOW and record["sure"] == (record["probability"] >= SPAN_READER_NOT_SURE_BELOW)


def test_the_demo_marks_an_unsure_answer_as_a_guess():
    from rag.app import DemoResult
    from rag.demo_render import render_answer, result_json
    from rag.types import Answer, Hit, Passage

    hit = Hit(Passage("a", "A", "Jan van Eyck painted it."), 0.9, 1)
    low, high = (DemoResult("q", Answer("q", "Jan van Eyck", p, (hit,)), (hit,), not_sure_below=0.3) for p in (0.1, 0.8))
    assert 'data-sure="false"' in render_answer(low) and "Not sure · best guess" in render_answer(low) and "Jan van Eyck" in render_answer(low)
    assert 'data-sure="true"' in render_answer(high) and ">Answer<" in render_answer(high)
    assert (result_json(low)["sure"], result_json(high)["sure"]) == (False, True)
