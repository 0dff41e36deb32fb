"""Evaluation on a tiny real index: questions whose answers sit in known passages of the built-in corpus."""
from __future__ import annotations

import json

import pytest

from rag.cli import main
from rag.evaluate import answer_ceiling, evaluate_qa, evaluate_retrieval, parse_ks
from rag.metrics import exact_match, f1, has_answer, top_k_accuracy
from rag.pipeline import Pipeline
from rag.retrieve import load_retriever
from rag.types import Answer, Hit, QAExample, RagError

# (question, title of the article whose lead holds the answer, answers): checked in test_answers_are_where_we_say
KNOWN = [
    ("who wrote the novel dune", "Dune (novel)", ("Frank Herbert",)),
    ("who composed the music of don giovanni", "Don Giovanni", ("Wolfgang Amadeus Mozart", "Mozart")),
    ("how many alliterative lines does beowulf have", "Beowulf", ("3,182",)),
    ("in which city was bossa nova developed", "Bossa nova", ("Rio de Janeiro",)),
    ("since what year has the encyclopaedia britannica been published", "Encyclopædia Britannica", ("1768",)),
    ("what is the great sphinx of giza made of", "Great Sphinx of Giza", ("limestone",)),
    ("who organises the eurovision song contest", "Eurovision Song Contest", ("European Broadcasting Union",)),
]
EXAMPLES = [QAExample(f"q{i}", q, a) for i, (q, _, a) in enumerate(KNOWN)]
UNANSWERABLE = QAExample("q-none", "what is a quokkatron", ("Quokkatron Mark IV",))


def test_answers_are_where_we_say(small_index):
    passages = [p for batch in small_index.store.iter_batches() for p in batch]
    for _, title, answers in KNOWN:
        assert any(has_answer(p.text, answers) for p in passages if p.title == title), title


def test_parse_ks():
    assert parse_ks("20, 1,5,5,100") == (1, 5, 20, 100)
    for bad in ("", "0,5", "a,b"):
        with pytest.raises(RagError, match="--k"):
            parse_ks(bad)


def test_evaluate_retrieval_agrees_with_top_k_accuracy(small_index_copy, encoder):
    retrievers = {kind: load_retriever(small_index_copy, kind, encoder) for kind in ("dense", "bm25", "hybrid")}
    examples = EXAMPLES + [UNANSWERABLE]
    report = evaluate_retrieval(retrievers, examples, [20, 1, 5], batch_size=3, progress=False)
    assert report.ks == (1, 5, 20)
    answers = [ex.answers for ex in examples]
    for name, retriever in retrievers.items():
        hits = retriever.retrieve([ex.question for ex in examples], 20)  # one batch: the oracle
        assert report.accuracy()[name] == top_k_accuracy(hits, answers, (1, 5, 20))
        assert report.runs[name].first_hits[-1] is None  # the unanswerable question
        assert report.runs[name].questions_per_second > 0
    # the answer passages are easy to find lexically: BM25 gets all seven in its top 5
    assert report.accuracy()["bm25"][5] == pytest.approx(7 / 8)
    table = report.table()
    assert "8 questions" in table and all(name in table for name in retrievers) and "top-20" in table


