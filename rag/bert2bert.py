"""A BERT-to-BERT generator whose decoder shares the encoder's weights (Rothe et al. 2020, "BERTShare").

Warm-started from one BERT (the shipped span reader's MiniLM), the decoder's embeddings,
self-attention and feed-forward layers are the encoder's own tensors; only its cross-attention and
its output-layer transform are its own. That halves the weights (26M instead of 49M parameters, 53 MB
in fp16), which is what lets the generator ship in the repository.

transformers cannot save tensors shared this way (its `tie_encoder_decoder` is a no-op in v5), so the
folder holds the unique tensors only, and `load_tied` re-ties them: `generator.json` says the folder
is tied, and rag.generate loads it through here.
"""
from __future__ import annotations

import json
from pathlib import Path

from rag.types import RagError

TIED_FILE = "tied_weights.json"  # names each decoder tensor that is an encoder tensor
TIED_FORMAT = "rag-tied-bert2bert v1"
_DECODER, _ENCODER = "decoder.bert.", "encoder."
_LM_HEAD = "decoder.cls.predictions.decoder.weight"  # the decoder's output layer: its word embeddings, hence the encoder's


def warm_started(bert_folder: str, start_id: int, end_id: int, pad_id: int):
    """An EncoderDecoderModel with encoder and decoder from `bert_folder`, the decoder tied to the encoder."""
    from transformers import EncoderDecoderModel

    model = EncoderDecoderModel.from_encoder_decoder_pretrained(bert_folder, bert_folder).float()
    for settings in (model.config, model.generation_config):
        settings.decoder_start_token_id, settings.eos_token_id, settings.pad_token_id = start_id, end_id, pad_id
    tie(model)
    return model


def tie(model) -> dict[str, str]:
    """Make every decoder tensor that has an encoder twin (same name and shape, not cross-attention)
    that twin; returns {decoder name: encoder name}."""
    encoder = dict(model.named_parameters(remove_duplicate=False))
    pairs = {}
    for name, param in list(model.decoder.bert.named_parameters()):
        twin = encoder.get(_ENCODER + name)
        if "crossattention" in name or twin is None or twin.shape != param.shape:
            continue
        owner, attribute = name.rsplit(".", 1)
        setattr(model.decoder.bert.get_submodule(owner), attribute, twin)
        pairs[_DECODER + name] = _ENCODER + name
    model.decoder.cls.predictions.decoder.weight = model.decoder.bert.embeddings.word_embeddings.weight
    return pairs


def is_tied(folder: str | Path) -> bool:
    """A folder saved by save_tied."""
    return (Path(folder) / TIED_FILE).exists()


def is_tied_model(model) -> bool:
    """An EncoderDecoderModel in memory whose decoder embeddings are its encoder's (as `tie` leaves it)."""
    decoder_bert = getattr(getattr(model, "decoder", None), "bert", None)
    encoder = getattr(model, "encoder", None)
    return decoder_bert is not None and encoder is not None and hasattr(encoder, "embeddings") \
        and decoder_bert.embeddings.word_embeddings.weight is encoder.embeddings.word_embeddings.weight


def save_tied(model, folder: Path, half: bool) -> None:
    """config.json, model.safetensors (unique tensors; fp16 when `half`) and the tying record."""
    from safetensors.torch import save_file

    pairs = tie(model)  # idempotent: names the pairs to leave out
    unique = {name: tensor.detach().to("cpu").clone() for name, tensor in model.state_dict().items() if name not in pairs and name != _LM_HEAD}
    if half:
        unique = {name: t.half() if t.is_floating_point() else t for name, t in unique.items()}
    folder.mkdir(parents=True, exist_ok=True)
    model.config.save_pretrained(folder)
    model.generation_config.save_pretrained(folder)
    save_file(unique, str(folder / "model.safetensors"), metadata={"format": "pt"})
    (folder / TIED_FILE).write_text(json.dumps({"format": TIED_FORMAT, "tied": pairs}, indent=2))


def load_tied(folder: str | Path):
    """The model saved by save_tied, in fp32, its decoder tied to its encoder again."""
    from safetensors.torch import load_file
    from transformers import EncoderDecoderConfig, EncoderDecoderModel, GenerationConfig

    from rag.files import read_versioned_json

    folder = Path(folder)
    record = read_versioned_json(folder / TIED_FILE, TIED_FORMAT)
    model = EncoderDecoderModel(EncoderDecoderConfig.from_pretrained(folder))
    model.generation_config = GenerationConfig.from_pretrained(folder)
    tie(model)
    missing, unexpected = model.load_state_dict({k: v.float() for k, v in load_file(str(folder / "model.safetensors")).items()}, strict=False)
    missing = set(missing) - set(record["tied"]) - {_LM_HEAD}
    if missing or unexpected:
        raise RagError(f"{folder}/model.safetensors does not match its config: missing {sorted(missing)[:3]}, unexpected {sorted(unexpected)[:3]}")
    return model.float()
