"""Joint training on a real tiny index: gradients reach the query encoder, checkpoints resume and load."""
from __future__ import annotations

import json

import numpy as np
import pytest

from rag.build import BuildConfig, build_index
from rag.checkpoint import is_checkpoint, load_query_encoder
from rag.index_folder import passage_vectors
from rag.train.joint import TrainConfig, train
from rag.types import QAExample, RagError

DUNE = QAExample("dune", "who wrote the novel dune?", ("Frank Herbert",))
DON = QAExample("don", "who composed the music of don giovanni?", ("Wolfgang Amadeus Mozart",))  # gold ranks 2nd before training


@pytest.fixture(scope="module")
def tiny_index(tmp_path_factory, default_passages, encoder):
    """60 real passages (Dune among them), encoded by the real MiniLM."""
    import json as _json

    keep = [p for p in default_passages if p.title.startswith(("Dune", "Don", "Diary", "Dark", "Beowulf"))] + default_passages[:40]
    corpus = tmp_path_factory.mktemp("tiny") / "tiny.jsonl"
    corpus.write_text("".join(_json.dumps({"id": p.id, "title": p.title, "text": p.text}) + "\n" for p in dict.fromkeys(keep)))
    return build_index(BuildConfig(corpus=str(corpus), shard_size=64), tmp_path_factory.mktemp("idx") / "tiny", encoder=encoder, progress=False)


def gold_scores(query_encoder, index, example: QAExample, k: int) -> tuple[float, float]:
    """(q . d_gold, p(gold | q) among the top k) for a query encoder; gold: the one passage holding the answer."""
    q = query_encoder.encode_queries([example.question])[0]
    vectors = passage_vectors(index)
    texts = [p.text for batch in index.store.iter_batches(1000) for p in batch]
    (gold,) = [i for i, t in enumerate(texts) if example.answers[0] in t]
    scores = vectors @ q
    top = np.argsort(-scores)[:k]
    probs = np.exp(20 * scores[top]) / np.exp(20 * scores[top]).sum()
    return float(scores[gold]), float(probs[list(top).index(gold)]) if gold in top else 0.0


def settings(index, out, **kw) -> TrainConfig:
    return TrainConfig(questions="(in memory)", index=str(index.path), out=str(out), k=4, batch_size=1, max_length=96, lr=5e-5, query_lr=1e-4, **kw)


def test_joint_training_moves_the_query_encoder_toward_the_gold_passage_and_resumes(tiny_index, encoder, tmp_path):
    import torch

    out = tmp_path / "ckpt"
    before = gold_scores(encoder, tiny_index, DON, k=4)
    first = train(settings(tiny_index, out, epochs=2), [DON], progress=False)
    assert (first.steps, first.questions_used) == (2, 2) and is_checkpoint(out)
    resumed = train(settings(tiny_index, out, epochs=3), [DON], progress=False)  # one more epoch: resumes at step 2
    assert (resumed.steps, resumed.questions_seen, resumed.questions_used) == (3, 3, 1)

    tuned = load_query_encoder(out, tiny_index)
    after = gold_scores(tuned, tiny_index, DON, k=4)
    assert after[0] > before[0] + 1e-3 and after[1] > before[1]  # the gold passage's retrieval score and p(z|q) rose
    changed = [not torch.equal(a, b) for a, b in zip(encoder.model.parameters(), tuned.model.parameters())]
    assert sum(changed) > len(changed) // 2  # the query encoder's weights moved (not only a head)

    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [e["step"] for e in log] == [1, 2, 3] and log[-1]["loss"] < log[0]["loss"]


def test_refresh_trains_the_passage_encoder_and_writes_a_matching_index(tiny_index, tmp_path):
    from rag.index_folder import open_index
    from rag.pipeline import PipelineConfig, load_pipeline

    out = tmp_path / "e2e"
    train(settings(tiny_index, out, epochs=1, refresh_every=1), [DUNE], progress=False)
    refreshed = open_index(out / "index")
    assert not np.allclose(passage_vectors(refreshed), passage_vectors(tiny_index), atol=1e-4)  # passages re-encoded by the trained tower
    pipeline = load_pipeline(PipelineConfig(str(out / "index"), reader=str(out), k=4))
    answer = pipeline.answer([DUNE.question])[0].answer
    assert "carries its own fine-tuned query encoder" in pipeline.notes[0]  # said, not swapped silently
    assert answer.evidence and answer.spans
    with pytest.raises(RagError, match="query encoder was trained for indexes built with"):
        load_pipeline(PipelineConfig(str(tiny_index.path), reader=str(out), k=4))


