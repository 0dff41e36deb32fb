"""eval/bench_misses.py: where the reader loses answers. The kinds on hand-made cases, then the command end to end
(SQuAD dev's first 20 questions with the shipped reader; a handful of questions over the 300-passage index)."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

from rag.metrics import has_answer
from rag.paths import shipped_model
from rag.types import Hit, Passage
from tests.conftest import shared

_SPEC = importlib.util.spec_from_file_location("bench_misses", Path(__file__).resolve().parents[1] / "eval" / "bench_misses.py")
bm = sys.modules.setdefault("bench_misses", importlib.util.module_from_spec(_SPEC))  # registered first: its dataclasses look it up
_SPEC.loader.exec_module(bm)


def at(text: str, phrase: str) -> tuple[int, int]:
    start = text.index(phrase)
    return start, start + len(phrase)


# --- the kinds, by hand ------------------------------------------------------------------------

NEWTON = "The law of gravitation was stated by Sir Isaac Newton in 1687."
ROME = "She was born in Rome, Italy, in 1950 and moved to Paris."
BRONCOS = "The Denver Broncos defeated the Carolina Panthers 24-10."


@pytest.mark.parametrize("text, prediction, gold, kind", [
    (BRONCOS, "Denver Broncos", "Denver Broncos", bm.RIGHT),
    (BRONCOS, "The Denver Broncos", "Denver Broncos", bm.RIGHT),  # SQuAD normalization drops the article
    (BRONCOS, "Carolina Panthers", "Denver Broncos", bm.WRONG_SPAN),
    (NEWTON, "Sir Isaac Newton", "Isaac Newton", bm.EXTRA_WORDS),  # a title before the name
    (ROME, "Rome, Italy", "Rome", bm.EXTRA_WORDS),  # the country after the city
    (ROME, "Rome", "Rome, Italy", bm.MISSING_WORDS),
    (NEWTON, "Newton", "Isaac Newton", bm.MISSING_WORDS),
    (BRONCOS, "Broncos defeated", "Denver Broncos", bm.OTHER_OVERLAP),
])
def test_span_kind_by_character_spans(text, prediction, gold, kind):
    assert bm.span_kind(prediction, [gold], at(text, prediction), [at(text, gold)]) == kind


def test_span_kind_looks_at_where_the_span_is_not_only_its_words():
    text = "Rome is old. She was born in Rome, Italy."
    gold = (text.index("Rome, Italy"), text.index("Rome, Italy") + 4)  # the second "Rome"
    assert bm.span_kind("Rome", ["Rome"], (0, 4), [gold]) == bm.RIGHT  # EM first, wherever it stands
    assert bm.span_kind("Rome is old", ["Rome"], (0, 11), [gold]) == bm.WRONG_SPAN  # holds the words, not the gold span
    # any of several gold spans (SQuAD dev has up to three annotators)
    assert bm.span_kind("Rome, Italy", ["Rome", "Italy"], at(text, "Rome, Italy"), [(0, 4), at(text, "Italy")]) == bm.EXTRA_WORDS


def test_span_kind_without_offsets_uses_the_words():
    assert bm.span_kind("Sir Isaac Newton", ["Isaac Newton"], None, []) == bm.EXTRA_WORDS
    assert bm.span_kind("Rome", ["Rome, Italy"], None, []) == bm.MISSING_WORDS
    assert bm.span_kind("Paris", ["Rome, Italy"], None, []) == bm.WRONG_SPAN


def test_answer_occurrences_are_dpr_matches_with_offsets():
    text = "Directed by Stanley Kubrick, co-written with Arthur C. Clarke; KUBRICK again."
    found = bm.answer_occurrences(text, ["Stanley Kubrick", "kubrick", "Arthur C. Clarke", "Clarke Arthur"])
    assert [text[s:e] for s, e, _ in found] == ["Stanley Kubrick", "Kubrick", "KUBRICK", "Arthur C. Clarke"]
    assert bm.answer_occurrences(text, ["Kub"]) == []  # whole tokens only, as has_answer
    assert has_answer(text, ["Kub"]) is False and has_answer(text, ["kubrick"]) is True


def hits(*texts: str) -> list[Hit]:
    return [Hit(Passage(f"p{i}", "T", t), 1.0 - i / 10, i + 1) for i, t in enumerate(texts)]


def test_open_domain_kinds_by_hand():
    read = hits("The Broncos won in 2016.", "Sir Isaac Newton was born in 1643.", "Rome, Italy is a capital.")
    newton, rome = read[1].passage, read[2].passage
    assert bm.open_domain_kind("Isaac Newton", ["Isaac Newton"], read, newton, at(newton.text, "Isaac Newton")) == bm.RIGHT
    # (a): an answer-bearing passage was read (p1), the answer came from p0, which has none
    assert bm.open_domain_kind("Broncos", ["Isaac Newton"], read, read[0].passage, (4, 11)) == bm.WRONG_PASSAGE
    # (b): from the right passage, not on the answer
    assert bm.open_domain_kind("1643", ["Isaac Newton"], read, newton, at(newton.text, "1643")) == bm.WRONG_SPAN
    # (c): on the answer, with a title / the country too
    assert bm.open_domain_kind("Sir Isaac Newton", ["Isaac Newton"], read, newton, at(newton.text, "Sir Isaac Newton")) == bm.EXTRA_WORDS
    assert bm.open_domain_kind("Rome, Italy", ["Rome"], read, rome, at(rome.text, "Rome, Italy")) == bm.EXTRA_WORDS
    assert bm.open_domain_kind("Rome", ["Rome, Italy"], read, rome, at(rome.text, "Rome")) == bm.MISSING_WORDS
    # (d): no passage read holds the answer, whatever the reader said
    assert bm.open_domain_kind("Newton", ["Gottfried Leibniz"], read, newton, at(newton.text, "Newton")) == bm.NO_ANSWER_READ
    assert bm.open_domain_kind("", ["Gottfried Leibniz"], read, None, None) == bm.NO_ANSWER_READ
    assert bm.open_domain_kind("", ["Isaac Newton"], read, None, None) == bm.WRONG_PASSAGE  # no answer given, one was there


def test_possibly_accidental_matches():
    assert bm.possibly_accidental("It sold 1,800 copies in 1968.", ["800"])  # inside another number
    assert bm.possibly_accidental("Signed on 12/05/2010 in Bern.", ["2010"])  # inside a date
    assert bm.possibly_accidental("The war of 1968-72 ended.", ["1968"])
    assert bm.possibly_accidental("He scored 8 goals on May 8.", ["8"])  # shorter than 3 characters
    assert bm.possibly_accidental("The UK and France.", ["UK"])
    assert not bm.possibly_accidental("The film was released in 1968.", ["1968"])
    assert not bm.possibly_accidental("Released in May 1968 by MGM.", ["1968"])  # a year in a date is a year
    assert not bm.possibly_accidental("Directed by Stanley Kubrick.", ["Stanley Kubrick"])
    assert not bm.possibly_accidental("It sold 1,800 copies, 800 of them in 1968.", ["800"])  # one clean occurrence is enough
    assert not bm.possibly_accidental("No answer here.", ["800"])


def test_calibration_buckets_and_threshold():
    scores = [0.05, 0.1, 0.3, 0.35, 0.5, 0.55, 0.7, 0.9, 1.0]
    ems = [0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    cal = bm.calibration(scores, ems)
    assert [(b["bucket"], b["answers"]) for b in cal["buckets"]] == [("0.0-0.2", 2), ("0.2-0.4", 2), ("0.4-0.6", 2), ("0.6-0.8", 1), ("0.8-1.0", 2)]
    assert [b["exact_match"] for b in cal["buckets"]] == [0.0, 0.5, 1.0, 1.0, 1.0]
    # below 0.35: 3 answers, none right; below 0.40: 1 of 4 right (25%); below 0.55: 2 of 5 (40%); below 0.6: 3 of 6 (50%)
    assert cal["half_right_threshold"] == 0.55
    assert bm.half_right_threshold([0.1, 0.9], [1.0, 1.0]) is None
    assert "training split" in cal["note"] and "topics.dpr.nq.dev.txt" in cal["note"]
    assert bm.calibration([], [])["buckets"][0] == {"bucket": "0.0-0.2", "answers": 0, "exact_match": None}


# --- end to end --------------------------------------------------------------------------------


def test_squad_mode_end_to_end(tmp_path, capsys):
    if shipped_model("reader") is None:
        pytest.skip("no shipped reader in models/reader")
    squad = shared("squad/dev-v1.1.json")
    out = tmp_path / "misses.json"
    results = bm.main(["--squad", str(squad), "--limit", "20", "--json", str(out), "--quiet"])
    printed = capsys.readouterr().out
    assert "(b) right passage, wrong span" in printed and "extra words" in printed and "p(answer)" in printed
    saved = json.loads(out.read_text())["squad"]
    assert saved["questions"] == 20 == len(saved["records"]) and saved == json.loads(json.dumps(results["squad"]))
    kinds = [r["kind"] for r in saved["records"]]
    assert set(kinds) <= set(bm.SQUAD_KINDS)
    assert saved["exact_match"] == kinds.count(bm.RIGHT) / 20 >= 0.6  # the shipped reader: EM 68.9 on all of dev
    assert saved["f1"] >= saved["exact_match"]
    counts = {row["kind"].strip(): row["questions"] for row in saved["kinds"]}
    assert counts["(c) right span, wrong boundary (all)"] == sum(k in bm.BOUNDARY for k in kinds)
    assert sum(b["answers"] for b in saved["calibration"]["buckets"]) == 20
    first = saved["records"][0]  # "Which NFL team represented the AFC at Super Bowl 50?"
    assert first["answers"][0] == "Denver Broncos" and first["gold_spans"][0] == [177, 191]
    for r in saved["records"]:
        assert (r["kind"] == bm.RIGHT) == (r["exact_match"] == 1.0)
        assert r["span"] is not None and 0 <= r["span"][0] < r["span"][1]


def test_open_domain_mode_end_to_end(tmp_path, small_index, capsys):
    questions = [
        {"question": "Who directed the film 2001: A Space Odyssey?", "answer": ["Stanley Kubrick"]},
        {"question": "Who co-wrote the screenplay of 2001: A Space Odyssey with Stanley Kubrick?", "answer": ["Arthur C. Clarke"]},
        {"question": "In which years was 20th-century classical music written?", "answer": ["between 1901 and 2000"]},
        {"question": "Who was the first emperor of the planet Zorblax?", "answer": ["Qwxyzzy Vrrnt"]},  # in no passage: (d)
    ]
    qa = tmp_path / "qa.jsonl"
    qa.write_text("".join(json.dumps(q) + "\n" for q in questions))
    out = tmp_path / "misses.json"
    bm.main(["--qa", str(qa), "--index", str(small_index.path), "-k", "5", "--rerank", "10", "--limit", "0", "--json", str(out), "--quiet"])
    printed = capsys.readouterr().out
    assert "top-1 holds an answer" in printed and "(d) no answer in the passages read" in printed
    saved = json.loads(out.read_text())["qa"]
    records = saved["records"]
    assert saved["k"] == 5 and saved["rerank_depth"] == 10 and saved["questions"] == len(records) == 4
    assert records[3]["kind"] == bm.NO_ANSWER_READ and not records[3]["any_has_answer"]
    assert records[0]["top1_has_answer"] and records[0]["any_has_answer"]  # the 2001 passage is retrieved first
    for r in records:
        assert r["kind"] in bm.QA_KINDS
        assert (r["kind"] == bm.RIGHT) == (r["exact_match"] == 1.0)
        if r["kind"] != bm.RIGHT:
            assert (r["kind"] == bm.NO_ANSWER_READ) == (not r["any_has_answer"])
        assert 1 <= r["answer_rank"] <= 5
    top1 = saved["top1_has_answer"]
    assert top1["questions"] == sum(r["top1_has_answer"] for r in records)
    assert top1["exact_match"] == sum(r["exact_match"] for r in records if r["top1_has_answer"]) / top1["questions"]
    assert top1["possibly_accidental"] == 0  # full names and a year range: nothing short or numeric
    assert saved["top_k_has_answer"] == 0.75
