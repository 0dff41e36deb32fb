"""A folder's tokenizer.json through the `tokenizers` library alone, with the slice of transformers'
tokenizer call that rag's inference uses (pairs, only_second truncation, padding, offsets, pad).

Why: transformers' tokenizer classes cost ~1.7 s of import at every `rag ask`; the Rust tokenizer
underneath them is the same `tokenizers.Tokenizer`, so ids, offsets and sequence ids are identical
(tests/test_bert.py compares them). Training and export keep transformers' tokenizers.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np


class Encoded(dict):
    """input_ids, token_type_ids, attention_mask (and offset_mapping) of a batch, plus sequence_ids(i)."""

    def __init__(self, data: dict, encodings):
        super().__init__(data)
        self.encodings = encodings

    def sequence_ids(self, i: int) -> list:
        return self.encodings[i].sequence_ids

    def to(self, device) -> "Encoded":
        """Tensors moved to `device` (return_tensors="pt"), as transformers' BatchEncoding.to."""
        return Encoded({k: v.to(device) for k, v in self.items()}, self.encodings)


class FastTokenizer:
    is_fast = True

    def __init__(self, folder: str | Path):
        from tokenizers import Tokenizer

        folder = Path(folder)
        self._tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()
        try:
            config = json.loads((folder / "tokenizer_config.json").read_text())
        except (OSError, ValueError):
            config = {}
        pad = config.get("pad_token") if isinstance(config.get("pad_token"), str) else "[PAD]"
        self.pad_token_id = self._tokenizer.token_to_id(pad) or 0
        limit = config.get("model_max_length")
        self.model_max_length = limit if isinstance(limit, int) and 0 < limit < 100_000 else 512

    def __call__(self, first, second=None, truncation=None, max_length: int | None = None, padding: bool = False,
                 return_offsets_mapping: bool = False, return_tensors: str | None = None, add_special_tokens: bool = True) -> Encoded:
        single = isinstance(first, str)
        firsts = [first] if single else list(first)
        seconds = None if second is None else ([second] if isinstance(second, str) else list(second))
        tok = self._tokenizer
        if truncation and max_length:
            strategy = truncation if isinstance(truncation, str) and truncation != "longest_first" else "longest_first"
            tok.enable_truncation(max_length, strategy=strategy)
        try:
            inputs = list(zip(firsts, seconds)) if seconds is not None else firsts
            encodings = tok.encode_batch(inputs, add_special_tokens=add_special_tokens)
        finally:
            tok.no_truncation()
        if padding:
            width = max((len(e.ids) for e in encodings), default=0)
            for e in encodings:
                e.pad(width, pad_id=self.pad_token_id, pad_token="[PAD]", direction="right")
        data = {"input_ids": [e.ids for e in encodings], "token_type_ids": [e.type_ids for e in encodings], "attention_mask": [e.attention_mask for e in encodings]}
        if return_offsets_mapping:
            data["offset_mapping"] = [e.offsets for e in encodings]
        if single:
            data = {k: v[0] for k, v in data.items()}
        return Encoded(_as_tensors(data, return_tensors), encodings)

    def pad(self, features: list[dict], return_tensors: str = "pt") -> dict:
        """Right-pad a list of {input_ids, attention_mask, token_type_ids} rows to their longest."""
        width = max(len(f["input_ids"]) for f in features)
        fill = {"input_ids": self.pad_token_id, "attention_mask": 0, "token_type_ids": 0}
        data = {k: [list(f[k]) + [fill[k]] * (width - len(f[k])) for f in features] for k in features[0]}
        return _as_tensors(data, return_tensors)

    def tokenize(self, text: str) -> list[str]:
        return self._tokenizer.encode(text, add_special_tokens=False).tokens


def cut_to_tokens(tokenizer, text: str, budget: int) -> str:
    """`text` cut after its first `budget` tokens (at a token's end; at least one), unchanged when it fits.

    `tokenizer` is any with offsets: a FastTokenizer or a transformers fast tokenizer. The span reader
    cuts its question with it, the generator its passage text.
    """
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    if len(enc["input_ids"]) <= budget:
        return text
    return text[: enc["offset_mapping"][max(budget, 1) - 1][1]]


def _as_tensors(data: dict, kind: str | None) -> dict:
    if kind is None:
        return data
    arrays = {k: np.asarray(v, dtype=np.int64) for k, v in data.items()}
    if kind == "np":
        return arrays
    import torch

    return {k: torch.from_numpy(v) for k, v in arrays.items()}
