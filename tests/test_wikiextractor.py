"""The `wikiextractor` corpus format: WikiExtractor output (folders of wiki_NN / wiki_NN.bz2 files of
<doc> blocks), on small files written here and on the real shared enwiki-2015 extract."""
from __future__ import annotations

import bz2
import re
from pathlib import Path

import pytest

from rag.corpus import ReadReport, detect_format, read_passages
from rag.types import RagError

REAL = Path(__file__).resolve().parents[1].parent / "shared/data/wikipedia/enwiki-2015-wikiextractor"
PARIS = "Paris is the capital and most populous city of France, on the Seine in the north of the country."
HISTORY = "The Parisii, a sub-tribe of the Celtic Senones, inhabited the Paris area from around the middle of the 3rd century BC."
ROME = "Rome is the capital city of Italy and of the Lazio region, with 2.8 million residents."


def doc(page_id: str, title: str, *paragraphs: str) -> str:
    """One <doc> block as WikiExtractor writes it: the title again, a blank line, a paragraph a line."""
    return f'<doc id="{page_id}" url="http://en.wikipedia.org/wiki?curid={page_id}" title="{title}">\n{title}\n\n' + "".join(p + "\n" for p in paragraphs) + "\n</doc>\n"


def real_file() -> Path:
    path = REAL / "AA" / "wiki_00.bz2"
    if not path.exists():
        pytest.skip(f"shared data {path} is not present (it lives beside the project checkout)")
    return path


@pytest.fixture
def extract(tmp_path) -> Path:
    """A WikiExtractor folder: AA/wiki_00 plain, AA/wiki_01.bz2 compressed, AB/wiki_00.bz2, written out of order."""
    root = tmp_path / "extract"
    (root / "AB").mkdir(parents=True)
    (root / "AA").mkdir()
    (root / "AB" / "wiki_00.bz2").write_bytes(bz2.compress(doc("30", "Lyon", "Lyon is the third-largest city of France.").encode()))
    (root / "AA" / "wiki_01.bz2").write_bytes(bz2.compress(doc("20", "Rome", ROME).encode()))
    (root / "AA" / "wiki_00").write_text(doc("10", "Paris", PARIS, "History.", HISTORY, "Culture and arts.", "Paris is in France.") + doc("11", "Empty page"))
    (root / "README").write_text("not a wiki_NN file: not read\n")
    return root


def test_folder_is_read_in_sorted_path_order_with_title_line_and_headings_dropped(extract):
    assert detect_format(extract) == "wikiextractor"
    assert detect_format(extract / "AA" / "wiki_00") == detect_format(extract / "AB" / "wiki_00.bz2") == "wikiextractor"
    report = ReadReport()
    passages = list(read_passages(extract, report=report))
    assert [(p.id, p.title) for p in passages] == [("10-0", "Paris"), ("20-0", "Rome"), ("30-0", "Lyon")]
    # the repeated title line is gone, the two headings are not glued in; a short sentence with a verb is kept
    assert passages[0].text == f"{PARIS} {HISTORY} Paris is in France."
    assert passages[1].text == ROME
    assert report.documents == 3 and report.passages == 3 and not report.skipped  # "Empty page" has no text


def test_folder_of_links_to_another_extracts_folders_is_read_through_them(extract, tmp_path):
    # half a corpus as a user makes one: links to two of the extract's folders, and a link back up
    part = tmp_path / "part"
    part.mkdir()
    (part / "AA").symlink_to(extract / "AA", target_is_directory=True)
    (part / "AB").symlink_to(extract / "AB", target_is_directory=True)
    (part / "AB-again").symlink_to(part, target_is_directory=True)
    assert detect_format(part) == "wikiextractor"
    passages = list(read_passages(part))
    assert [p.id for p in passages] == ["10-0", "20-0", "30-0"]


def test_long_doc_is_split_into_pageid_n_passages(tmp_path):
    words = [f"w{i}" for i in range(250)]
    path = tmp_path / "wiki_07"
    path.write_text(doc("42", "Words", " ".join(words[:120]), " ".join(words[120:])))
    passages = list(read_passages(path))
    assert [p.id for p in passages] == ["42-0", "42-1", "42-2"]
    assert " ".join(p.text for p in passages) == " ".join(words)
    assert {p.title for p in passages} == {"Words"}


GOOD = doc("1", "Good", "The first page is a paragraph of plain text.")
LAST = doc("3", "Last", "The last paragraph of the file is fine.")


@pytest.mark.parametrize(
    "middle, bad_line, message",
    [
        ('<doc id="2" url="u" title="Open">\nOpen\n\nNever closed.\n', 7, "<doc> not closed: a new <doc> starts at line 11 before </doc>"),
        ('<doc url="u" title="No id">\nNo id\n\nText.\n\n</doc>\n', 7, "<doc> line without an id and a title"),
        ('<doc id="2" url="u">\nNo title\n\nText.\n\n</doc>\n', 7, "<doc> line without an id and a title"),
        ('<doc id="2" url="u" title="Bytes">\nBytes\n\nCaf\xe9 au lait.\n\n</doc>\n', 10, "not UTF-8 text"),
    ],
    ids=["unterminated", "no-id", "no-title", "bad-utf8"],
)
def test_bad_doc_names_file_and_line_and_is_skipped_with_skip_bad(tmp_path, middle, bad_line, message):
    path = tmp_path / "AA" / "wiki_00.bz2"
    path.parent.mkdir()
    path.write_bytes(bz2.compress(GOOD.encode() + middle.encode("latin-1") + LAST.encode()))
    with pytest.raises(RagError, match=re.escape(f"{path}:{bad_line}: {message}")):
        list(read_passages(tmp_path))
    report = ReadReport()
    passages = list(read_passages(tmp_path, on_error="skip", report=report))
    assert passages[0].id == "1-0" and passages[-1].id == "3-0"
    assert len(report.skipped) == 1 and report.skipped[0].startswith(f"{path}:{bad_line}: {message}")


