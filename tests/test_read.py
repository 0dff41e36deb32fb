"""The span reader: real MiniLM BERT, hand-made passages, brute-force oracles for its marginals."""
from __future__ import annotations

import math
from collections import defaultdict

import pytest

from rag.metrics import normalize_answer
from rag.read import ReaderConfig, SpanReader, answer_span_mask
from rag.types import Hit, Passage

FRANCE = Passage("fr", "France", "France is a country in Western Europe. Its capital is Paris, on the Seine.")
SEINE = Passage("se", "Seine", "The Seine flows through Paris before reaching the English Channel at Le Havre.")
HAMLET = Passage("ha", "Hamlet", "Hamlet is a tragedy written by William Shakespeare around 1600.")
QUESTION = "what is the capital of france?"


@pytest.fixture(scope="module")
def reader():
    import torch

    torch.manual_seed(0)  # the span head of the untrained reader is random
    # fp32: these tests train its weights directly and compare scores to 1e-4 (the bf16 path is tested in test_train_reader)
    return SpanReader(ReaderConfig(max_length=64, max_answer_tokens=6, spans_per_passage=4, precision="fp32"))


def hits_of(passages, scores):
    return [Hit(p, s, i) for i, (p, s) in enumerate(zip(passages, scores), 1)]


def test_tokenizer_reads_real_words(reader):
    ids = reader.tokenizer("who wrote hamlet?")["input_ids"]
    assert reader.tokenizer.unk_token_id not in ids and len(ids) == 6


def test_token_offsets_point_into_passage_text(reader):
    passages = [FRANCE, HAMLET]
    inputs = reader.encode(QUESTION, passages)
    for k, p in enumerate(passages):
        ids = inputs.features["input_ids"][k].tolist()
        for t, (s, e) in enumerate(inputs.token_chars[k]):
            if s >= 0:  # a passage token: its characters are the text it was made from
                assert p.text[s:e].lower() == reader.tokenizer.convert_ids_to_tokens(ids[t]).removeprefix("##")
        # the title and the question are never span candidates; spans never cut a word
        assert not inputs.starts[k][: ids.index(reader.tokenizer.sep_token_id) + 3].any()
        for t in inputs.starts[k].nonzero().flatten().tolist():
            s = inputs.token_chars[k, t, 0]
            assert s == 0 or not (p.text[s - 1].isalnum() and p.text[s].isalnum())
        for t in inputs.ends[k].nonzero().flatten().tolist():
            e = inputs.token_chars[k, t, 1]
            assert e == len(p.text) or not (p.text[e - 1].isalnum() and p.text[e].isalnum())
    word = reader.encode("q", [Passage("w", "", "Fiona Maddocks wrote")])  # "maddocks" is several word pieces
    assert int(word.starts.sum()) == int(word.ends.sum()) == 3


def test_answer_matches_are_whole_words_at_exact_offsets(reader):
    passages = [FRANCE, SEINE, HAMLET]
    inputs = reader.encode(QUESTION, passages)
    mask = answer_span_mask(inputs.token_chars, passages, ("paris",), max_answer_tokens=6)
    found = {(k, int(inputs.token_chars[k, s, 0]), int(inputs.token_chars[k, e, 1])) for k, s, e in zip(*mask.nonzero())}
    assert found == {(0, FRANCE.text.index("Paris"), FRANCE.text.index("Paris") + 5), (1, SEINE.text.index("Paris"), SEINE.text.index("Paris") + 5)}
    two_words = answer_span_mask(inputs.token_chars, passages, ("William Shakespeare", "Shakes"), max_answer_tokens=6)
    (k, s, e), = zip(*two_words.nonzero())
    assert HAMLET.text[inputs.token_chars[k, s, 0] : inputs.token_chars[k, e, 1]] == "William Shakespeare"


def brute_force_answer(reader, question, hits, answerability_weight=0.0):
    """The same answer by explicit loops: one passage at a time, every allowed span enumerated;
    `answerability_weight` x the passage's log-sum of raw span scores joins its p(z|q) logit."""
    import torch

    cfg = reader.config
    selects, per_passage, log_zs = [], [], []
    with torch.no_grad():
        for hit in hits:
            inputs = reader.encode(question, [hit.passage])
            start, end, select = reader.model(inputs.features)
            chars, starts, ends = inputs.token_chars[0], inputs.starts[0].tolist(), inputs.ends[0].tolist()
            spans = [(s, e) for s in range(len(chars)) for e in range(s, min(len(chars), s + cfg.max_answer_tokens)) if starts[s] and ends[e]]
            logits = [float(start[0, s] + end[0, e]) for s, e in spans]
            z = math.log(sum(math.exp(x) for x in logits))
            log_zs.append(z)
            ranked = sorted(zip(logits, spans), reverse=True)[: cfg.spans_per_passage]
            per_passage.append([(math.exp(x - z), hit.passage.text[chars[s, 0] : chars[e, 1]]) for x, (s, e) in ranked])
            selects.append(float(select[0]))
    logits = [cfg.score_scale * h.score + sel + answerability_weight * z for h, sel, z in zip(hits, selects, log_zs)]
    norm = sum(math.exp(x) for x in logits)
    totals, raw, weighted = defaultdict(float), 0.0, 0.0
    for logit, spans, hit in zip(logits, per_passage, hits):
        for p_span, text in ((p_span, text) for p_span, text in spans if normalize_answer(text)):  # "the" is no answer
            mass = math.exp(logit) / norm * p_span
            bonus = math.exp(cfg.title_bonus) if normalize_answer(text) == normalize_answer(hit.passage.title.split(" (")[0]) else 1.0
            totals[normalize_answer(text)] += mass * bonus
            raw, weighted = raw + mass, weighted + mass * bonus
    text, total = max(totals.items(), key=lambda kv: kv[1])
    return text, total * raw / weighted  # the bonus moves mass between answers, never adds any


