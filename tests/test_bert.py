"""The inference path without transformers (rag/bert.py, rag/fast_tokenizer.py, rag/mean_pool_encoder.py)
computes what transformers and sentence-transformers compute, on the shipped weights, and `rag ask`'s
load path really imports neither (that import was most of its cold start)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from rag.paths import SHIPPED_READER, SHIPPED_RETRIEVER_FOLDER, models_dir

ROOT = Path(__file__).resolve().parents[1]
READER = models_dir() / SHIPPED_READER
RETRIEVER = models_dir() / SHIPPED_RETRIEVER_FOLDER
PAIRS = [("who wrote dracula?", "Dracula [SEP] Dracula is an 1897 Gothic horror novel by Irish author Bram Stoker. " * 3),
         ("which element has the atomic number 1", "Hydrogen [SEP] Hydrogen is the chemical element with the symbol H and atomic number 1."),
         ("a question " * 200, "short")]


def test_fast_tokenizer_matches_transformers_on_pairs_truncation_offsets_and_padding():
    from transformers import AutoTokenizer

    from rag.fast_tokenizer import FastTokenizer

    ours, theirs = FastTokenizer(READER), AutoTokenizer.from_pretrained(str(READER))
    firsts, seconds = [q[:300] for q, _ in PAIRS], [s for _, s in PAIRS]
    kwargs = dict(truncation="only_second", max_length=64, padding=True, return_offsets_mapping=True, return_tensors="np")
    a, b = ours(firsts[:2], seconds[:2], **kwargs), theirs(firsts[:2], seconds[:2], **kwargs)
    for key in ("input_ids", "token_type_ids", "attention_mask", "offset_mapping"):
        np.testing.assert_array_equal(a[key], b[key])
    assert a.sequence_ids(0) == b.sequence_ids(0)
    single_a = ours(firsts[2], add_special_tokens=False, return_offsets_mapping=True)
    single_b = theirs(firsts[2], add_special_tokens=False, return_offsets_mapping=True)
    assert single_a["input_ids"] == single_b["input_ids"] and [tuple(o) for o in single_a["offset_mapping"]] == [tuple(o) for o in single_b["offset_mapping"]]
    rows = [{k: ours(q, s)[k] for k in ("input_ids", "attention_mask", "token_type_ids")} for q, s in PAIRS[:2]]
    padded_a, padded_b = ours.pad(rows), theirs.pad(rows, return_tensors="pt")
    for key in padded_a:
        assert padded_a[key].tolist() == padded_b[key].tolist()


def test_plain_torch_bert_gives_transformers_logits_on_the_shipped_reader():
    import torch
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    from rag.bert import is_bert_folder, load_bert

    assert is_bert_folder(READER)
    tokenizer = AutoTokenizer.from_pretrained(str(READER))
    batch = tokenizer([q[:200] for q, _ in PAIRS[:2]], [s for _, s in PAIRS[:2]], truncation="only_second", max_length=96, padding=True, return_tensors="pt")
    ours = load_bert(READER, qa_head=True)[0]
    theirs = AutoModelForQuestionAnswering.from_pretrained(str(READER), attn_implementation="eager").float().eval()
    with torch.inference_mode():
        a, b = ours(**batch), theirs(**batch, output_hidden_states=True)
    mask = batch["attention_mask"].bool()
    for x, y in ((a.start_logits, b.start_logits), (a.end_logits, b.end_logits)):
        assert torch.allclose(x[mask], y[mask], atol=1e-4)
    assert torch.allclose(a.hidden_states[-1][mask], b.hidden_states[-1][mask], atol=1e-4)


@pytest.mark.parametrize("folder", ["default", str(RETRIEVER)])
def test_mean_pool_encoder_gives_sentence_transformers_vectors(folder, default_passages):
    from rag.encoders import EncoderConfig, SentenceTransformerEncoder, one_tower
    from rag.mean_pool_encoder import MeanPoolEncoder

    fast = one_tower(EncoderConfig(spec=folder, precision="fp32", inference_only=True))
    assert isinstance(fast, MeanPoolEncoder)
    slow = SentenceTransformerEncoder(EncoderConfig(spec=folder, precision="fp32"))
    questions = ["who wrote dracula", "which element has the atomic number 1"]
    assert np.allclose(fast.encode_queries(questions), slow.encode_queries(questions), atol=1e-5)
    cos = (fast.encode_passages(default_passages[:16]) * slow.encode_passages(default_passages[:16])).sum(1)
    assert cos.min() > 0.99999


def test_span_reader_answers_the_same_with_and_without_transformers(small_index):
    from rag.read import ReaderConfig, SpanReader

    question = "who wrote don quixote"
    encoder = small_index.load_encoder()
    hits = small_index.search(encoder.encode_queries([question]), 10)
    fast = SpanReader(ReaderConfig(model=str(READER), precision="fp32", inference_only=True)).read([question], hits)[0]
    slow = SpanReader(ReaderConfig(model=str(READER), precision="fp32")).read([question], hits)[0]
    assert fast.text == slow.text and abs(fast.score - slow.score) < 1e-4
    assert [s.start for s in fast.spans] == [s.start for s in slow.spans]


def test_ask_load_path_imports_neither_transformers_nor_sentence_transformers(small_index):
    code = ("import sys, rag.cli\nfrom rag.pipeline import PipelineConfig, load_pipeline\n"
            f"p = load_pipeline(PipelineConfig({str(small_index.path)!r}))\n"
            "print(p.answer(['who wrote don quixote'])[0].answer.text)\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'transformers', 'sentence_transformers', 'sklearn'}))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"
