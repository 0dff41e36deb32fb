"""BERT for inference in plain torch, loading transformers' BERT folders (config.json + model.safetensors).

Why not transformers: importing its modeling code (torch._dynamo, torch.distributed.tensor, its loss
zoo) took ~2.6 s of `rag ask`'s ~7 s cold start here, for a 6-layer encoder that is forty lines of
torch. Outputs equal transformers' BertModel / BertForQuestionAnswering (tests/test_bert.py checks
it on the shipped weights). Training and export keep using transformers, which owns the weights'
format; only folders this module can read exactly (`is_bert_folder`) are loaded here.
"""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

SUPPORTED = {"model_type": "bert", "hidden_act": "gelu", "position_embedding_type": "absolute"}


def is_bert_folder(folder: str | Path) -> bool:
    """A local BERT folder (absolute positions, exact GELU) with safetensors weights and a tokenizer.json."""
    folder = Path(folder)
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return False
    plain = all(config.get(key, value) == value for key, value in SUPPORTED.items()) and not config.get("is_decoder") and not config.get("add_cross_attention")
    return plain and (folder / "model.safetensors").exists() and (folder / "tokenizer.json").exists()


def load_bert(folder: str | Path, qa_head: bool = False, dtype=None):
    """(BertEncoder, config dict) from `folder`, in fp32 (or `dtype`), eval mode; `qa_head`: with the span head."""
    import torch
    from safetensors.torch import load_file

    folder = Path(folder)
    config = json.loads((folder / "config.json").read_text())
    weights = {k.removeprefix("bert."): v for k, v in load_file(str(folder / "model.safetensors")).items()}
    model = _module(torch)(config, qa_head)
    wanted = model.state_dict()
    missing = [k for k in wanted if k not in weights]
    if missing:
        raise KeyError(f"{folder / 'model.safetensors'} lacks {missing[:3]}")
    model.load_state_dict({k: weights[k].to(dtype or torch.float32) for k in wanted})
    model.config = SimpleNamespace(**config)  # as transformers' models carry it (rag.read reads hidden_size)
    return model.to(dtype or torch.float32).eval(), config


def _layer(torch):
    """One transformer layer, its parameters named as in transformers' BertLayer."""
    nn, F = torch.nn, torch.nn.functional

    class Layer(nn.Module):
        def __init__(self, c):
            super().__init__()
            h, eps = c["hidden_size"], c.get("layer_norm_eps", 1e-12)
            self.heads = c["num_attention_heads"]
            self.attention = nn.Module()
            self.attention.self = nn.Module()
            for name in ("query", "key", "value"):
                setattr(self.attention.self, name, nn.Linear(h, h))
            self.attention.output = nn.Module()
            self.attention.output.dense, self.attention.output.LayerNorm = nn.Linear(h, h), nn.LayerNorm(h, eps=eps)
            self.intermediate = nn.Module()
            self.intermediate.dense = nn.Linear(h, c["intermediate_size"])
            self.output = nn.Module()
            self.output.dense, self.output.LayerNorm = nn.Linear(c["intermediate_size"], h), nn.LayerNorm(h, eps=eps)

        def forward(self, x, bias):
            b, length, h = x.shape
            a = self.attention.self
            q, k, v = (getattr(a, n)(x).view(b, length, self.heads, h // self.heads).transpose(1, 2) for n in ("query", "key", "value"))
            # torch's fused attention: 2.6x the explicit softmax(QK^T)V in bf16 on 2 AMX cores (400 Wikipedia passages, MiniLM)
            context = F.scaled_dot_product_attention(q, k, v, attn_mask=bias).transpose(1, 2).reshape(b, length, h)
            x = self.attention.output.LayerNorm(self.attention.output.dense(context) + x)
            return self.output.LayerNorm(self.output.dense(F.gelu(self.intermediate.dense(x))) + x)

    return Layer


def _module(torch):
    nn, Layer = torch.nn, _layer(torch)

    class BertEncoder(nn.Module):
        """forward(input_ids, attention_mask, token_type_ids) -> last hidden states (and span logits with the QA head)."""

        def __init__(self, c, qa_head: bool):
            super().__init__()
            h = c["hidden_size"]
            self.embeddings = nn.Module()
            self.embeddings.word_embeddings = nn.Embedding(c["vocab_size"], h)
            self.embeddings.position_embeddings = nn.Embedding(c["max_position_embeddings"], h)
            self.embeddings.token_type_embeddings = nn.Embedding(c.get("type_vocab_size", 2), h)
            self.embeddings.LayerNorm = nn.LayerNorm(h, eps=c.get("layer_norm_eps", 1e-12))
            self.encoder = nn.Module()
            self.encoder.layer = nn.ModuleList(Layer(c) for _ in range(c["num_hidden_layers"]))
            self.qa_outputs = nn.Linear(h, 2) if qa_head else None

        def hidden(self, input_ids, attention_mask=None, token_type_ids=None):
            e = self.embeddings
            positions = torch.arange(input_ids.shape[1], device=input_ids.device)
            types = token_type_ids if token_type_ids is not None else torch.zeros_like(input_ids)
            x = e.LayerNorm(e.word_embeddings(input_ids) + e.token_type_embeddings(types) + e.position_embeddings(positions)[None])
            bias = None  # no padding (batches of equal length): the unmasked kernel
            if attention_mask is not None and not bool(attention_mask.all()):
                bias = (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * torch.finfo(x.dtype).min  # padding is never attended to
            for layer in self.encoder.layer:
                x = layer(x, bias)
            return x

        def forward(self, input_ids, attention_mask=None, token_type_ids=None, output_hidden_states=False):
            """transformers' QA output shape: start_logits, end_logits, hidden_states[-1] (what rag.read uses)."""
            x = self.hidden(input_ids, attention_mask, token_type_ids)
            if self.qa_outputs is None:
                return SimpleNamespace(last_hidden_state=x, hidden_states=(x,))
            start, end = self.qa_outputs(x).split(1, dim=-1)
            return SimpleNamespace(start_logits=start.squeeze(-1), end_logits=end.squeeze(-1), hidden_states=(x,), last_hidden_state=x)

    return BertEncoder
