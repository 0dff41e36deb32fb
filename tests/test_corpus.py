"""Corpus readers on real data: the shared Wikipedia dumps, the built-in corpus, and every file format incl. bad input."""
from __future__ import annotations

import bz2
import json
import re
from itertools import islice

import pytest

from rag.corpus import ReadReport, SplitConfig, detect_format, read_passages, split_passages
from rag.types import RagError
from rag.wikitext import clean_wikitext
from tests.conftest import TABLE_DUMP, WIKI_DUMP, shared

MARKUP = ("[[", "]]", "{{", "}}", "<ref", "</ref", "{|", "|}", "&lt;", "'''")


@pytest.fixture(scope="module")
def wiki_passages():
    shared(WIKI_DUMP.relative_to(WIKI_DUMP.parents[1]))
    report = ReadReport()
    return list(read_passages(WIKI_DUMP, report=report)), report


def test_wiki_dump_yields_clean_article_passages(wiki_passages):
    passages, report = wiki_passages
    # 206 pages in the dump; redirects and non-article namespaces are skipped.
    assert report.documents == 106
    assert 4000 < report.passages == len(passages) < 5000
    anarchism = [p for p in passages if p.title == "Anarchism"]
    assert len(anarchism) > 20
    assert anarchism[0].text.startswith("Anarchism is a political philosophy")
    for p in passages:
        assert not any(m in p.text for m in MARKUP), (p.id, p.text)
        assert p.title and p.text
    titles = {p.title for p in passages}
    assert "AccessibleComputing" not in titles  # a redirect page


def test_wiki_passages_are_about_100_words_with_unique_ids(wiki_passages):
    passages, _ = wiki_passages
    lengths = [len(p.text.split()) for p in passages]
    assert max(lengths) < 120  # 100 words, plus a tail shorter than 20 merged into the last block
    assert sorted(lengths)[len(lengths) // 2] == 100
    assert len({p.id for p in passages}) == len(passages)


def test_table_markup_is_removed():
    passages = list(read_passages(shared(TABLE_DUMP.relative_to(TABLE_DUMP.parents[1]))))
    assert passages
    for p in passages:
        assert not any(m in p.text for m in MARKUP + ("||", "!!", "colspan", "rowspan", "class=")), p.text


def test_clean_wikitext_keeps_link_text_and_drops_templates_refs_files():
    text = clean_wikitext(
        "'''Paris''' is the [[capital city|capital]] of [[France]].{{citation needed}}<ref>Some book, p. 3</ref>\n"
        "[[File:Paris.jpg|thumb|The [[Eiffel Tower]]]]\n== References ==\n* a reference\n[[Category:Cities]]"
    )
    assert text == "Paris is the capital of France."


def test_split_merges_a_short_tail_into_the_last_passage():
    words = [f"w{i}" for i in range(215)]
    passages = split_passages("d", "T", " ".join(words), SplitConfig(words_per_passage=100, min_words=20))
    assert [len(p.text.split()) for p in passages] == [100, 115]
    assert [p.id for p in passages] == ["d-0", "d-1"]
    assert " ".join(p.text for p in passages) == " ".join(words)  # nothing lost


def test_default_corpus_is_the_vital_articles():
    report = ReadReport()
    passages = list(islice(read_passages("default", report=report), 50))
    assert len(passages) == 50
    assert passages[0].title == "20th-century classical music"
    assert all(p.text and len(p.text.split()) <= 120 for p in passages)


def test_truncated_bz2_is_an_error_naming_the_file(tmp_path):
    data = shared(WIKI_DUMP.relative_to(WIKI_DUMP.parents[1])).read_bytes()
    bad = tmp_path / "enwiki-pages-articles.xml.bz2"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(RagError, match=r"enwiki-pages-articles\.xml\.bz2: file is truncated.*last one"):
        list(read_passages(bad))


def test_dpr_tsv(tmp_path):
    path = tmp_path / "psgs_w100.tsv"
    path.write_text('id\ttext\ttitle\n1\t"Aaron is a prophet"\tAaron\n2\tThe second passage\tAaron\n')
    passages = list(read_passages(path))
    assert [(p.id, p.title, p.text) for p in passages] == [("1", "Aaron", "Aaron is a prophet"), ("2", "Aaron", "The second passage")]


def test_dpr_tsv_missing_column_names_file_and_line(tmp_path):
    path = tmp_path / "psgs.tsv"
    path.write_text("id\ttext\ttitle\n1\tfine text\tT\n2\tno title column\n3\tmore\tT\n")
    with pytest.raises(RagError, match=r"psgs\.tsv:3: expected 3 tab-separated columns"):
        list(read_passages(path))
    report = ReadReport()
    passages = list(read_passages(path, on_error="skip", report=report))
    assert [p.id for p in passages] == ["1", "3"]
    assert len(report.skipped) == 1 and "psgs.tsv:3" in report.skipped[0]


def test_jsonl_and_invalid_json(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"id": "a", "title": "A", "text": "alpha beta"}) + "\n{not json\n" + json.dumps({"title": "B", "text": "gamma"}) + "\n")
    with pytest.raises(RagError, match=r"c\.jsonl:2: invalid JSON"):
        list(read_passages(path))
    report = ReadReport()
    passages = list(read_passages(path, on_error="skip", report=report))
    assert [(p.id, p.title, p.text) for p in passages] == [("a-0", "A", "alpha beta"), ("2-0", "B", "gamma")]
    assert report.skipped == [f"{path}:2: invalid JSON (Expecting property name enclosed in double quotes at column 2)"]


