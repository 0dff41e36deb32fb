"""Retriever training (issue 11): DPR's distant positives, the query tower trained against every passage
of a real index, the two-tower folder it writes, and searching an index with it."""
from __future__ import annotations

import json

import numpy as np
import pytest

from rag.cli import main
from rag.encoders import SHIPPED_RETRIEVER, TWO_TOWER_FILE, WIKI_RETRIEVER, EncoderConfig, TwoTowerEncoder, load_encoder, passage_side
from rag.index_folder import open_index
from rag.qa_data import load_qa
from rag.retrieve import DenseRetriever
from rag.train.retriever import RetrieverTrainConfig, _QueryTowerTrainee, _query_tower, distant_positives, split_questions
from rag.types import Passage, RagError

QA = [("who wrote dracula", "Bram Stoker"), ("who painted guernica", "Picasso"), ("in which city is the eiffel tower", "Paris"),
      ("what is the capital of france", "Paris")]


@pytest.fixture
def qa_file(tmp_path):
    path = tmp_path / "qa.jsonl"
    path.write_text("".join(json.dumps({"question": q, "answer": [a]}) + "\n" for q, a in QA))
    return path


def test_distant_positives_are_the_answer_bearing_passages_of_dense_and_bm25(small_index, qa_file):
    examples = load_qa(qa_file)
    groups = {g.question: g for g in distant_positives(examples, small_index, depth=20, progress=False)}
    dracula = groups["who wrote dracula"]
    texts = [p.text for p in small_index.store.get_rows(list(dracula.rows))]
    assert texts and all("Bram Stoker" in t for t in texts)
    every = [p for batch in small_index.store.iter_batches() for p in batch]
    assert set(dracula.rows) <= {i for i, p in enumerate(every) if "Bram Stoker" in p.text}


def test_a_step_raises_the_positives_share_of_the_softmax_over_every_passage(small_index, qa_file):
    import torch

    from rag.index_folder import passage_vectors

    groups = distant_positives(load_qa(qa_file), small_index, depth=20, progress=False)
    tower = _query_tower(small_index, "cpu")
    trainee = _QueryTowerTrainee(tower, groups, torch.as_tensor(passage_vectors(small_index)), 20.0, "default")
    optimizer = torch.optim.AdamW(tower.model.parameters(), lr=1e-4)
    batch = list(range(len(groups)))
    losses = []
    for _ in range(4):
        loss = trainee.loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < losses[0] - 0.05, losses


def test_holdout_split_is_reproducible_and_disjoint(qa_file):
    config = RetrieverTrainConfig(questions=(str(qa_file),), index="-", out="-", holdout=0.5, seed=3)
    held, train = split_questions(config)
    assert len(held) == 2 and len(train) == 2 and not {e.question for e in held} & {e.question for e in train}
    assert [e.question for e in split_questions(config)[0]] == [e.question for e in held]


def test_the_reranker_trainer_leaves_out_the_same_held_out_questions(small_index, qa_file):
    from rag.train.reranker import RerankerTrainConfig, retrieved_groups

    held, _ = split_questions(RetrieverTrainConfig(questions=(str(qa_file),), index="-", out="-", holdout=0.5, seed=0))
    config = RerankerTrainConfig(questions=(str(qa_file),), index=str(small_index.path), out="-", depth=10, holdout=0.5, seed=0)
    trained_on = {g.question for g in retrieved_groups(config, progress=False)}
    assert trained_on and not trained_on & {e.question for e in held}


def test_cli_trains_a_two_tower_folder_that_searches_the_index_it_came_from(small_index, qa_file, tmp_path, capsys):
    out = tmp_path / "retriever"
    args = ["train", "retriever", "--questions", str(qa_file), "--index", str(small_index.path), "--out", str(out), "--depth", "20",
            "--holdout", "0.25", "--max-steps", "2", "--batch-size", "2", "--save-every", "1"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert f"encoder: {out / 'encoder'}" in printed and "held-out training questions (1, never trained on): top-1" in printed
    folder = out / "encoder"
    assert json.loads((folder / TWO_TOWER_FILE).read_text()) == {"format": "rag-two-tower v1", "passage_encoder": "default"}
    assert main(args) == 0 and "resuming" in capsys.readouterr().err  # the same command resumes (nothing left to do)

    encoder = open_index(small_index.path).load_encoder(EncoderConfig(spec=str(folder), precision="fp32"))  # same passage side: accepted
    assert isinstance(encoder, TwoTowerEncoder) and passage_side(str(folder)) == "default"
    hits = DenseRetriever(small_index, encoder).retrieve(["who wrote dracula"], 3)[0]
    assert any("Bram Stoker" in h.passage.text for h in hits)
    # its passage side is the index's encoder: the vectors it would build are the index's own
    passages = small_index.store.get_rows([0, 1])
    from rag.index_folder import passage_vectors

    assert np.allclose(encoder.encode_passages(passages), passage_vectors(small_index)[:2], atol=1e-4)
    assert main(["search", "who wrote dracula", "--index", str(small_index.path), "-k", "1", "--json"]) == 0


def test_two_tower_errors_name_the_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("RAG_MODELS_DIR", str(tmp_path / "no-models"))
    with pytest.raises(RagError, match="holds no trained retriever"):
        load_encoder(SHIPPED_RETRIEVER)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / TWO_TOWER_FILE).write_text(json.dumps({"format": "rag-two-tower v1", "passage_encoder": 3}))
    with pytest.raises(RagError, match=r"rag_encoder.json: 'passage_encoder' should name"):
        load_encoder(str(bad))
    (bad / TWO_TOWER_FILE).write_text("{not json")
    with pytest.raises(RagError, match="rag_encoder.json"):
        load_encoder(str(bad))