def test_answer_probability_is_marginalized_over_passages(reader):
    hits = hits_of([FRANCE, SEINE, HAMLET], [0.61, 0.55, 0.12])
    answer = reader.read([QUESTION], [hits])[0]
    text, score = brute_force_answer(reader, QUESTION, hits)
    assert normalize_answer(answer.text) == text
    assert answer.score == pytest.approx(score, rel=1e-4)
    for span in answer.spans:  # every span reads the answer, at exact offsets of its passage
        passage = next(h.passage for h in answer.evidence if h.passage.id == span.passage_id)
        assert normalize_answer(passage.text[span.start : span.end]) == text


def test_answerability_weight_adds_each_passages_span_log_sum_to_its_prior(reader):
    import copy
    from dataclasses import replace

    hits = hits_of([FRANCE, SEINE, HAMLET], [0.61, 0.55, 0.12])
    plain = reader.read([QUESTION], [hits])[0]
    weighted = copy.copy(reader)  # the same loaded model, another config; the shared fixture keeps its own
    weighted.config = replace(reader.config, answerability_weight=1.0)
    answer = weighted.read([QUESTION], [hits])[0]
    text, score = brute_force_answer(reader, QUESTION, hits, answerability_weight=1.0)
    assert normalize_answer(answer.text) == text and answer.score == pytest.approx(score, rel=1e-4)
    assert answer.score != pytest.approx(plain.score, rel=1e-3)  # the knob changes p(z|q)


@pytest.mark.parametrize("title_bonus", [0.0, 3.0, 40.0])
def test_title_bonus_moves_mass_to_an_answer_that_is_its_passages_title(reader, title_bonus):
    """Every span a candidate (spans_per_passage large): with a bonus of 40 the answer is a passage's own
    title ("France", "Seine", "Hamlet" all open their passages; "Mercury (planet)" would answer "Mercury"),
    and at every bonus the probability is the oracle's, the masses rescaled to the sum they had."""
    import copy
    from dataclasses import replace

    every = copy.copy(reader)
    every.config = replace(reader.config, spans_per_passage=10_000, title_bonus=title_bonus)
    hits = hits_of([FRANCE, SEINE, Passage("he", "Hamlet (play)", HAMLET.text)], [0.61, 0.55, 0.12])
    answer = every.read([QUESTION], [hits])[0]
    text, score = brute_force_answer(every, QUESTION, hits)
    assert normalize_answer(answer.text) == text and answer.score == pytest.approx(score, rel=1e-4) and 0 < answer.score <= 1
    if title_bonus == 40.0:
        assert text in {"france", "seine", "hamlet"}


def test_trained_reader_finds_the_answer_span_and_round_trips(reader, tmp_path):
    from dataclasses import replace

    import torch

    from rag.readers import ReaderOptions, load_reader

    hits = hits_of([SEINE, HAMLET, FRANCE], [0.5, 0.1, 0.5])
    scores = torch.tensor([h.score for h in hits])
    reader.model.train()
    optimizer = torch.optim.Adam(reader.model.parameters(), lr=1e-4)
    for _ in range(8):
        loss = -reader.answer_log_likelihood(QUESTION, [FRANCE, HAMLET], scores[1:], ("Paris",))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    reader.model.eval()
    assert reader.answer_log_likelihood(QUESTION, [HAMLET], scores[:1], ("Paris",)) is None  # no passage holds it: no signal

    answer = reader.read([QUESTION], [hits])[0]
    assert answer.text == "Paris" and answer.score > 0.3
    assert {h.passage.id for h in answer.evidence} <= {"fr", "se"}
    at_fr, at_se = FRANCE.text.index("Paris"), SEINE.text.index("Paris")
    assert answer.spans and {(s.passage_id, s.start, s.end) for s in answer.spans} <= {("fr", at_fr, at_fr + 5), ("se", at_se, at_se + 5)}

    reader.save(tmp_path / "reader")
    again = load_reader(str(tmp_path / "reader"), ReaderOptions(precision="fp32"))
    again.config = replace(again.config, spans_per_passage=reader.config.spans_per_passage)  # the candidates the title bonus rescales over
    reloaded = again.read([QUESTION], [hits])[0]
    assert (reloaded.text, reloaded.spans) == (answer.text, answer.spans)
    assert reloaded.score == pytest.approx(answer.score, rel=1e-4)


def test_a_question_longer_than_the_window_is_cut_not_an_error(reader):
    """max_length 64: a 100-word question leaves the passage half the window instead of raising."""
    question = "who " * 100 + QUESTION
    [answer] = reader.read([question], [hits_of([FRANCE, HAMLET], [0.9, 0.1])])
    assert answer.spans and answer.evidence
    inputs = reader.encode(question, [FRANCE])
    assert inputs.starts[0].any()  # passage tokens are still there to answer from
