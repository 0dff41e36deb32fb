"""The RAG generator trained here: BERT-to-BERT warm-started from offline MiniLM weights, trained on SQuAD."""
from __future__ import annotations

import json

from safetensors import safe_open

from rag.cli import main
from rag.generate import RagGenerator
from rag.pipeline import ReaderOptions, load_reader
from rag.train_generator import squad_examples
from rag.train_reader import load_squad
from rag.types import Hit, Passage
from tests.conftest import shared


def test_examples_keep_the_answer_inside_the_window():
    questions = load_squad(shared("squad/dev-v1.1.json"), limit=200)
    examples = squad_examples(questions, window_words=30, seed=0)
    assert any(len(q.context.split(" ")) > 30 for q in questions)  # some paragraphs really were cut
    for q, (question, passage, answer) in zip(questions, examples):
        assert question == q.question and answer in passage.text and len(passage.text.split(" ")) <= max(30, answer.count(" ") + 1)


def test_train_generator_trains_saves_resumes_and_generates(tmp_path, capsys):
    out = tmp_path / "ckpt"
    args = ["train", "generator", "--squad", str(shared("squad/train-v1.1.rebuilt.json.gz")), "--out", str(out), "--limit", "16",
            "--max-steps", "2", "--batch-size", "4", "--save-every", "1"]
    assert main(args) == 0 and "trained 2 steps" in capsys.readouterr().out
    folder = out / "generator"
    with safe_open(str(folder / "model.safetensors"), "pt") as f:  # what ships is fp16, weights only
        assert all(f.get_tensor(k).itemsize == 2 for k in f.keys() if f.get_tensor(k).is_floating_point())
    assert json.loads((folder / "generator.json").read_text())["format"] == "rag-generator v1"
    assert main(args) == 0 and "resuming" in capsys.readouterr().err  # same settings: resumed (nothing left)
    assert main(args[:-2] + ["--lr", "0.5"]) == 2 and "other settings (lr)" in capsys.readouterr().err

    for variant in ("sequence", "token"):  # the folder is a RAG generator as it is
        generator = load_reader(str(folder)) if variant == "sequence" else load_reader("rag-token", ReaderOptions(generator=str(folder)))
        assert isinstance(generator, RagGenerator) and generator.config.variant == variant
        passage = Passage("p", "Eiffel Tower", "The Eiffel Tower is a wrought-iron lattice tower in Paris, France.")
        answer = generator.read(["where is the eiffel tower?"], [[Hit(passage, 0.5, 1)]])[0]
        assert 0 < answer.score <= 1 and answer.evidence[0].passage.id == "p"
    assert main(["eval", "reader", "--squad", str(shared("squad/dev-v1.1.json")), "--reader", str(folder), "--limit", "3", "--out", str(tmp_path / "r.json")]) == 0
    assert "reading comprehension with the gold paragraph, 3 questions" in capsys.readouterr().out