def test_jsonl_missing_text_field(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"title": "A", "body": "x"}) + "\n")
    with pytest.raises(RagError, match=r"c\.jsonl:1: missing or empty field 'text'"):
        list(read_passages(path))


def test_csv(tmp_path):
    path = tmp_path / "c.csv"
    path.write_text('title,text\nParis,"Paris is the capital, and largest city, of France."\nRome,Rome is in Italy.\n')
    passages = list(read_passages(path))
    assert [(p.title, p.text) for p in passages] == [("Paris", "Paris is the capital, and largest city, of France."), ("Rome", "Rome is in Italy.")]
    bad = tmp_path / "bad.csv"
    bad.write_text("title,body\nA,b\n")
    with pytest.raises(RagError, match=r"bad\.csv:1: CSV header must name a 'text' column"):
        list(read_passages(bad))


def test_hf_dataset_saved_to_disk_and_parquet(tmp_path):
    import datasets

    ds = datasets.Dataset.from_dict({"title": ["Paris", "Rome"], "text": ["Paris is in France.", "Rome is in Italy."], "id": ["p", "r"]})
    ds.save_to_disk(str(tmp_path / "ds"))
    ds.to_parquet(str(tmp_path / "ds.parquet"))
    for source in (tmp_path / "ds", tmp_path / "ds.parquet"):
        assert detect_format(source) == "hf"
        passages = list(read_passages(source))
        assert [(p.id, p.title, p.text) for p in passages] == [("p-0", "Paris", "Paris is in France."), ("r-0", "Rome", "Rome is in Italy.")]