def test_report_files(small_index_copy, tmp_path):
    report = evaluate_retrieval({"bm25": load_retriever(small_index_copy, "bm25")}, EXAMPLES, (1, 5), progress=False)
    data = json.loads(report.write_json(tmp_path / "out" / "r.json").read_text())
    assert data["questions"] == 7 and data["ks"] == [1, 5]
    assert data["accuracy"]["bm25"] == {str(k): v for k, v in report.accuracy()["bm25"].items()}
    first = data["per_question"][0]
    assert first["id"] == "q0" and first["bm25"]["first_hit"] == 1 and first["bm25"]["top"][0].startswith("Dune (novel)-0")
    png = report.write_plot(tmp_path / "out" / "r.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


class TopTitleReader:
    """Deterministic: answers each question with the title of its first passage; records what it was given."""

    def __init__(self):
        self.seen: list[int] = []

    def read(self, questions: list[str], hits: list[list[Hit]]) -> list[Answer]:
        self.seen += [len(h) for h in hits]
        return [Answer(q, h[0].passage.title if h else "", 1.0, tuple(h[:1])) for q, h in zip(questions, hits)]


def test_evaluate_qa_arithmetic(small_index_copy):
    retriever = load_retriever(small_index_copy, "bm25")
    reader = TopTitleReader()
    examples = [
        QAExample("a", "which science fiction novel did frank herbert write", ("Dune",)),  # "Dune (novel)": EM 0, F1 2/3
        QAExample("b", "mozart opera don giovanni libretto", ("Don Giovanni",)),  # EM 1
        QAExample("c", "baroque architecture style italy", ("Gothic architecture",)),  # "Baroque architecture": F1 1/2
        UNANSWERABLE,
    ]
    report = evaluate_qa(Pipeline(retriever, reader, k=3), examples, ks=[1, 5], batch_size=2, progress=False)
    assert reader.seen == [3, 3, 3, 3]  # the reader reads pipeline.k passages, though 5 were retrieved
    titles = [h[0].passage.title if h else "" for h in retriever.retrieve([ex.question for ex in examples], 1)]
    assert titles[:3] == ["Dune (novel)", "Don Giovanni", "Baroque architecture"]
    assert report.em == (0.0, 1.0, 0.0, 0.0)
    assert report.f1 == pytest.approx((2 / 3, 1.0, 0.5, 0.0))
    assert report.em == tuple(exact_match(t, ex.answers) for t, ex in zip(titles, examples))
    assert report.f1 == tuple(f1(t, ex.answers) for t, ex in zip(titles, examples))
    assert report.exact_match == pytest.approx(0.25) and report.mean_f1 == pytest.approx((2 / 3 + 1.5) / 4)
    hits = retriever.retrieve([ex.question for ex in examples], 5)
    assert report.retrieval.accuracy((1, 5)) == top_k_accuracy(hits, [ex.answers for ex in examples], (1, 5))
    assert "EM" in report.table() and "25.0" in report.table()


def test_answer_ceiling(small_index):
    assert answer_ceiling(small_index.store, EXAMPLES + [UNANSWERABLE]) == pytest.approx(7 / 8)


def test_cli_eval_retrieval(small_index_copy, tmp_path, capsys):
    qa = tmp_path / "known.jsonl"
    qa.write_text("".join(json.dumps({"question": q, "answer": list(a)}) + "\n" for q, _, a in KNOWN))
    out = tmp_path / "results" / "known"
    argv = ["eval", "retrieval", "--questions", str(qa), "--index", str(small_index_copy.path), "--retrievers", "dense,bm25,hybrid", "--k-list", "1,5", "--out", str(out)]
    assert main(argv) == 0
    stdout = capsys.readouterr().out
    assert "top-1" in stdout and "hybrid" in stdout
    report = json.loads(out.with_name("known.json").read_text())
    assert report["questions"] == 7 and report["answer_ceiling"] == 1.0
    config = report["configuration"]  # enough to publish and reproduce the numbers
    assert config["fusion"] == "linear" and config["ks"] == [1, 5]  # the tuned default (eval/tune_pipeline.py)
    kinds = ["dense", "bm25", "hybrid"]  # each also re-ranked, as the default pipeline does, side by side
    assert config["retrievers"] == kinds + [f"{k} + rerank 50" for k in kinds] and config["reranker"] == "rag-reranker, top 50"
    assert config["index"] == str(small_index_copy.path.resolve()) and config["encoder"] == "default" and config["rag_version"] and config["date"]
    assert out.with_name("known.png").exists() and out.with_name("known.svg").read_text().lstrip().startswith("<?xml")
    assert main(argv[:-4] + ["--retrievers", "dense,splade", "--out", str(out)]) == 2
    assert "splade" in capsys.readouterr().err
