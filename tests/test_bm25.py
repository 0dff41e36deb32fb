"""BM25Index (bm25s) against rank-bm25 on real passages of the built-in corpus; its life in an index folder."""
from __future__ import annotations

import json
import os
from itertools import islice

import numpy as np
import pytest

from eval.bm25_oracle import reference_scorer
from rag.bm25 import FOLDER, METHODS, BM25Config, BM25Index, Tokenizer, bm25_for_index, passage_tokens_text
from rag.build import add_to_index
from rag.index_folder import open_index
from rag.qa_data import load_qa
from rag.types import Passage, RagError
from tests.conftest import shared


def test_tokenizer_lowercases_and_strips_punctuation():
    bare = Tokenizer(BM25Config(stopwords=None, stemmer=None))
    assert bare("Hello, World! It's U.S.-made: snake_case (1,000)") == ["hello", "world", "it", "s", "u", "s", "made", "snake", "case", "1", "000"]
    assert bare("Zürich Café") == ["zürich", "café"]
    default = Tokenizer()  # Lucene's English stopwords, Snowball stemming
    assert default("The runners were running to the station") == ["runner", "were", "run", "station"]
    with pytest.raises(RagError, match="stemmer"):
        Tokenizer(BM25Config(stemmer="klingon"))


def _questions(n: int) -> list[str]:
    return [ex.question for ex in load_qa(shared("nq-open/NQ-open.dev.jsonl"), limit=n)]


def _assert_same_ranking(passages: list[Passage], questions: list[str], config: BM25Config, k: int = 10) -> int:
    """bm25s' top-k equals rank-bm25's: scores match; rows match wherever scores are not tied.

    Returns how many questions were compared row by row (no ties within their top k+1).
    """
    texts = [passage_tokens_text(p) for p in passages]
    ours = BM25Index.build(texts, config).search(questions, k)
    tokenize = Tokenizer(config)
    reference = reference_scorer([tokenize(t) for t in texts], config)
    untied = 0
    for q, rows, scores in zip(questions, ours.rows, ours.scores):
        ref = reference.get_scores(tokenize(q))
        order = np.argsort(-ref, kind="stable")
        expected = [int(r) for r in order[:k] if ref[r] > 0]
        got = [int(r) for r in rows if r >= 0]
        assert len(got) == len(expected), q
        np.testing.assert_allclose(scores[: len(got)], ref[expected], rtol=1e-4, err_msg=q)  # the same score profile
        np.testing.assert_allclose(ref[got], scores[: len(got)], rtol=1e-4, err_msg=q)  # each returned row really has its score
        top = np.sort(ref)[::-1][: k + 1]
        if np.all(np.diff(top) < -1e-4 * top[0]):
            assert got == expected, q
            untied += 1
    return untied


@pytest.mark.parametrize("method", METHODS)
def test_same_top10_as_rank_bm25(default_passages, method):
    questions = _questions(200)
    untied = _assert_same_ranking(default_passages, questions, BM25Config(method=method))
    assert untied >= 100  # most rankings are compared row for row, not only by score


def test_same_top10_as_rank_bm25_full_default_corpus():
    from rag.corpus import read_passages

    passages = list(read_passages("default"))
    assert _assert_same_ranking(passages, _questions(100), BM25Config()) >= 50


def test_search_pads_rows_without_a_shared_word():
    bm25 = BM25Index.build(["the cat sat on the mat", "dogs run fast", "a cat and a dog"], BM25Config())
    result = bm25.search(["cat", "xylophone", ""], 5)
    assert result.rows.shape == result.scores.shape == (3, 5)
    assert sorted(result.rows[0][:2].tolist()) == [0, 2] and result.rows[0][2:].tolist() == [-1, -1, -1]
    assert result.rows[1].tolist() == result.rows[2].tolist() == [-1] * 5
    assert (result.scores[1:] == 0).all()


def test_save_load_round_trip(tmp_path, default_passages):
    config = BM25Config(k1=1.2, b=0.75, stemmer=None)
    bm25 = BM25Index.build([passage_tokens_text(p) for p in default_passages], config, sources=["abc"])
    bm25.save(tmp_path / "bm25")
    bm25.save(tmp_path / "bm25")  # overwriting an existing one
    loaded = BM25Index.load(tmp_path / "bm25")
    assert (loaded.config, loaded.passages, loaded.sources) == (config, len(default_passages), ["abc"])
    questions = ["who wrote beowulf", "baroque architecture in italy"]
    a, b = bm25.search(questions, 10), loaded.search(questions, 10)
    assert (a.rows == b.rows).all() and np.allclose(a.scores, b.scores)
    assert [p.name for p in tmp_path.iterdir()] == ["bm25"]  # no temporary folders left
    (tmp_path / "bm25" / "bm25.json").write_text("{}")
    with pytest.raises(RagError, match="not a BM25 index"):
        BM25Index.load(tmp_path / "bm25")


