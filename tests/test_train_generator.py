"""The RAG generator trained here: BERT-to-BERT warm-started from offline MiniLM weights, trained on SQuAD."""
from __future__ import annotations

import json

from safetensors import safe_open

from rag.cli import main
from rag.generate import RagGenerator, find_loosely
from rag.pipeline import PipelineConfig, load_pipeline
from rag.readers import ReaderOptions, load_reader
from rag.qa_data import load_squad, squad_examples
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
    assert main(args[:-2] + ["--lr", "0.5"]) == 2 and "other settings (lr: " in capsys.readouterr().err

    for variant in ("sequence", "token"):  # the folder is a RAG generator as it is
        generator = load_reader(str(folder)) if variant == "sequence" else load_reader("rag-token", ReaderOptions(generator=str(folder)))
        assert isinstance(generator, RagGenerator) and generator.config.variant == variant
        passage = Passage("p", "Eiffel Tower", "The Eiffel Tower is a wrought-iron lattice tower in Paris, France.")
        answer = generator.read(["where is the eiffel tower?"], [[Hit(passage, 0.5, 1)]])[0]
        assert 0 <= answer.score <= 1 and answer.evidence[0].passage.id == "p"  # two steps of training: p may underflow to 0
    assert main(["eval", "reader", "--squad", str(shared("squad/dev-v1.1.json")), "--reader", str(folder), "--limit", "3", "--out", str(tmp_path / "r.json")]) == 0
    assert "reading comprehension with the gold paragraph, 3 questions" in capsys.readouterr().out


# Questions over the small built-in-corpus index that the shipped generator answers exactly.
GENERATOR_ANSWERS = {
    "who wrote don quixote": "Miguel de Cervantes",
    "who wrote dracula": "Bram Stoker",
    "who painted guernica": "Pablo Picasso",
    "in which city is the eiffel tower": "Paris",
}


def test_shipped_generator_is_tied_fp16_and_small():
    from rag.bert2bert import is_tied, is_tied_model
    from rag.paths import SHIPPED_GENERATOR, models_dir

    folder = models_dir() / SHIPPED_GENERATOR
    assert is_tied(folder) and (folder / "model.safetensors").stat().st_size < 60e6  # the issue allows 100 MB
    with safe_open(str(folder / "model.safetensors"), "pt") as f:
        assert not any(k.startswith("decoder.bert.encoder.layer.0.attention.self") for k in f.keys())  # noqa: SIM118 - stored once, in the encoder
    generator = load_reader("rag-sequence")
    assert isinstance(generator, RagGenerator) and is_tied_model(generator.model) and generator.config.copy_only
    decoder_layer, encoder_layer = generator.model.decoder.bert.encoder.layer[3], generator.model.encoder.encoder.layer[3]
    assert decoder_layer.output.dense.weight is encoder_layer.output.dense.weight  # tied again after loading
    assert decoder_layer.crossattention.self.query.weight is not None


def test_shipped_generator_answers_built_in_corpus_questions(small_index, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # no network needed: the generator ships in models/
    for variant in ("rag-sequence", "rag-token"):
        pipeline = load_pipeline(PipelineConfig(str(small_index.path), variant, k=5))
        answers = [done.answer for done in pipeline.answer(list(GENERATOR_ANSWERS))]
        assert {a.question: a.text for a in answers} == GENERATOR_ANSWERS, variant  # written as the passage writes it
        for a in answers:
            assert abs(sum(w.contribution for w in a.weights) - 1) < 1e-3 and len(a.weights) == 5
            span = a.spans[0]
            assert next(h.passage for h in a.evidence if h.passage.id == span.passage_id).text[span.start : span.end] == a.text


def test_find_loosely_maps_wordpiece_spacing_back_to_the_passage():
    text = "The game was at Levi's Stadium; Beyoncé sang. It cost $1.2 billion."
    for generated, expected in (("levi ' s stadium", "Levi's Stadium"), ("beyonce", "Beyoncé"), ("$ 1. 2 billion", "$1.2 billion")):
        start, end = find_loosely(generated, text)
        assert text[start:end] == expected
    assert find_loosely("paris", text) is None and find_loosely("", text) is None
