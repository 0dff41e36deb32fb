"""Supervised span-reader training (SQuAD recipe) and the shipped reader: real SQuAD, real MiniLM, real index."""
from __future__ import annotations

import json

import pytest
from safetensors import safe_open

from rag.cli import main
from rag.metrics import normalize_answer
from rag.paths import SHIPPED_READER, models_dir
from rag.pipeline import PipelineConfig, load_pipeline
from rag.readers import ReaderOptions, load_reader
from rag.read import ReaderConfig, SpanReader
from rag.qa_data import load_squad
from rag.train.reader import ReaderTrainConfig, first_answer, retrieved_questions, squad_windows
from rag.types import Hit, Passage, RagError
from tests.conftest import shared

# Questions over the first 300 passages of the built-in corpus (tests.conftest.small_index) and their answers.
BUILT_IN_QUESTIONS = {
    "who wrote don quixote": "Miguel de Cervantes",
    "who wrote dracula": "Bram Stoker",
    "who painted guernica": "Pablo Picasso",
    "who wrote the great gatsby": "F. Scott Fitzgerald",
    "in which city is the eiffel tower": "Paris",
}


def test_sliding_windows_keep_every_answer():
    """With windows much shorter than the paragraphs, every answer is still wholly inside some window."""
    from transformers import AutoTokenizer

    from rag.encoders import default_model_path

    tokenizer = AutoTokenizer.from_pretrained(default_model_path())
    questions = load_squad(shared("squad/dev-v1.1.json"), limit=60)
    windows = squad_windows(questions, tokenizer, max_length=64, doc_stride=24, question_tokens=16)
    assert len(windows) > 2 * len(questions)  # paragraphs really were cut
    squash = lambda text: normalize_answer(text).replace(" ", "")  # noqa: E731  (decode spaces out "levi ' s")
    decoded = [squash(tokenizer.decode(w["input_ids"][w["start"] : w["end"] + 1])) for w in windows if w["start"] >= 0]
    for q in questions:  # each answer is recovered from the tokens of some window (whole tokens: "gold" reads "golden")
        assert any(squash(q.answer_text) in d for d in decoded), q.answer_text
    assert any(w["start"] < 0 for w in windows)  # and windows without the answer exist, as negatives


def test_first_answer_takes_whole_words_in_any_case():
    text = "The Parisian Metro serves Paris. PARIS is the capital."
    assert first_answer(text, ("paris",)) == (26, 31)  # not inside "Parisian"
    assert first_answer(text, ("capital", "Metro")) == (13, 18)  # the earliest of several answers
    assert first_answer(text, ("Lyon", "  ")) is None


def _nq_file(path, questions: dict[str, str]):
    path.write_text("".join(json.dumps({"question": q, "answer": [a]}) + "\n" for q, a in questions.items()))
    return path


