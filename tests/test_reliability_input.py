"""Issue 13, bad input: undecodable and duplicate corpus records, k below 1, terminal escapes in
the data, long questions in the demo. Real files, the real CLI, a real (tiny) index; no mocks."""
from __future__ import annotations

import bz2
import gzip
import json
import re
from pathlib import Path

import pytest

from rag.cli import main, printable
from rag.corpus import ReadReport, read_passages
from rag.store import PassageStore
from rag.types import Passage, RagError

# Real sentences; the escape sequences are what a hostile or broken corpus holds.
PASSAGES = [
    {"id": "quixote", "title": "Don Quixote", "text": "Don Quixote is a Spanish novel by Miguel de Cervantes, published in two parts in 1605 and 1615."},
    {"id": "eiffel", "title": "Eiffel Tower", "text": "The Eiffel Tower is a wrought-iron lattice tower on the Champ de Mars in Paris, France."},
    {"id": "dracula", "title": "Dracula", "text": "Dracula is an 1897 Gothic horror novel by the Irish author Bram Stoker."},
    {"id": "bach", "title": "Brandenburg Concertos", "text": "The Brandenburg Concertos are six instrumental works by Johann Sebastian Bach."},
    {
        "id": "evil\x1b[2J",
        "title": "Don Quixote\x1b]0;pwn\x07 (novel)\x9b31m",
        "text": "Don Quixote was written by Miguel\x1b[2J de Cervantes.\r\x1b[31mFAKE PROMPT $\x1b[0m\x7f\ttabbed\nnext line\x08\x08 in Spain.",
    },
]


def write_jsonl(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    """`rag ARGV` in this process: (exit code, stdout, stderr); argparse's exit is caught as its code."""
    try:
        code = main(list(argv))
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def tiny_index(tmp_path_factory) -> Path:
    """A real index over PASSAGES (default offline MiniLM, flat FAISS, BM25), built by `rag index build`."""
    folder = tmp_path_factory.mktemp("tiny")
    corpus = write_jsonl(folder / "corpus.jsonl", PASSAGES)
    assert main(["index", "build", "--corpus", str(corpus), "--out", str(folder / "index")]) == 0
    return folder / "index"


# --- 1. non-UTF-8 bytes ------------------------------------------------------------------------

# Lines 1-2 are long (> 8 KB together: a text-mode file decodes in chunks and reported the byte
# offset inside its chunk); line 3 holds the bad byte; line 4 is fine; line 5 has a record error.
LONG = "word " * 1000


def _lines(fmt: str) -> list[bytes]:
    bad = "Caf\u00e9 au lait".encode("latin-1")  # "é" as one latin-1 byte 0xe9: not UTF-8
    if fmt == "jsonl":
        return [b"", json.dumps({"id": "a", "title": "A", "text": LONG}).encode() + b"\n", json.dumps({"id": "b", "title": "B", "text": LONG}).encode() + b"\n",
                b'{"id": "c", "title": "C", "text": "' + bad + b'"}\n', json.dumps({"id": "d", "title": "D", "text": "fine"}).encode() + b"\n", b'{"id": "e"}\n']
    if fmt == "tsv":
        return [b"id\ttext\ttitle\n", f"a\t{LONG}\tA\n".encode(), f"b\t{LONG}\tB\n".encode(), b"c\t" + bad + b"\tC\n", b"d\tfine\tD\n", b"e\tno title\n"]
    return [b"id,title,text\n", f"a,A,{LONG}\n".encode(), f"b,B,{LONG}\n".encode(), b"c,C," + bad + b"\n", b'd,D,"fine,\nover two lines"\n', b"e,E\n"]


@pytest.mark.parametrize("fmt, name", [("jsonl", "c.jsonl"), ("tsv", "psgs.tsv"), ("csv", "c.csv"), ("jsonl", "c.jsonl.gz")])
def test_bad_utf8_byte_names_file_line_and_byte_and_is_skipped_with_skip_bad(tmp_path, fmt, name):
    header, *rows = _lines(fmt)
    data = header + b"".join(rows)
    path = tmp_path / name
    path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)
    bad_line = 3 + (1 if header else 0)  # 1-based
    offset = data.index(b"\xe9")
    assert offset > 8192

    with pytest.raises(RagError) as raised:
        list(read_passages(path, fmt="auto"))
    message = str(raised.value)
    assert f"{path}:{bad_line}: not UTF-8 text" in message and f"at byte {offset}" in message and "0xe9" in message

    report = ReadReport()
    passages = list(read_passages(path, on_error="skip", report=report))
    ids = list(dict.fromkeys(p.id.split("-")[0] for p in passages))
    assert ids == ["a", "b", "d"]
    # the bad byte, then the record error after it, each named by its own line
    last_line = bad_line + 2 + (1 if fmt == "csv" else 0)  # the CSV's "d" record spans two lines
    assert len(report.skipped) == 2
    assert report.skipped[0].startswith(f"{path}:{bad_line}: not UTF-8 text") and f"at byte {offset}" in report.skipped[0]
    assert report.skipped[1].startswith(f"{path}:{last_line}: ")
    if fmt == "csv":
        assert passages[-1].text == "fine, over two lines"