@pytest.mark.parametrize("name,content", [("empty.jsonl", ""), ("empty.tsv", "id\ttext\ttitle\n"), ("empty.csv", "title,text\n")])
def test_empty_corpus_is_an_error(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(RagError, match=f"no passages read from .*{name}"):
        list(read_passages(path))


def test_empty_wiki_dump_is_an_error(tmp_path):
    path = tmp_path / "x-pages-articles.xml.bz2"
    path.write_bytes(bz2.compress(b'<mediawiki xmlns="http://www.mediawiki.org/xml/export-0.10/"></mediawiki>'))
    with pytest.raises(RagError, match="no passages read"):
        list(read_passages(path))


def test_unknown_format_and_missing_file(tmp_path):
    with pytest.raises(RagError, match="cannot tell the format"):
        list(read_passages(tmp_path / "corpus.docx"))
    with pytest.raises(RagError, match="corpus not found"):
        list(read_passages(tmp_path / "nope.jsonl"))


# --- trust: what a message says about bad input, folders of files, byte order marks ----------------


def test_skip_bad_with_every_record_bad_says_so_not_is_it_empty(tmp_path):
    path = tmp_path / "c.jsonl"
    path.write_text("".join(json.dumps({"title": f"T{i}", "body": "no text field"}) + "\n" for i in range(3)))
    with pytest.raises(RagError) as raised:
        list(read_passages(path, on_error="skip"))
    message = str(raised.value)
    assert "all 3 records were bad and skipped" in message and f"(first: {path}:1: missing or empty field 'text')" in message
    assert "is it empty" not in message


@pytest.mark.parametrize("value, found", [(12345, "int"), (["a", "list"], "list"), ({"a": 1}, "dict")])
def test_jsonl_text_that_is_not_a_string_is_named_so(tmp_path, value, found):
    path = tmp_path / "c.jsonl"
    path.write_text(json.dumps({"title": "A", "text": value}) + "\n")
    with pytest.raises(RagError, match=re.escape(f"c.jsonl:1: field 'text' is not a string (found {found})")):
        list(read_passages(path))


HUGE = "x" * 1_000_000


@pytest.mark.parametrize(
    "name, content",
    [
        ("c.csv", f"title,{HUGE}\nA,b\n"),  # CSV header without a 'text' column
        ("psgs.tsv", f"id\ttext\t{HUGE}\n1\tx\tT\n"),  # DPR header
        ("c.jsonl", json.dumps({"id": HUGE, "text": "a"}) + "\n" + json.dumps({"id": HUGE, "text": "b"}) + "\n"),  # duplicate id
    ],
    ids=["csv-header", "dpr-header", "duplicate-id"],
)
def test_messages_quoting_input_are_cut_to_about_200_characters(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(RagError) as raised:
        list(read_passages(path))
    message = str(raised.value)
    assert len(message) < len(str(path)) + 400 and "xxx..." in message, message[:500]


def test_folder_of_jsonl_files_reads_them_in_sorted_order_naming_each_file(tmp_path):
    folder = tmp_path / "corpus"
    (folder / "sub").mkdir(parents=True)
    (folder / "b.jsonl").write_text(json.dumps({"id": "b", "title": "B", "text": "bravo"}) + "\n{broken\n")
    (folder / "a.jsonl").write_text(json.dumps({"title": "A", "text": "alpha"}) + "\n")
    (folder / "sub" / "c.json").write_text(json.dumps({"title": "C", "text": "charlie"}) + "\n")
    (folder / ".DS_Store").write_bytes(b"\x00\x01")  # hidden files are not the corpus
    assert detect_format(folder) == "jsonl"
    with pytest.raises(RagError, match=re.escape(f"{folder / 'b.jsonl'}:2: invalid JSON")):
        list(read_passages(folder))
    report = ReadReport()
    passages = list(read_passages(folder, on_error="skip", report=report))
    # no id: named by file and position, since positions alone repeat from file to file
    assert [(p.id, p.text) for p in passages] == [("a.jsonl:0-0", "alpha"), ("b-0", "bravo"), ("sub/c.json:0-0", "charlie")]
    assert len(report.skipped) == 1 and report.skipped[0].startswith(f"{folder / 'b.jsonl'}:2:")


def test_folder_of_csv_files_reads_as_csv_and_a_mixed_folder_stays_hf(tmp_path):
    folder = tmp_path / "csvs"
    folder.mkdir()
    (folder / "2.csv").write_text("title,text\nRome,Rome is in Italy.\n")
    (folder / "1.csv").write_text("title,text\nParis,Paris is in France.\n")
    assert detect_format(folder) == "csv"
    assert [(p.id, p.title) for p in read_passages(folder)] == [("1.csv:0-0", "Paris"), ("2.csv:0-0", "Rome")]
    (folder / "3.jsonl").write_text(json.dumps({"title": "X", "text": "y"}) + "\n")
    assert detect_format(folder) == "hf"


@pytest.mark.parametrize(
    "name, content",
    [("c.jsonl", json.dumps({"id": "a", "title": "A", "text": "alpha beta"}) + "\n"), ("c.csv", "id,title,text\na,A,alpha beta\n"), ("c.tsv", "id\ttext\ttitle\na-0\talpha beta\tA\n")],
)
def test_a_utf8_byte_order_mark_is_stripped(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(b"\xef\xbb\xbf" + content.encode())
    assert [(p.id, p.title, p.text) for p in read_passages(path)] == [("a-0", "A", "alpha beta")]
