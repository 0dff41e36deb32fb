"""Sentence-transformers folders of the common layout (Transformer -> mean pooling -> normalize), run
by transformers alone: the same vectors without importing sentence-transformers, whose import
(scikit-learn and its own backends) was most of `rag ask`'s cold start.

Used where an encoder only encodes (ask, search, the demo, eval, index builds); training loads the
sentence-transformers model (rag.encoders.SentenceTransformerEncoder), whose modules it updates.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from rag.precision import autocast, autocast_dtype
from rag.types import Passage


def is_mean_pool_folder(folder: str | Path) -> bool:
    """True for a local sentence-transformers folder that is exactly Transformer, mean Pooling, Normalize."""
    folder = Path(folder)
    try:
        modules = json.loads((folder / "modules.json").read_text())
        pooling = json.loads((folder / "1_Pooling" / "config.json").read_text())
    except (OSError, ValueError):
        return False
    kinds = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in modules] if isinstance(modules, list) else []
    paths = [m.get("path") for m in modules] if isinstance(modules, list) else []
    mean = pooling.get("pooling_mode") == "mean" or (
        pooling.get("pooling_mode_mean_tokens") is True
        and not any(pooling.get(f"pooling_mode_{other}") for other in ("cls_token", "max_tokens", "mean_sqrt_len_tokens", "weightedmean_tokens", "lasttoken")))
    return kinds == ["Transformer", "Pooling", "Normalize"] and paths[:2] == ["", "1_Pooling"] and mean and pooling.get("include_prompt", True) is True


class MeanPoolEncoder:
    """Encoder protocol (rag.encoders.Encoder) over a mean-pooling sentence-transformers folder."""

    def __init__(self, config, folder: str, passage_text):
        import torch

        self.config, self.spec, self.passage_text = config, config.spec, passage_text
        self.device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.tokenizer, self.model = _tokenizer_and_model(folder)  # weights ship in fp16: computed in fp32 (or bf16)
        self.max_length = min(config.max_length, _max_seq_length(Path(folder), self.tokenizer))
        self.dtype = autocast_dtype(config.precision, self.device)  # None: fp32
        # rag.bert's model on a CPU runs wholly in bf16 (weights too): autocast's casts at every op cost
        # more than they save there (bf16 weights 1.2x autocast on 400 Wikipedia passages, 2 AMX cores; cosine to fp32 >= 0.9999)
        self.bf16_weights = self.dtype is not None and self.device == "cpu" and hasattr(self.model, "hidden")
        self.model = self.model.to(self.device, self.dtype if self.bf16_weights else None)
        self.dim, self.normalized = self.model.config.hidden_size, True
        self._torch = torch

    def _encode(self, texts: list[str]) -> np.ndarray:
        """Vectors in `texts` order, computed in batches of texts of equal (or near) token length, so
        little padding is computed and most batches need no attention mask at all."""
        torch = self._torch
        ids = self.tokenizer(list(texts), truncation=True, max_length=self.max_length)["input_ids"]
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
        out = np.zeros((len(ids), self.dim), np.float32)
        pad = getattr(self.tokenizer, "pad_token_id", 0) or 0
        with torch.inference_mode(), autocast(self.device, None if self.bf16_weights else self.dtype):
            for start in range(0, len(order), self.config.batch_size):
                rows = order[start : start + self.config.batch_size]
                width = len(ids[rows[0]])
                input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
                mask = torch.zeros((len(rows), width), dtype=torch.long)
                for j, i in enumerate(rows):
                    input_ids[j, : len(ids[i])] = torch.tensor(ids[i])
                    mask[j, : len(ids[i])] = 1
                input_ids, mask = input_ids.to(self.device), mask.to(self.device)
                hidden = self.model(input_ids=input_ids, attention_mask=mask, token_type_ids=torch.zeros_like(input_ids)).last_hidden_state.float()
                weights = mask.unsqueeze(-1).float()
                pooled = (hidden * weights).sum(1) / weights.sum(1).clamp(min=1e-9)
                out[rows] = torch.nn.functional.normalize(pooled, dim=-1).cpu().numpy()
        return out

    def encode_queries(self, questions: list[str]) -> np.ndarray:
        return self._encode(list(questions))

    def encode_passages(self, passages: list[Passage]) -> np.ndarray:
        return self._encode([self.passage_text(p) for p in passages])


def _tokenizer_and_model(folder: str):
    """rag.bert's plain-torch BERT and the bare tokenizers library where they read the folder exactly, else transformers."""
    from rag.bert import is_bert_folder, load_bert

    if is_bert_folder(folder):
        from rag.fast_tokenizer import FastTokenizer

        return FastTokenizer(folder), load_bert(folder)[0]
    import torch
    from transformers import AutoModel, AutoTokenizer

    return AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder, dtype=torch.float32).eval()


def _max_seq_length(folder: Path, tokenizer) -> int:
    """sentence_bert_config.json's max_seq_length, else the tokenizer's model_max_length, as sentence-transformers reads them."""
    try:
        found = json.loads((folder / "sentence_bert_config.json").read_text()).get("max_seq_length")
    except (OSError, ValueError):
        found = None
    if isinstance(found, int) and found > 0:
        return found
    limit = getattr(tokenizer, "model_max_length", None)
    return limit if isinstance(limit, int) and 0 < limit < 100_000 else 512