def test_cli_build_with_skip_bad_skips_bad_bytes_and_duplicates(tmp_path, capsys):
    corpus = tmp_path / "mixed.jsonl"
    good = [json.dumps(r) for r in PASSAGES[:4]]
    corpus.write_bytes("\n".join(good[:2]).encode() + b'\n{"id": "x", "title": "X", "text": "caf\xe9"}\n' + "\n".join(good[2:] + [good[0]]).encode() + b"\n")
    code, _, err = run_cli(capsys, "index", "build", "--corpus", str(corpus), "--out", str(tmp_path / "idx"))
    assert code == 2 and f"{corpus}:3: not UTF-8 text" in err and "Traceback" not in err

    code, out, err = run_cli(capsys, "index", "build", "--corpus", str(corpus), "--out", str(tmp_path / "idx"), "--skip-bad")
    assert code == 0, err
    assert ": 4 passages" in out
    assert "skipped 2 bad records" in err and f"{corpus}:3: not UTF-8" in err


# --- 1. duplicate passage ids ------------------------------------------------------------------


def test_duplicate_id_is_named_with_file_and_line_and_skipped_with_skip_bad(tmp_path):
    tsv = tmp_path / "psgs.tsv"
    tsv.write_text("id\ttext\ttitle\n1\tfirst text\tA\n2\tsecond text\tB\n1\tthird text\tC\n3\tfourth text\tD\n")
    with pytest.raises(RagError, match=re.escape(f"{tsv}:4: duplicate passage id '1'")):
        list(read_passages(tsv))
    report = ReadReport()
    assert [p.id for p in read_passages(tsv, on_error="skip", report=report)] == ["1", "2", "3"]
    assert report.skipped == [f"{tsv}:4: duplicate passage id '1'"] and report.passages == 3


def test_duplicate_beyond_ten_thousand_passages_is_still_named(tmp_path):
    n = 10_050
    path = tmp_path / "big.jsonl"
    records = [{"id": f"p{i}", "title": "T", "text": f"passage {i}"} for i in range(n - 1)] + [{"id": "p7", "title": "T", "text": "again"}]
    write_jsonl(path, records)
    with pytest.raises(RagError, match=re.escape(f"{path}:{n}: duplicate passage id 'p7-0'")):
        list(read_passages(path))
    report = ReadReport()
    assert len(list(read_passages(path, on_error="skip", report=report))) == n - 1
    assert report.skipped == [f"{path}:{n}: duplicate passage id 'p7-0'"]

    # The store names the duplicate too (it was '?' past its 10,000-row batch), and keeps nothing.
    with PassageStore(tmp_path / "s.sqlite") as store:
        store.add([Passage("old", "T", "stored before")])
        passages = [Passage(f"p{i}", "T", "x") for i in range(n - 1)] + [Passage("p7", "T", "again")]
        with pytest.raises(RagError, match=r"duplicate passage id 'p7' \(passage 10,050 of this add; row 8 has it already\)"):
            store.add(passages)
        assert len(store) == 1
        with pytest.raises(RagError, match=r"duplicate passage id 'old'"):
            store.add([Passage("new", "T", "x"), Passage("old", "T", "again")])
        assert len(store) == 1 and not store.has("new") and store.has("old")

        # an `index add` that passes the store's ids gets file and line, and skipping, for these too
        extra = tmp_path / "extra.tsv"
        extra.write_text("id\ttext\ttitle\nnew\tnew text\tN\nold\tother text\tO\n")
        with pytest.raises(RagError, match=re.escape(f"{extra}:3: duplicate passage id 'old' (already in the index)")):
            list(read_passages(extra, stored=store.has))
        report = ReadReport()
        assert [p.id for p in read_passages(extra, on_error="skip", report=report, stored=store.has)] == ["new"]
        assert len(report.skipped) == 1


