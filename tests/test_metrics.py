"""Answer metrics against hand-checked cases: SQuAD normalization/EM/F1, DPR's has_answer, top-k accuracy."""
from __future__ import annotations

import unicodedata

import pytest

from rag.metrics import answers_found, dpr_tokens, exact_match, f1, has_answer, normalize_answer, top_k_accuracy
from rag.types import Hit, Passage, RagError


@pytest.mark.parametrize(
    "text, normalized",
    [
        ("The Eiffel  Tower!", "eiffel tower"),  # article, punctuation, whitespace
        ("an apple, a pear and THE plum", "apple pear and plum"),
        ("Theater of Anatomy", "theater of anatomy"),  # articles only as whole words
        ("1,000", "1000"),  # numbers: ASCII punctuation inside them is dropped
        ("3.5%", "35"),
        ("Café Zürich", "café zürich"),  # non-ASCII letters kept
        ("«Ångström»—unit", "«ångström»—unit"),  # non-ASCII punctuation kept, as in the official script
        ("", ""),
    ],
)
def test_normalize_answer(text, normalized):
    assert normalize_answer(text) == normalized


def test_exact_match():
    assert exact_match("the Beatles", ["Beatles", "The Fab Four"]) == 1.0
    assert exact_match("1,000", ["1000"]) == 1.0
    assert exact_match("Beatles band", ["Beatles"]) == 0.0
    assert exact_match("anything", []) == 0.0


def test_f1():
    # pred [cat, sat], gold [cat, sat, down]: precision 1, recall 2/3 -> F1 0.8
    assert f1("the cat sat", ["a cat sat down"]) == pytest.approx(0.8)
    assert f1("the cat sat", ["dog", "cat sat"]) == pytest.approx(1.0)  # best over the answers
    assert f1("cat cat", ["cat"]) == pytest.approx(2 * 0.5 * 1 / 1.5)  # repeated tokens count once per match
    assert f1("", ["cat"]) == 0.0
    assert f1("dog", ["cat"]) == 0.0


def test_dpr_tokens():
    assert dpr_tokens("The U.S. won't, 1972!") == ["the", "u", ".", "s", ".", "won", "'", "t", ",", "1972", "!"]


@pytest.mark.parametrize(
    "text, answers, expected",
    [
        ("Apollo 17 left the Moon on 14 December 1972 UTC.", ["December 1972"], True),
        ("It was December of 1972.", ["December 1972"], False),  # tokens must be contiguous
        ("In the year 19720 nothing happened", ["1972"], False),  # whole tokens only
        ("landed in 1972.", ["1972"], True),  # punctuation is its own token
        ("PARIS is the capital", ["paris"], True),  # uncased
        ("the U.S. army", ["U.S."], True),
        ("the US army", ["U.S."], False),
        ("nothing here", ["", "x"], False),  # an empty answer matches nothing
        ("Wilhelm Conrad Röntgen won", [unicodedata.normalize("NFD", "Röntgen")], True),  # NFD on both sides
        (unicodedata.normalize("NFD", "Wilhelm Conrad Röntgen won"), ["Röntgen"], True),
        ("Wilhelm Conrad Rontgen won", ["Röntgen"], False),  # accents are not folded
    ],
)
def test_has_answer_string(text, answers, expected):
    assert has_answer(text, answers) is expected


def test_has_answer_regex():
    assert has_answer("Einstein was born in 1879 in Ulm", [r"18\d\d"], mode="regex")
    assert has_answer("EINSTEIN", [r"einstein"], mode="regex")  # case-insensitive, as in DPR
    assert not has_answer("born in 1979", [r"18\d\d"], mode="regex")
    assert not has_answer("a ( b", ["("], mode="regex")  # an invalid pattern matches nothing
    with pytest.raises(RagError, match="string, regex"):
        has_answer("x", ["x"], mode="fuzzy")


def _hits(*texts: str) -> list[Hit]:
    return [Hit(Passage(f"p{i}", "", t), 1.0 / i, i) for i, t in enumerate(texts, 1)]


def test_top_k_accuracy():
    hits = [
        _hits("Paris is in France", "nothing"),  # answer at rank 1
        _hits("nothing", "nothing", "Berlin, Germany"),  # rank 3
        _hits("nothing", "nothing"),  # never
        [],  # no hits at all
    ]
    answers = [["Paris"], ["Berlin"], ["Rome"], ["Rome"]]
    assert top_k_accuracy(hits, answers, [1, 2, 3, 10]) == {1: 0.25, 2: 0.25, 3: 0.5, 10: 0.5}
    with pytest.raises(RagError):
        top_k_accuracy(hits, answers[:2], [1])


def test_answers_found_agrees_with_has_answer():
    texts = ["Apollo 17 left on 14 December 1972.", "the U.S. army", "Röntgen rays"]
    answers = [["December 1972"], ["1972 UTC"], ["U.S."], ["US"], ["röntgen"], ["army the"], ["Apollo"], ["left on 14"]]
    expected = [any(has_answer(t, a) for t in texts) for a in answers]
    assert answers_found(texts, answers) == expected == [True, False, True, False, True, False, True, True]
    assert answers_found(["one two", "three"], [["two three"]]) == [False]  # never across passages