def test_doc_unterminated_at_end_of_file(tmp_path):
    path = tmp_path / "wiki_00"
    path.write_text(GOOD + '<doc id="2" url="u" title="Cut">\nCut\n\nThe file ends here.\n')
    with pytest.raises(RagError, match=re.escape(f"{path}:7: <doc> not closed: the file ends at line 10 before </doc>")):
        list(read_passages(path))
    report = ReadReport()
    assert [p.id for p in read_passages(path, on_error="skip", report=report)] == ["1-0"]
    assert len(report.skipped) == 1


def test_truncated_bz2_names_the_file_and_line(tmp_path):
    data = bz2.compress("".join(doc(str(i), f"Page {i}", f"Page {i} is page number {i} of a long run of pages.") for i in range(3000)).encode())
    path = tmp_path / "wiki_00.bz2"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(RagError, match=re.escape(f"{path}:") + r"\d+: file is truncated .*; read \d+ documents"):
        list(read_passages(path))


def test_folder_without_wiki_files_stays_hf_and_forced_format_says_why(tmp_path):
    (tmp_path / "notes.txt").write_text("x\n")
    assert detect_format(tmp_path) == "hf"
    with pytest.raises(RagError, match="no wiki_NN or wiki_NN.bz2 files"):
        list(read_passages(tmp_path, fmt="wikiextractor"))


# --- the real shared extract ---------------------------------------------------------------------

KNOWN_HEADINGS = ("Etymology and terminology.", "Propaganda of the deed and illegalism.", "Russian Revolution and other uprisings of the 1910s.", "Further reading.", "External links.")


@pytest.fixture(scope="module")
def real_passages():
    path = real_file()
    report = ReadReport()
    return path, list(read_passages(path, report=report)), report


def test_real_file_parses_every_doc_into_pageid_n_passages(real_passages):
    path, passages, report = real_passages
    text = bz2.decompress(path.read_bytes()).decode("utf-8")
    page_ids = re.findall(r'^<doc id="(\d+)"', text, flags=re.MULTILINE)
    assert report.documents == len(page_ids) == text.count("\n<doc ") + 1 and not report.skipped
    assert report.passages == len(passages) > 1000
    assert all(re.fullmatch(r"\d+-\d+", p.id) for p in passages)
    assert list(dict.fromkeys(p.id.split("-")[0] for p in passages)) == page_ids  # every doc, in file order


def test_real_file_drops_title_lines_and_headings_but_keeps_sentences(real_passages):
    _, passages, _ = real_passages
    anarchism = [p for p in passages if p.title == "Anarchism"]
    assert anarchism[0].id == "12-0" and anarchism[0].text.startswith("Anarchism is a political philosophy")
    text = "\n".join(p.text for p in passages)
    for heading in KNOWN_HEADINGS:
        assert heading not in text
    assert not any("Etymology and terminology" in p.text for p in anarchism)
    # one-sentence paragraphs and a quote's lead-in are paragraph text, not headings
    for sentence in ("Oracles were also given by sons of Apollo.", "Paris was later killed by Philoctetes using the enormous bow of Heracles.", "George Woodcock states:"):
        assert sentence in text


def test_real_extract_folder_is_detected():
    real_file()
    assert detect_format(REAL) == "wikiextractor"


def test_index_built_from_real_docs_finds_the_page_a_question_is_about(tmp_path, encoder):
    """End to end: the first 4 docs of AA/wiki_00.bz2 (198 passages; the whole file's 1,607 take
    minutes to encode on a CPU), in a WikiExtractor folder layout -> index -> dense search."""
    from rag.build import BuildConfig, build_index
    from rag.index_folder import open_index
    from rag.retrieve import DenseRetriever

    text = bz2.decompress(real_file().read_bytes()).decode("utf-8")
    head = "".join(d + "</doc>\n" for d in text.split("</doc>\n")[:4])
    corpus = tmp_path / "extract"
    (corpus / "AA").mkdir(parents=True)
    (corpus / "AA" / "wiki_00.bz2").write_bytes(bz2.compress(head.encode()))
    folder = build_index(BuildConfig(corpus=str(corpus)), tmp_path / "index", encoder=encoder, progress=False)
    assert folder.manifest.sources[0].format == "wikiextractor"
    assert 150 < folder.manifest.passages < 250
    [hits] = DenseRetriever(open_index(folder.path), encoder).retrieve(["Which neurodevelopmental disorder is characterized by impaired social interaction?"], 5)
    assert "Autism" in [h.passage.title for h in hits]
    assert all(re.fullmatch(r"\d+-\d+", h.passage.id) for h in hits)