def test_duplicate_page_in_a_wiki_dump_is_named_by_page(tmp_path):
    page = "<page><title>{t}</title><ns>0</ns><id>{i}</id><revision><id>9{i}</id><text>{t} is a city with a long history of trade and art.</text></revision></page>"
    xml = '<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/">' + page.format(t="Paris", i=7) + page.format(t="Rome", i=8) + page.format(t="Lyon", i=7) + "</mediawiki>"
    path = tmp_path / "x-pages-articles.xml.bz2"
    path.write_bytes(bz2.compress(xml.encode()))
    with pytest.raises(RagError, match=re.escape(f"{path}: page 7 'Lyon': duplicate passage id '7-0'")):
        list(read_passages(path))
    report = ReadReport()
    assert [p.title for p in read_passages(path, on_error="skip", report=report)] == ["Paris", "Rome"]
    assert len(report.skipped) == 1


# --- 2. k below 1 ------------------------------------------------------------------------------


def test_old_eval_spellings_still_work_for_one_release_and_say_the_new_ones(capsys):
    from rag.cli import build_parser

    args = build_parser().parse_args(["eval", "qa", "--qa", "x.jsonl", "--qa-format", "nq-open", "--read-k", "3", "--k", "1,5"])
    assert (args.questions, args.questions_format, args.k, args.k_list) == ("x.jsonl", "nq-open", 3, (1, 5))
    err = capsys.readouterr().err
    for old, new in (("--qa", "--questions"), ("--qa-format", "--questions-format"), ("--read-k", "-k"), ("--k", "--k-list")):
        assert f"rag: note: {old} is deprecated and goes in the next release; use {new}" in err
    code, out, err = run_cli(capsys, "eval", "qa", "--index", "x")
    assert code == 2 and "give the question/answer file with --questions FILE" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "argv, option",
    [
        (["search", "q", "-k", "-5", "--retriever", "hybrid"], "-k"),
        (["search", "q", "-k", "0"], "-k"),
        (["ask", "q", "--k", "-1"], "-k/--k"),
        (["ask", "q", "-k", "two"], "-k/--k"),
        (["demo", "-k", "0"], "-k"),
        (["eval", "retrieval", "--questions", "x.jsonl", "--k-list", "1,-5"], "--k-list"),
        (["eval", "qa", "--questions", "x.jsonl", "--k-list", "0"], "--k-list"),
        (["eval", "qa", "--questions", "x.jsonl", "-k", "0"], "-k"),
        (["eval", "qa", "--qa", "x.jsonl", "--read-k", "0"], "--read-k"),  # the old spellings are still checked
        (["eval", "retrieval", "--qa", "x.jsonl", "--k", "1,-5"], "--k"),
        (["train", "--questions", "x.jsonl", "--k", "-3"], "--k"),
    ],
)
def test_cli_refuses_k_below_one_with_exit_2_and_one_line(capsys, argv, option):
    code, out, err = run_cli(capsys, *argv)
    assert code == 2 and out == ""
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"rag {argv[0]}") and f"error: argument {option}: " in last


@pytest.mark.parametrize("kind", ["dense", "bm25", "hybrid"])
def test_retrievers_refuse_k_below_one(tiny_index, kind):
    from rag.index_folder import open_index
    from rag.retrieve import load_retriever

    retriever = load_retriever(open_index(tiny_index), kind)
    assert 1 <= len(retriever.retrieve(["Who wrote Dracula?"], 2)[0]) <= 2
    for k in (0, -5):
        with pytest.raises(RagError, match="k must be a whole number of 1 or more"):
            retriever.retrieve(["Who wrote Dracula?"], k)


