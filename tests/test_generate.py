"""The RAG generator on tiny random BART and T5 (MiniLM vocabulary): marginals against brute force."""
from __future__ import annotations

import math

import pytest

from rag.generate import GeneratorConfig, RagGenerator
from rag.types import Hit, Passage

PASSAGES = [
    Passage("fr", "France", "France is a country in Western Europe. Its capital is Paris."),
    Passage("se", "Seine", "The Seine flows through Paris before reaching the English Channel."),
    Passage("ha", "Hamlet", "Hamlet is a tragedy written by William Shakespeare around 1600 and often staged."),
]
SCORES = [0.61, 0.55, 0.12]
QUESTION = "what is the capital of france?"


def tiny_model(kind: str, folder):
    """A ~2M-parameter random BART or T5 with the MiniLM WordPiece vocabulary, saved like a hub model."""
    import torch
    from transformers import AutoTokenizer, BartConfig, BartForConditionalGeneration, T5Config, T5ForConditionalGeneration

    from rag.encoders import default_model_path

    torch.manual_seed(0)
    tokenizer = AutoTokenizer.from_pretrained(default_model_path())
    if kind == "bart":
        config = BartConfig(vocab_size=tokenizer.vocab_size, d_model=64, encoder_layers=2, decoder_layers=2, encoder_attention_heads=2, decoder_attention_heads=2,
                            encoder_ffn_dim=128, decoder_ffn_dim=128, max_position_embeddings=256, pad_token_id=0, bos_token_id=101, eos_token_id=102, decoder_start_token_id=101)
        model = BartForConditionalGeneration(config)
    else:
        config = T5Config(vocab_size=tokenizer.vocab_size, d_model=64, d_kv=32, d_ff=128, num_layers=2, num_decoder_layers=2, num_heads=2, pad_token_id=0, eos_token_id=102, decoder_start_token_id=0)
        model = T5ForConditionalGeneration(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture(scope="module", params=["bart", "t5"])
def model_dir(request, tmp_path_factory):
    return tiny_model(request.param, tmp_path_factory.mktemp(request.param))


def hits():
    return [Hit(p, s, i) for i, (p, s) in enumerate(zip(PASSAGES, SCORES), 1)]


def brute_force_log_likelihood(generator: RagGenerator, target: list[int], variant: str) -> float:
    """One passage at a time, one token at a time, in plain floats."""
    import torch

    prior = [generator.config.score_scale * s for s in SCORES]
    log_z = math.log(sum(math.exp(x) for x in prior))
    prior = [x - log_z for x in prior]
    per_passage = []  # [K][T] log p(y_t | x, z, y_<t)
    with torch.no_grad():
        for p in PASSAGES:
            inputs = generator.encode(QUESTION, [p])
            decoder_input = torch.tensor([[generator.start_id] + target[:-1]])
            logits = generator.model(**inputs, decoder_input_ids=decoder_input).logits[0].log_softmax(-1)
            per_passage.append([float(logits[t, target[t]]) for t in range(len(target))])
    if variant == "sequence":
        return math.log(sum(math.exp(prior[z] + sum(per_passage[z])) for z in range(len(PASSAGES))))
    return sum(math.log(sum(math.exp(prior[z] + per_passage[z][t]) for z in range(len(PASSAGES)))) for t in range(len(target)))


@pytest.mark.parametrize("variant", ["sequence", "token"])
def test_marginal_log_likelihood_equals_brute_force(model_dir, variant):
    import torch

    generator = RagGenerator(GeneratorConfig(model=model_dir, variant=variant))
    ll = generator.answer_log_likelihood(QUESTION, PASSAGES, torch.tensor(SCORES), ("Paris",))
    target = generator.target_ids(["Paris"])[0]
    assert generator.tokenizer.unk_token_id not in target
    assert float(ll.detach()) == pytest.approx(brute_force_log_likelihood(generator, target, variant), abs=1e-4)


def test_a_copy_only_generator_trains_on_an_answer_its_passages_hold(model_dir):
    import torch

    copying = RagGenerator(GeneratorConfig(model=model_dir, copy_only=True))
    scores = torch.tensor(SCORES)
    # "Paris, France" is in no passage: a copying generator's target is "Paris", the answer it can copy
    held = copying.answer_log_likelihood(QUESTION, PASSAGES, scores, ("Paris, France", "Paris"))
    assert float(held.detach()) == pytest.approx(float(copying.answer_log_likelihood(QUESTION, PASSAGES, scores, ("Paris",)).detach()), abs=1e-5)
    assert copying.answer_log_likelihood(QUESTION, PASSAGES[2:], scores[2:], ("Paris",)) is None  # Hamlet holds no answer: no signal
    free = RagGenerator.from_model(GeneratorConfig(model=model_dir), copying.tokenizer, copying.model)
    assert free.answer_log_likelihood(QUESTION, PASSAGES[2:], scores[2:], ("Paris",)) is not None  # RAG's own rule: the first answer, always


@pytest.mark.parametrize("variant,decoding", [("sequence", "thorough"), ("sequence", "fast"), ("token", "thorough")])
def test_decoding_scores_are_the_marginal_of_the_decoded_answer(model_dir, variant, decoding):
    import torch

    # fp32 reading: the read() score is compared with the fp32 brute force at 1e-4 (bf16 reading differs by ~1e-3)
    generator = RagGenerator(GeneratorConfig(model=model_dir, variant=variant, decoding=decoding, max_answer_tokens=5, num_beams=2, precision="fp32"))
    with torch.no_grad():
        ids, log_p, posterior = generator.generate_ids(QUESTION, hits())
        target = list(ids) + [generator.eos_id]
        full = float(brute_force_log_likelihood(generator, target, variant)) if len(target) <= 6 else None
    if variant == "token" or decoding == "thorough":
        assert float(log_p) == pytest.approx(full, abs=1e-4)
    else:  # fast: only the passages whose beam produced the answer count, so at most the thorough marginal
        assert float(log_p) <= full + 1e-4
    assert float(posterior.sum()) == pytest.approx(1.0, abs=1e-5)
    answer = generator.read([QUESTION], [hits()])[0]
    assert answer.score == pytest.approx(math.exp(float(log_p)), rel=1e-4) and len(answer.evidence) == 3


def test_training_lowers_the_loss_and_reaches_the_retrieval_scores(model_dir, tmp_path):
    import torch

    from rag.readers import load_reader

    generator = RagGenerator(GeneratorConfig(model=model_dir, variant="token", max_answer_tokens=4, num_beams=2))
    scores = torch.tensor(SCORES, requires_grad=True)
    optimizer = torch.optim.Adam(generator.model.parameters(), lr=3e-3)
    generator.model.train()
    losses = []
    for _ in range(15):
        loss = -generator.answer_log_likelihood(QUESTION, PASSAGES, scores, ("Paris",))
        optimizer.zero_grad()
        scores.grad = None
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    generator.model.eval()
    assert losses[-1] < losses[0] - 1.0
    assert scores.grad is not None and float(scores.grad.abs().sum()) > 0  # the loss reaches p(z|q), hence the query encoder

    assert generator.read([QUESTION], [hits()])[0].text == "Paris"  # memorized; uncased "paris", written as the passage writes it
    generator.save(tmp_path / "gen")
    again = load_reader(str(tmp_path / "gen"))
    assert isinstance(again, RagGenerator) and again.config.variant == "token"
    assert again.read([QUESTION], [hits()])[0] == generator.read([QUESTION], [hits()])[0]