def test_an_index_of_another_passage_encoder_is_refused(small_index, tmp_path):
    from rag.index_folder import check_encoder

    with pytest.raises(RagError, match="was built with encoder 'default'"):
        check_encoder(small_index.manifest, "sentence-transformers/other-model", small_index.path)


SHIPPED_QUESTIONS = [("who painted guernica", "Picasso"), ("who directed citizen kane", "Orson Welles"),
                     ("who wrote alice's adventures in wonderland", "Lewis Carroll"), ("who wrote hamlet", "Shakespeare")]


def test_the_shipped_retriever_is_the_build_default_and_finds_answer_passages(small_index):
    """models/retriever (`rag-retriever`): MiniLM passages, so it searches an index built with 'default' as it is."""
    from rag.cli import build_parser
    from rag.metrics import has_answer

    assert build_parser().parse_args(["index", "build", "--corpus", "x"]).encoder == SHIPPED_RETRIEVER
    assert passage_side(SHIPPED_RETRIEVER) == "default"
    encoder = small_index.load_encoder(EncoderConfig(spec=SHIPPED_RETRIEVER, precision="fp32"))
    hits = DenseRetriever(small_index, encoder).retrieve([q for q, _ in SHIPPED_QUESTIONS], 1)
    assert [has_answer(h[0].passage.text, [a]) for h, (_, a) in zip(hits, SHIPPED_QUESTIONS)] == [True] * len(SHIPPED_QUESTIONS)
    assert next(iter(encoder.model.parameters())).dtype.is_floating_point and str(next(iter(encoder.model.parameters())).dtype) == "torch.float32"


def test_the_wiki_retriever_ships_with_minilm_passages_and_its_own_query_weights(small_index):
    """models/retriever-wiki (`rag-retriever-wiki`, what `make wiki` builds with): same passage side, other query weights."""
    import numpy as np

    assert passage_side(WIKI_RETRIEVER) == "default"
    wiki = small_index.load_encoder(EncoderConfig(spec=WIKI_RETRIEVER, precision="fp32"))
    shipped = small_index.load_encoder(EncoderConfig(spec=SHIPPED_RETRIEVER, precision="fp32"))
    questions = [q for q, _ in SHIPPED_QUESTIONS]
    a, b = wiki.encode_queries(questions), shipped.encode_queries(questions)
    assert np.allclose(np.linalg.norm(a, axis=1), 1, atol=1e-3) and not np.allclose(a, b, atol=1e-2)
    hits = DenseRetriever(small_index, wiki).retrieve(questions, 5)
    assert sum(any(a.lower() in h.passage.text.lower() for h in row) for row, (_, a) in zip(hits, SHIPPED_QUESTIONS)) >= 3


def test_squad_pairs_are_each_question_with_its_own_paragraph_after_the_index_rows(small_index, tmp_path, capsys):
    from rag.encoders import load_encoder as load
    from rag.qa_data import load_squad
    from rag.train.retriever import squad_pairs

    squad = "../shared/data/squad/dev-v1.1.json"
    config = RetrieverTrainConfig(questions=(), index=str(small_index.path), out="-", squad=squad, squad_questions=12)
    vectors, groups = squad_pairs(config, "default", first_row=len(small_index.store), progress=False)
    assert len(groups) == 12 and len(vectors) == len({g.rows for g in groups})
    assert all(len(g.rows) == 1 and len(small_index.store) <= g.rows[0] < len(small_index.store) + len(vectors) for g in groups)
    by_question = {q.question: q for q in load_squad(squad)}
    first = groups[0]
    own = by_question[first.question]
    expected = load("default").encode_passages([Passage("x", own.title, own.context)])[0]
    assert np.allclose(vectors[first.rows[0] - len(small_index.store)], expected, atol=1e-3)  # the row is its own paragraph's vector
    # and the CLI trains on them beside the distant positives
    qa = tmp_path / "qa.jsonl"
    qa.write_text("".join(json.dumps({"question": q, "answer": [a]}) + "\n" for q, a in QA))
    out = tmp_path / "retriever"
    assert main(["train", "retriever", "--questions", str(qa), "--index", str(small_index.path), "--out", str(out), "--depth", "20",
                 "--holdout", "0", "--squad", squad, "--squad-questions", "8", "--max-steps", "1", "--batch-size", "4"]) == 0
    assert "SQuAD: 8 questions" in capsys.readouterr().err and (out / "encoder" / TWO_TOWER_FILE).exists()