def test_bm25_index_and_pipeline_refuse_k_below_one(tiny_index):
    from rag.bm25 import bm25_for_index
    from rag.index_folder import open_index
    from rag.pipeline import Pipeline
    from rag.retrieve import load_retriever

    index = open_index(tiny_index)
    with pytest.raises(RagError, match="k must be"):
        bm25_for_index(index, progress=False).search(["Who wrote Dracula?"], -5)
    with pytest.raises(RagError, match="k must be"):
        Pipeline(load_retriever(index, "bm25"), reader=None, k=0)
    with pytest.raises(RagError, match="k must be"):  # k=0 was taken as "the pipeline's default"
        Pipeline(load_retriever(index, "bm25"), reader=None, k=3).answer(["Who wrote Dracula?"], k=0)


# --- 3. terminal escapes in the data ----------------------------------------------------------


def assert_terminal_safe(text: str) -> None:
    unsafe = sorted({f"U+{ord(c):04X}" for c in text if (ord(c) < 0x20 and c != "\n") or 0x7F <= ord(c) <= 0x9F})
    assert not unsafe, f"control characters printed: {unsafe}\n{text!r}"


def test_printable_drops_escape_sequences_and_controls():
    assert printable("a\x1b[2Jb\x1b]0;pwn\x07c\rd\te\nf\x9b31mg\x7fh\x00i") == "abc d e fghi"
    assert printable("Zürich ¿qué? 東京 — naïve") == "Zürich ¿qué? 東京 — naïve"  # ordinary text is untouched
    assert printable("right\u202eto left") == "rightto left"


@pytest.mark.parametrize("kind", ["bm25", "dense"])
def test_search_prints_no_control_characters(tiny_index, capsys, kind):
    code, out, err = run_cli(capsys, "search", "Who wrote Don Quixote?", "--index", str(tiny_index), "-k", "5", "--retriever", kind)
    assert code == 0, err
    assert_terminal_safe(out)
    assert "Don Quixote (novel)" in out and "(evil-0)" in out  # the title and id, minus their escapes
    assert "FAKE PROMPT $ tabbed next line in Spain." in out


def test_ask_prints_no_control_characters(tiny_index, capsys):
    code, out, err = run_cli(capsys, "ask", "Who wrote Don Quixote?\x1b[2J", "--index", str(tiny_index), "-k", "5", "--retriever", "bm25")
    assert code == 0, err
    assert_terminal_safe(out)
    assert_terminal_safe("".join(line for line in err.splitlines(True) if line.startswith("rag:")))  # not the model-loading bars
    assert "answer: " in out and "Cervantes" in out


def test_error_messages_print_no_control_characters(tmp_path, capsys):
    code, _, err = run_cli(capsys, "index", "build", "--corpus", str(tmp_path / "no\x1b[2Jsuch.jsonl"), "--out", str(tmp_path / "idx"))
    assert code == 2 and "nosuch.jsonl" in err  # the path, minus its escape
    assert_terminal_safe(err)


# --- 4. long questions in the demo ------------------------------------------------------------

LONG_EN = ("what " + "was the name of the Spanish writer who wrote the famous novel about a knight and his squire "
           "and in which years were the two parts of that novel published in Madrid " * 5)[:623]
# "Who is" + a space + Chinese (no spaces): a cut back to the last space kept "Who is", 6 characters.
LONG_ZH = ("Who is " + "写了关于一位骑士和他的侍从的著名小说的西班牙作家，这部小说的两个部分分别在哪一年在马德里出版" * 20)[:623]


@pytest.fixture(scope="module")
def demo_models(tiny_index):
    from rag.app import DemoConfig, load_models

    return load_models(DemoConfig(index=str(tiny_index), retrievers=("bm25", "dense")))


@pytest.mark.parametrize("question", [LONG_EN, LONG_ZH], ids=["english", "chinese"])
def test_demo_keeps_the_words_of_a_long_question_and_says_it_was_cut(demo_models, question):
    from rag.app import ask, render_answer
    from rag.pipeline import MAX_QUESTION_CHARS

    assert len(question) == 623
    result = ask(demo_models, question, "dense", 3)
    assert result.error is None and result.hits
    asked = result.question
    assert MAX_QUESTION_CHARS - 40 <= len(asked) <= MAX_QUESTION_CHARS, (len(asked), asked)
    assert question.startswith(asked)
    if question is LONG_EN:
        assert question[len(asked)] == " "  # no word cut in two
    assert "623 characters" in result.notes[0] and f"first {len(asked)}" in result.notes[0]
    assert "623 characters" in render_answer(result)