def test_open_domain_questions_become_windows_over_the_index(small_index, tmp_path):
    """Each retrieved passage holding the answer is a span positive at the answer's own characters; each
    answered question adds its best-ranked passage without the answer as a selection negative; a question
    no passage answers adds nothing; rag train retriever's held-out share is never read."""
    from rag.encoders import default_model_path
    from rag.qa_data import load_qa
    from rag.train.retriever import RetrieverTrainConfig, split_questions
    from transformers import AutoTokenizer

    unanswerable = {f"what is the name of imaginary planet number {i}": f"Xylo{i}" for i in range(30)}
    path = _nq_file(tmp_path / "qa.jsonl", BUILT_IN_QUESTIONS | unanswerable)
    held, training = split_questions(RetrieverTrainConfig(questions=(str(path),), index=str(small_index.path), out="-"))
    assert held and len(held) + len(training) == len(load_qa(path))
    config = ReaderTrainConfig(squad="-", out="-", questions=str(path), index=str(small_index.path), k=3, questions_repeat=2)
    examples = retrieved_questions(config, progress=False)
    assert {q.question for q in examples} <= {ex.question for ex in training} - set(unanswerable)
    once = examples[: len(examples) // 2]
    assert examples == once * 2  # questions_repeat
    positives = [q for q in once if q.answer_text]
    assert len({q.question for q in positives}) >= 3
    assert {normalize_answer(q.answer_text) for q in positives} == {normalize_answer(BUILT_IN_QUESTIONS[q.question]) for q in positives}
    assert all(q.context[q.answer_start :].startswith(q.answer_text) for q in positives)
    negatives = [q for q in once if not q.answer_text]
    assert negatives and len(negatives) <= len({q.question for q in positives})
    tokenizer = AutoTokenizer.from_pretrained(default_model_path())
    windows = squad_windows(once, tokenizer, max_length=256, doc_stride=64, question_tokens=32)
    assert [w["start"] >= 0 for w in windows] == [bool(q.answer_text) for q in once]  # a 100-word passage is one window


def test_open_domain_questions_are_read_over_each_index_named(small_index, small_index_copy, tmp_path):
    """--index A,B: each question's windows over A, then over B (two corpora's passages in one stage)."""
    path = _nq_file(tmp_path / "qa.jsonl", BUILT_IN_QUESTIONS)
    one = retrieved_questions(ReaderTrainConfig(squad="-", out="-", questions=str(path), index=str(small_index.path), k=3), progress=False)
    both = retrieved_questions(ReaderTrainConfig(squad="-", out="-", questions=str(path), index=f"{small_index.path},{small_index_copy.path}", k=3), progress=False)
    assert one and both == one + one  # the copy holds the same passages, so the same windows again


def test_open_domain_questions_need_an_index(tmp_path):
    path = _nq_file(tmp_path / "qa.jsonl", BUILT_IN_QUESTIONS)
    with pytest.raises(RagError, match="need an index"):
        retrieved_questions(ReaderTrainConfig(squad="-", out="-", questions=str(path)))


def test_bad_squad_record_names_where(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"data": [{"title": "T", "paragraphs": [{"context": "Paris is in France.", "qas": [
        {"question": "where is paris?", "answers": [{"text": "France", "answer_start": 3}]}]}]}]}))
    with pytest.raises(RagError, match=r"bad.json: data\[0\].paragraphs\[0\].qas\[0\]: answer 'France' is not at answer_start 3"):
        load_squad(bad)


def test_train_reader_trains_saves_resumes_and_answers(tmp_path, capsys):
    squad = str(shared("squad/train-v1.1.rebuilt.json.gz"))
    out = tmp_path / "ckpt"
    args = ["train", "reader", "--squad", squad, "--out", str(out), "--limit", "24", "--max-steps", "2", "--batch-size", "8",
            "--max-length", "128", "--doc-stride", "32", "--save-every", "1"]
    assert main(args) == 0
    assert "trained 2 steps" in capsys.readouterr().out
    reader_dir = out / "reader"
    with safe_open(str(reader_dir / "model.safetensors"), "pt") as f:  # what ships is fp16, weights only
        assert all(f.get_tensor(k).dtype.is_floating_point and f.get_tensor(k).itemsize == 2 for k in f.keys())
    assert not list(reader_dir.glob("*.pt"))
    run = json.loads((out / "run.json").read_text())
    assert run["step"] == 2 and run["config"]["limit"] == 24

    assert main(args) == 0  # the same settings resume: nothing left to do at step 2 of 2
    assert "resuming" in capsys.readouterr().err
    assert main(args[:-2] + ["--lr", "0.5"]) == 2  # other settings are refused, not silently continued
    assert "other settings (lr: " in capsys.readouterr().err

    shipped = tmp_path / "shipped"
    assert main(["export-reader", str(out), "--out", str(shipped)]) == 0  # a checkpoint -> weights only
    assert sorted(p.name for p in shipped.iterdir()) == sorted(p.name for p in reader_dir.iterdir())
    assert main(["export-reader", str(out), "--out", str(tmp_path)]) == 2  # never replaces a folder that is not a reader
    assert (out / "run.json").exists()

    reader = SpanReader(ReaderConfig(model=str(shipped)))
    assert reader.trained and reader.config.max_length == 128  # trained settings come back from reader.json
    passage = Passage("p", "Eiffel Tower", "The Eiffel Tower is a wrought-iron lattice tower in Paris, France.")
    answer = reader.read(["where is the eiffel tower?"], [[Hit(passage, 0.5, 1)]])[0]
    assert answer.text and answer.text in passage.text and answer.spans[0].passage_id == "p"