def test_cli_ask_and_eval_qa_use_a_trained_checkpoint(tiny_index, tmp_path, capsys):
    from rag.cli import main

    out = tmp_path / "ckpt"
    train(settings(tiny_index, out, epochs=1), [DUNE], progress=False)
    assert main(["ask", DUNE.question, "--index", str(tiny_index.path), "--reader", str(out), "-k", "3", "--width", "5000", "--not-sure-below", "0"]) == 0
    printed = capsys.readouterr().out
    answer = printed.splitlines()[0].removeprefix("answer: ")
    assert printed.startswith("answer: ") and answer and "score:" in printed
    assert f">>{answer}<<" in printed  # the answer is a span of a printed passage, marked where it was read
    qa = tmp_path / "qa.jsonl"
    qa.write_text(json.dumps({"question": DUNE.question, "answer": list(DUNE.answers)}) + "\n" + json.dumps({"question": DON.question, "answer": list(DON.answers)}) + "\n")
    assert main(["eval", "qa", "--questions", str(qa), "--index", str(tiny_index.path), "--reader", str(out), "-k", "3", "--k-list", "1,3", "--out", str(tmp_path / "qa")]) == 0
    report = json.loads((tmp_path / "qa.json").read_text())
    assert report["questions"] == 2 and report["accuracy"]["3"] == 1.0  # both answers are in their top 3
    assert report["configuration"]["reader"] == str(out) and report["configuration"]["read_k"] == 3 and report["answer_ceiling"] == 1.0
    assert (tmp_path / "qa.svg").exists()
    assert main(["ask", "x", "--index", str(tiny_index.path), "--reader", str(tmp_path / "missing")]) == 2  # a user error, no traceback


def test_joint_training_from_a_generator_folder_keeps_its_settings(tiny_index, tmp_path):
    from rag.generate import GeneratorConfig, RagGenerator, load_generator
    from tests.test_generate import tiny_model

    start = tmp_path / "start"
    RagGenerator(GeneratorConfig(model=tiny_model("bart", tmp_path / "bart"), copy_only=True, score_scale=10.0)).save(start)
    out = tmp_path / "gen"
    config = TrainConfig(**{**settings(tiny_index, out).__dict__, "reader": "rag-sequence", "generator": str(start), "lr": 1e-3})
    assert train(config, [DUNE], progress=False).questions_used == 1  # "Frank Herbert" is in Dune's passage
    trained = load_generator(out / "reader")
    assert (trained.config.copy_only, trained.config.score_scale) == (True, 10.0)
    from rag.readers import export_reader

    shipped = export_reader(out, tmp_path / "models" / "generator")  # the checkpoint's generator, as fp16 weights
    import torch
    from safetensors import safe_open

    assert load_generator(shipped).config.copy_only
    with safe_open(str(shipped / "model.safetensors"), "pt") as weights:
        assert {weights.get_tensor(name).dtype for name in weights.keys()} == {torch.float16}


def test_joint_training_of_a_rag_token_generator(tiny_index, tmp_path):
    from rag.generate import RagGenerator
    from rag.pipeline import PipelineConfig, load_pipeline
    from tests.test_generate import tiny_model

    out = tmp_path / "gen"
    config = settings(tiny_index, out, epochs=2)
    config = TrainConfig(**{**config.__dict__, "reader": "rag-token", "generator": tiny_model("bart", tmp_path / "bart"), "lr": 1e-3})
    report = train(config, [DUNE], progress=False)
    assert report.questions_used == 2
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert log[1]["loss"] < log[0]["loss"]
    pipeline = load_pipeline(PipelineConfig(str(tiny_index.path), reader=str(out), k=2))
    assert isinstance(pipeline.reader, RagGenerator) and pipeline.reader.config.variant == "token"
    assert len(pipeline.answer([DUNE.question])[0].answer.evidence) == 2


def test_rehearsal_trains_on_gold_paragraphs_too_and_raises_their_likelihood(tiny_index, tmp_path):
    """--rehearse-squad: each step adds -log p(answer | question, gold paragraph) of SQuAD examples, so a
    step teaches the generator even when no retrieved passage holds the answer."""
    import torch

    from rag.generate import GeneratorConfig, RagGenerator, load_generator
    from rag.qa_data import load_squad, squad_examples
    from tests.test_generate import tiny_model

    context = "The Eiffel Tower was completed in 1889 for the World's Fair in Paris."
    squad = tmp_path / "squad.json"
    squad.write_text(json.dumps({"data": [{"title": "Eiffel Tower", "paragraphs": [{"context": context, "qas": [
        {"id": "e1", "question": "when was the eiffel tower completed?", "answers": [{"text": "1889", "answer_start": context.index("1889")}]}]}]}]}))
    nowhere = QAExample("nowhere", "who painted the ceiling of the sistine chapel?", ("Michelangelo",))  # in none of the tiny index's passages
    start = tmp_path / "start"
    RagGenerator(GeneratorConfig(model=tiny_model("bart", tmp_path / "bart"), copy_only=True)).save(start)

    def gold_log_likelihood(folder) -> float:
        generator = load_generator(folder)
        generator.model.eval()
        ((question, passage, answer),) = squad_examples(load_squad(squad), window_words=120, seed=0)
        with torch.no_grad():
            return float(generator.answer_log_likelihood(question, [passage], torch.zeros(1), (answer,)))

    out = tmp_path / "rehearsed"
    config = TrainConfig(**{**settings(tiny_index, out, epochs=3).__dict__, "reader": "rag-sequence", "generator": str(start), "lr": 1e-3,
                            "rehearse_squad": str(squad), "rehearse_per_step": 2})
    report = train(config, [nowhere], progress=False)
    assert report.questions_used == 0  # the retrieved passages gave nothing to learn from ...
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert [entry["loss"] is not None for entry in log] == [True, True, True]  # ... the gold paragraph did
    assert gold_log_likelihood(out / "reader") > gold_log_likelihood(start) + 1.0
    with pytest.raises(RagError, match="no such SQuAD file"):
        train(TrainConfig(**{**config.__dict__, "out": str(tmp_path / "other"), "rehearse_squad": str(tmp_path / "missing.json")}), [nowhere], progress=False)