def test_bm25_for_index_builds_saves_loads_and_rebuilds_when_stale(small_index_copy, encoder, tmp_path, capsys):
    index = small_index_copy
    bm25 = bm25_for_index(index)
    assert "missing" in capsys.readouterr().err
    assert bm25.passages == len(index.store) == 300
    meta = json.loads((index.path / FOLDER / "bm25.json").read_text())
    assert meta["passages"] == 300 and meta["sources"] == [s.sha256 for s in index.manifest.sources]

    again = bm25_for_index(index)
    assert capsys.readouterr().err == ""  # loaded, not rebuilt
    assert (again.search(["mozart opera"], 5).rows == bm25.search(["mozart opera"], 5).rows).all()

    # `rag index add` makes it stale: the new passage must be found by BM25 after a rebuild.
    extra = tmp_path / "extra.jsonl"
    extra.write_text(json.dumps({"id": "zq-1", "title": "Quokkatron", "text": "The quokkatron is an imaginary zebrafish telescope."}) + "\n")
    added = add_to_index(index.path, str(extra), encoder=encoder, progress=False)
    rebuilt = bm25_for_index(added)
    assert "stale" in capsys.readouterr().err
    assert rebuilt.passages == 301
    assert rebuilt.search(["quokkatron telescope"], 1).rows[0, 0] == 300

    with pytest.raises(RagError, match="method"):
        BM25Config(method="bm25-magic")


def test_bm25_for_index_rebuilds_a_damaged_folder(small_index_copy, capsys):
    bm25_for_index(small_index_copy, progress=False)
    (small_index_copy.path / FOLDER / "data.csc.index.npy").unlink()
    assert bm25_for_index(small_index_copy).passages == 300
    assert "unreadable" in capsys.readouterr().err
    assert (small_index_copy.path / FOLDER / "data.csc.index.npy").exists()


def test_bm25_for_index_leaves_a_read_only_folder_alone(small_index_copy):
    index = small_index_copy
    bm25 = bm25_for_index(index, save=False, progress=False)
    assert bm25.passages == 300 and not (index.path / FOLDER).exists()
    os.chmod(index.path, 0o555)
    try:
        if os.access(index.path, os.W_OK):
            pytest.skip("running as root: a read-only folder is still writable")
        reopened = open_index(index.path)
        assert bm25_for_index(reopened, progress=False).passages == 300
        assert not (index.path / FOLDER).exists()
    finally:
        os.chmod(index.path, 0o755)


def test_build_rejects_an_empty_corpus():
    with pytest.raises(RagError, match="no passages"):
        BM25Index.build(iter([]))


def test_first_passages_of_default_corpus_are_searchable(default_passages):
    bm25 = BM25Index.build([passage_tokens_text(p) for p in islice(default_passages, 300)])
    hits = bm25.search(["Frank Herbert science fiction novel Dune"], 3)
    assert default_passages[int(hits.rows[0, 0])].title == "Dune (novel)"


def test_rag_index_build_writes_bm25(tmp_path, small_corpus_jsonl, capsys):
    from rag.cli import main

    corpus = tmp_path / "tiny.jsonl"
    corpus.write_text("".join(small_corpus_jsonl.read_text().splitlines(keepends=True)[:20]))
    assert main(["index", "build", "--corpus", str(corpus), "--out", str(tmp_path / "idx")]) == 0
    meta = json.loads((tmp_path / "idx" / FOLDER / "bm25.json").read_text())
    assert meta["passages"] == 20
    assert main(["search", "who wrote beowulf", "--index", str(tmp_path / "idx"), "--retriever", "bm25", "-k", "2"]) == 0
    assert "1. [" in capsys.readouterr().out


@pytest.mark.parametrize("method", METHODS)
def test_streamed_build_writes_the_files_bm25s_index_writes(tmp_path, default_passages, method):
    """rag.bm25_build in slices of 2,000 entries (so the score matrix is written in many column slices)
    gives bm25s' own index() matrix: the same columns and rows, scores equal to float32 rounding."""
    import bm25s

    from rag.bm25_build import write_bm25_files

    config = BM25Config(method=method)
    texts = [passage_tokens_text(p) for p in default_passages]
    tokenize, vocab = Tokenizer(config), {}
    ids = [[vocab.setdefault(t, len(vocab)) for t in tokenize(text)] for text in texts]
    reference = bm25s.BM25(k1=config.k1, b=config.b, method=method)
    reference.index((ids, dict(vocab)), show_progress=False)
    written_vocab, n = write_bm25_files(iter(texts), tokenize, config, tmp_path, entries_in_ram=2000)
    ours = bm25s.BM25.load(str(tmp_path), mmap=True)
    assert n == len(texts) > 100 and written_vocab == reference.vocab_dict == ours.vocab_dict
    assert not (tmp_path / "postings.tmp").exists()
    for part in ("indptr", "indices"):
        assert np.array_equal(np.asarray(ours.scores[part]), reference.scores[part]), part
    assert np.allclose(np.asarray(ours.scores["data"]), reference.scores["data"], rtol=1e-6, atol=1e-6)