def test_train_reader_refuses_a_folder_it_did_not_make(tmp_path, capsys):
    mine = tmp_path / "thesis"
    mine.mkdir()
    (mine / "thesis.txt").write_text("years of work")
    code = main(["train", "reader", "--squad", str(shared("squad/dev-v1.1.json")), "--out", str(mine), "--max-steps", "1"])
    assert code == 2 and "not a reader-training checkpoint" in capsys.readouterr().err
    assert (mine / "thesis.txt").read_text() == "years of work"


def test_shipped_reader_is_found_from_any_directory(tmp_path, monkeypatch):
    assert (models_dir() / SHIPPED_READER / "model.safetensors").exists(), "models/reader must ship with the project"
    monkeypatch.chdir(tmp_path)
    reader = load_reader("default")
    assert reader.trained and str(models_dir()) in str(reader.config.model)


def test_shipped_reader_answers_built_in_corpus_questions(small_index):
    pipeline = load_pipeline(PipelineConfig(str(small_index.path), "default", k=10))
    answers = [done.answer for done in pipeline.answer(list(BUILT_IN_QUESTIONS))]
    got = {a.question: a.text for a in answers}
    assert {q: normalize_answer(t) for q, t in got.items()} == {q: normalize_answer(t) for q, t in BUILT_IN_QUESTIONS.items()}
    again = [done.answer for done in pipeline.answer(list(BUILT_IN_QUESTIONS))]  # deterministic
    assert [(a.text, a.score) for a in again] == [(a.text, a.score) for a in answers]
    for a in answers:  # the evidence holds the answer at the stated offsets
        span = a.spans[0]
        passage = next(h.passage for h in a.evidence if h.passage.id == span.passage_id)
        assert passage.text[span.start : span.end] == a.text and 0 < a.score <= 1


def test_fast_path_gives_the_fp32_answers(small_index):
    questions = list(BUILT_IN_QUESTIONS)
    hits = load_pipeline(PipelineConfig(str(small_index.path), "default", k=10)).retriever.retrieve(questions, 10)
    fp32 = load_reader("default", ReaderOptions(precision="fp32")).read(questions, hits)
    bf16 = load_reader("default", ReaderOptions(precision="bf16")).read(questions, hits)
    assert [normalize_answer(a.text) for a in bf16] == [normalize_answer(a.text) for a in fp32]


def test_eval_reader_reports_squad_em_f1(tmp_path, capsys):
    out = tmp_path / "reader.json"
    assert main(["eval", "reader", "--squad", str(shared("squad/dev-v1.1.json")), "--limit", "40", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["questions"] == 40 and report["exact_match"] >= 0.5 and report["f1"] >= report["exact_match"]
    assert "reading comprehension with the gold paragraph, 40 questions" in capsys.readouterr().out


def test_untrained_reader_is_announced(small_index, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("RAG_MODELS_DIR", str(tmp_path))  # no shipped reader there, and no shipped reranker
    assert main(["ask", "who wrote dracula", "--index", str(small_index.path), "-k", "2"]) == 0
    captured = capsys.readouterr()
    assert "UNTRAINED" in captured.out and "no shipped reader" in captured.err
    assert "no shipped reranker" in captured.err and "without re-ranking" in captured.err


def test_cli_ask_answers_and_marks_the_evidence_once(small_index, capsys):
    assert main(["ask", "who wrote don quixote", "--index", str(small_index.path), "-k", "5", "--width", "400"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("answer: Miguel de Cervantes\n") and "UNTRAINED" not in printed
    assert ">>Miguel de Cervantes<<" in printed and ">>>>" not in printed



def test_train_reader_with_open_domain_questions(small_index, tmp_path, capsys):
    qa = _nq_file(tmp_path / "qa.jsonl", BUILT_IN_QUESTIONS)
    out = tmp_path / "ckpt"
    assert main(["train", "reader", "--squad", str(shared("squad/train-v1.1.rebuilt.json.gz")), "--limit", "8", "--questions", str(qa), "--index", str(small_index.path),
                 "-k", "2", "--questions-repeat", "3", "--max-steps", "1", "--batch-size", "4", "--max-length", "128", "--doc-stride", "32", "--out", str(out)]) == 0
    assert "each read 3x per epoch" in capsys.readouterr().err
    config = json.loads((out / "run.json").read_text())["config"]
    assert config["questions"] == str(qa) and config["k"] == 2 and (out / "reader" / "reader.json").exists()
