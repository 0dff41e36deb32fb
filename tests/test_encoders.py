"""Encoders behind one interface: the offline MiniLM, and DPR's two towers on tiny random DPR models."""
from __future__ import annotations

import json

import numpy as np
import pytest

from rag.build import BuildConfig, build_index
from rag.encoders import ENCODERS, DPREncoder, EncoderConfig, SentenceTransformerEncoder, TwoTowerEncoder, default_model_path, load_encoder
from rag.types import Passage, RagError


@pytest.fixture(scope="module")
def dpr_spec(tmp_path_factory) -> str:
    """dpr:QUESTION,CONTEXT: two ~0.1M-parameter random DPR towers with the MiniLM WordPiece vocabulary."""
    from transformers import AutoTokenizer, DPRConfig, DPRContextEncoder, DPRQuestionEncoder

    tokenizer = AutoTokenizer.from_pretrained(default_model_path())
    config = DPRConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64)
    folders = []
    for name, cls in (("question", DPRQuestionEncoder), ("context", DPRContextEncoder)):
        folder = tmp_path_factory.mktemp(name)
        cls(config).save_pretrained(folder)
        tokenizer.save_pretrained(folder)
        folders.append(str(folder))
    return "dpr:" + ",".join(folders)


def test_the_spec_prefix_chooses_the_backend(dpr_spec):
    assert isinstance(load_encoder("default"), SentenceTransformerEncoder)
    assert isinstance(load_encoder(dpr_spec), DPREncoder) and set(ENCODERS) == {"dpr:", ""}
    assert isinstance(load_encoder("rag-retriever"), TwoTowerEncoder)  # the shipped retriever, models/retriever


def test_dpr_encodes_questions_and_title_text_pairs_with_its_two_towers(dpr_spec):
    import torch

    encoder = load_encoder(EncoderConfig(spec=dpr_spec, device="cpu", precision="fp32"))  # compared with fp32 towers below
    passages = [Passage("a", "Dune", "Dune is a 1965 novel by Frank Herbert."), Passage("b", "Paris", "Paris is the capital of France.")]
    q, d = encoder.encode_queries(["who wrote dune"]), encoder.encode_passages(passages)
    assert q.shape == (1, 32) and d.shape == (2, 32) and q.dtype == np.float32 and not encoder.normalized
    with torch.inference_mode():  # the context tower reads "title [SEP] text" as a sentence pair
        batch = encoder.ctx_tokenizer(["Dune"], ["Dune is a 1965 novel by Frank Herbert."], return_tensors="pt")
        expected = encoder.ctx_model(**batch).pooler_output.numpy()
        question_side = encoder.q_model(**encoder.q_tokenizer(["Dune"], ["Dune is a 1965 novel by Frank Herbert."], return_tensors="pt")).pooler_output.numpy()
    assert np.allclose(d[0], expected[0], atol=1e-5) and not np.allclose(d[0], question_side[0], atol=1e-3)  # two towers, not one


def test_an_index_built_with_dpr_records_and_checks_its_encoder(dpr_spec, tmp_path, default_passages):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps({"id": p.id, "title": p.title, "text": p.text}) + "\n" for p in default_passages[:20]))
    folder = build_index(BuildConfig(corpus=str(corpus), encoder=EncoderConfig(spec=dpr_spec)), tmp_path / "idx", progress=False)
    assert folder.manifest.encoder == dpr_spec and folder.manifest.dim == 32 and not folder.manifest.normalized
    hits = folder.search(folder.load_encoder().encode_queries(["who wrote dune"]), 3)[0]
    assert len(hits) == 3 and hits[0].score >= hits[-1].score
    with pytest.raises(RagError, match="was built with encoder"):
        folder.load_encoder(EncoderConfig(spec="default"))


@pytest.mark.parametrize("spec", ["dpr:only-one", "dpr:a,", "dpr:,b"])
def test_a_malformed_dpr_spec_is_a_clear_error(spec):
    with pytest.raises(RagError, match="dpr:QUESTION_MODEL,CONTEXT_MODEL"):
        load_encoder(spec)


def test_bf16_autocast_encodes_like_fp32(default_passages):
    """The fast path (bf16 autocast, auto on AVX512-BF16/AMX CPUs) gives the same vectors to cosine >= 0.9999."""
    fp32, bf16 = load_encoder(EncoderConfig(precision="fp32")), load_encoder(EncoderConfig(precision="bf16"))
    assert fp32.dtype is None and str(bf16.dtype) == "torch.bfloat16"
    a, b = fp32.encode_passages(default_passages[:64]), bf16.encode_passages(default_passages[:64])
    assert a.dtype == b.dtype == np.float32 and np.min(np.sum(a * b, axis=1)) >= 0.9999
    q32, q16 = fp32.encode_queries(["who wrote dune"]), bf16.encode_queries(["who wrote dune"])
    assert float(q32[0] @ q16[0]) >= 0.9999


def test_an_index_records_the_precision_of_its_vectors(tmp_path, default_passages):
    corpus = tmp_path / "c.jsonl"
    corpus.write_text("".join(json.dumps({"id": p.id, "title": p.title, "text": p.text}) + "\n" for p in default_passages[:12]))
    folder = build_index(BuildConfig(corpus=str(corpus), encoder=EncoderConfig(precision="bf16")), tmp_path / "idx", progress=False)
    assert folder.manifest.precision == "bf16"


def test_one_thread_setting_for_torch_and_faiss(monkeypatch):
    import faiss
    import torch

    from rag.precision import set_threads

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    before = torch.get_num_threads()
    try:
        assert set_threads(None) == 1 and torch.get_num_threads() == 1  # the user's OMP_NUM_THREADS is the default
        assert set_threads(2) == 2 and torch.get_num_threads() == 2 and faiss.omp_get_max_threads() == 2
        with pytest.raises(RagError):
            set_threads(0)
    finally:
        torch.set_num_threads(before)


def test_int8_onnx_encoder_is_the_same_model(default_passages):
    fp32, int8 = load_encoder(EncoderConfig(precision="fp32")), load_encoder(EncoderConfig(precision="int8"))
    a, b = fp32.encode_passages(default_passages[:32]), int8.encode_passages(default_passages[:32])
    assert int8.dtype == "int8" and b.shape == a.shape and np.min(np.sum(a * b, axis=1)) >= 0.995  # int8 weights: close, not equal
    with pytest.raises(RagError, match="default encoder only"):
        load_encoder(EncoderConfig(spec="sentence-transformers/all-mpnet-base-v2", precision="int8"))
