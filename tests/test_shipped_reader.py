"""The shipped span reader (models/reader) answers plain questions exactly when the passage that holds
the answer is in front of it (issue 27): real lead passages of the built-in corpus, in the order the
default pipeline retrieves them (a distractor first where it ranks one first)."""
from __future__ import annotations

import pytest

from rag.corpus import read_passages
from rag.metrics import exact_match
from rag.paths import SHIPPED_READER, shipped_model
from rag.read import ReaderConfig, SpanReader
from rag.types import Hit

# The first two are the questions whose answer is the passage's own title. A reader trained on SQuAD alone
# (models/reader v2) avoided them ("scientist, and engineer"); v4 reads open-domain training questions
# too, which ask for a passage's subject all the time, and answers them; v5 (read over Wikipedia as well) answers
# the telephone question only with the title bonus (rag.answers: "scientist" without it).
# question, passage ids read (in that order), the answer the shipped reader must give
QUESTIONS = [
    pytest.param("who invented the telephone", ["Alexander Graham Bell-0", "Alkali metal-0"], "Alexander Graham Bell"),
    pytest.param("which element has the atomic number 1", ["Alkali metal-0", "Hydrogen-0"], "Hydrogen"),
    pytest.param("who wrote dracula", ["Dracula-0", "Alexander Graham Bell-0"], "Bram Stoker"),
    pytest.param("who developed the theory of relativity", ["Theory of relativity-0", "Albert Einstein-0"], "Albert Einstein"),
]


@pytest.fixture(scope="module")
def passages():
    wanted = {pid for q in QUESTIONS for pid in q.values[1]}
    return {p.id: p for p in read_passages("default") if p.id in wanted}


@pytest.fixture(scope="module")
def shipped():
    folder = shipped_model(SHIPPED_READER)
    if folder is None:
        pytest.skip("no shipped reader in models/")
    return SpanReader(ReaderConfig(model=str(folder), inference_only=True))


@pytest.mark.parametrize("question,ids,expected", QUESTIONS)
def test_the_shipped_reader_answers_from_the_passage_in_front_of_it(shipped, passages, question, ids, expected):
    hits = [Hit(passages[pid], 0.5, rank) for rank, pid in enumerate(ids, 1)]
    [answer] = shipped.read([question], [hits])
    assert exact_match(answer.text, (expected,)), f"{question!r}: {answer.text!r} (p {answer.score:.2f})"


def test_read_titles_false_reads_the_passage_text_alone(shipped, passages):
    """The shipped reader reads `title [SEP] text` (on held-out training questions the title is worth
    0.7 EM, eval/tune_reader.py); read_titles=False drops the title and its separator."""
    assert shipped.config.read_titles is True
    bell = passages["Alexander Graham Bell-0"]
    plain = SpanReader(ReaderConfig(model=shipped.config.model, inference_only=True, read_titles=False))
    lengths = [int(r.encode("who invented the telephone", [bell]).features["attention_mask"][0].sum()) for r in (shipped, plain)]
    assert lengths[0] - lengths[1] == len(shipped.tokenizer.tokenize(bell.title)) + 1  # the title and its [SEP]
