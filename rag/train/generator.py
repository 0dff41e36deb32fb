"""Supervised training of the RAG generator on SQuAD: `title / paragraph // question -> answer`.

The generator is a BERT-to-BERT encoder-decoder warm-started from weights that ship offline: by default
the shipped span reader's MiniLM (already trained to find answers in SQuAD paragraphs) on both sides,
the decoder sharing the encoder's weights except its new cross-attention (rag.bert2bert).
It reads the same `title / text // question` input rag.generate.RagGenerator builds at answer time,
so the trained folder is a RAG-Sequence / RAG-Token generator as it is. The loop (warmup, bf16
autocast, resumable checkpoints) is rag.train.loop's, shared with every trainer.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rag.console import log
from rag.qa_data import SQUAD_WINDOW_WORDS, load_squad, squad_examples
from rag.train.loop import TrainSettings, check_out, epoch_batches, fit, run_kind
from rag.types import Passage, RagError

GENERATOR_RUN_KIND = run_kind("generator")
CLS, SEP, PAD = 101, 102, 0  # the MiniLM WordPiece vocabulary's [CLS] (decoder start), [SEP] (end), [PAD]


@dataclass(frozen=True, kw_only=True)
class GeneratorTrainConfig(TrainSettings):
    """TrainSettings (out: OUT/generator is the trained generator) and:"""

    squad: str  # SQuAD v1.1 JSON (or .json.gz)
    encoder_from: str = "reader"  # "reader" (the shipped span reader), "minilm" (the sentence encoder) or a BERT folder
    start_from: str = ""  # a generator folder to continue training instead (encoder_from is then unused)
    window_words: int = SQUAD_WINDOW_WORDS  # paragraph words around the answer per example (retrieved passages are ~100 words)
    max_source_length: int = 256
    max_answer_tokens: int = 24
    batch_size: int = 16
    warmup: float = 0.06


@dataclass(frozen=True)
class GeneratorTrainReport:
    steps: int
    examples: int
    mean_loss: float
    seconds: float
    generator: str  # the saved generator folder


def warm_started_generator(encoder_from: str):
    """(tokenizer, EncoderDecoderModel): a BERT-to-BERT from offline weights, the decoder tied to the encoder."""
    from transformers import AutoTokenizer

    from rag.bert2bert import warm_started
    from rag.encoders import default_model_path
    from rag.paths import SHIPPED_READER, shipped_model

    if encoder_from == "reader":
        bert = shipped_model(SHIPPED_READER)
        if bert is None:
            raise RagError("--encoder-from reader: the shipped span reader (models/reader) is not installed; use 'minilm' or a BERT folder")
    else:
        bert = default_model_path() if encoder_from == "minilm" else encoder_from
    if not Path(bert).is_dir():
        raise RagError(f"--encoder-from {encoder_from}: not 'reader', 'minilm' or a BERT folder")
    return AutoTokenizer.from_pretrained(bert), warm_started(str(bert), CLS, SEP, PAD)


def train_generator(config: GeneratorTrainConfig, progress: bool = True) -> GeneratorTrainReport:
    """Train (or resume) the generator on SQuAD; returns where the generator was saved."""
    import torch

    from rag.generate import GeneratorConfig, RagGenerator, load_seq2seq

    if config.batch_size < 1 or config.epochs <= 0 or config.window_words < 10:
        raise RagError("need batch_size >= 1, epochs > 0, window_words >= 10")
    check_out(config, GENERATOR_RUN_KIND)
    torch.manual_seed(config.seed)
    tokenizer, model = load_seq2seq(config.start_from) if config.start_from else warm_started_generator(config.encoder_from)
    settings = GeneratorConfig(model="(training)", variant="sequence", device=config.device, copy_only=True, max_source_length=config.max_source_length, max_answer_tokens=config.max_answer_tokens)
    generator = RagGenerator.from_model(settings, tokenizer, model)
    examples = squad_examples(load_squad(config.squad, config.limit), config.window_words, config.seed)
    batches = epoch_batches([len(e[1].text) for e in examples], config.batch_size, config.epochs, config.seed)
    log(f"{len(examples):,} examples from {config.squad}", progress)
    report = fit(_GeneratorTrainee(generator, examples), batches, config, GENERATOR_RUN_KIND, "generator", progress)
    return GeneratorTrainReport(report.steps, len(examples), report.mean_loss, report.seconds, str(Path(config.out).resolve() / "generator"))


class _GeneratorTrainee:
    """The generator as rag.train.loop.fit trains it: token cross-entropy of the answer given one passage."""

    def __init__(self, generator, examples: list[tuple[str, Passage, str]]):
        self.generator, self.examples = generator, examples
        self.model, self.device = generator.model, generator.device

    def loss(self, batch: list[int]):
        import torch
        import torch.nn.functional as F

        g = self.generator
        picked = [self.examples[i] for i in batch]
        contexts = [g.contexts(question, [passage])[0] for question, passage, _ in picked]
        inputs = g.tokenizer(contexts, truncation=True, max_length=g.config.max_source_length, padding=True, return_tensors="pt", return_token_type_ids=False).to(self.device)
        targets = g.target_ids([answer for _, _, answer in picked])
        labels = torch.full((len(targets), max(map(len, targets))), -100, dtype=torch.long, device=self.device)
        for row, ids in enumerate(targets):
            labels[row, : len(ids)] = torch.tensor(ids)
        logits = self.model(**inputs, decoder_input_ids=g._shift_right(labels)).logits
        return F.cross_entropy(logits.float().flatten(0, 1), labels.flatten(), ignore_index=-100)

    def save(self, folder: Path) -> None:
        self.generator.save(folder, half=True)
