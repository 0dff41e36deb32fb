"""RAG generator: any seq2seq LM (BART, T5) conditioned on each retrieved passage, marginalized over them.

Each passage z of question x becomes one input, RAG's format `title / text // question`, and
p(z | x) = softmax_z(score_scale * retrieval score). Two models of the answer (Lewis et al. 2020):
  RAG-Sequence  p(y|x) = sum_z p(z|x) prod_t p(y_t | x, z, y_<t)
                decoding: beam search per passage, then every candidate scored against every
                passage ("thorough"), or only against the passages whose beam produced it
                ("fast": p(y|x,z) taken as 0 elsewhere, no extra passes)
  RAG-Token     p(y|x) = prod_t sum_z p(z|x) p(y_t | x, z, y_<t)
                decoding: beam search over the marginal next-token distribution
The training loss is the negative marginal log-likelihood of the answer, under either model.

`model` takes a hub id or path of an AutoModelForSeq2SeqLM, a RAG checkpoint (facebook/rag-*-nq:
its BART generator is used; retrieval is ours), or a folder saved by `RagGenerator.save` (the
shipped models/generator is one: a tied BERT-to-BERT, rag.bert2bert). `copy_only` restricts decoding
to the tokens of the passage read, for generators trained to extract; answers are then written as
the passage writes them (find_loosely), and each Answer carries p(z|x) and p(z|x,y) per passage.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from rag.files import ArtifactKind
from rag.types import Answer, Hit, Passage, PassageWeight, RagError, Span

GENERATOR_FORMAT = "rag-generator v1"
GENERATOR_FILE = "generator.json"
GENERATOR_KIND = ArtifactKind("a generator folder", GENERATOR_FILE, GENERATOR_FORMAT)
VARIANTS = ("sequence", "token")
DECODINGS = ("thorough", "fast")
TITLE_SEP, DOC_SEP = " / ", " // "  # RAG's input format: title / text // question


@dataclass(frozen=True)
class GeneratorConfig:
    model: str = "facebook/rag-sequence-nq"
    variant: str = "sequence"  # "sequence" (RAG-Sequence) or "token" (RAG-Token)
    decoding: str = "thorough"  # RAG-Sequence only: "thorough" or "fast"
    device: str | None = None
    max_source_length: int = 256  # tokens of one `title / text // question` input
    max_answer_tokens: int = 24
    num_beams: int = 4
    score_scale: float = 20.0  # p(z|x) = softmax(score_scale * retrieval score)
    precision: str = "auto"  # reading: auto = bf16 autocast where the CPU/GPU runs it fast, or fp32 (training sets its own)
    copy_only: bool = False  # decode only tokens of the passage read (+ end): for generators trained to extract, as rag's own

    def __post_init__(self):
        if self.variant not in VARIANTS:
            raise RagError(f"unknown RAG variant {self.variant!r}; valid: {', '.join(VARIANTS)}")
        if self.decoding not in DECODINGS:
            raise RagError(f"unknown decoding {self.decoding!r}; valid: {', '.join(DECODINGS)}")


class RagGenerator:
    """Reader protocol implementation (rag.readers.Reader) for seq2seq generation; also the training loss."""

    def __init__(self, config: GeneratorConfig = GeneratorConfig()):
        tokenizer, model = load_seq2seq(config.model)
        self._init(config, tokenizer, model)

    @classmethod
    def from_model(cls, config: GeneratorConfig, tokenizer, model) -> "RagGenerator":
        """A generator around a model in memory (one being trained by rag.train.generator)."""
        generator = cls.__new__(cls)
        generator._init(config, tokenizer, model)
        return generator

    def _init(self, config: GeneratorConfig, tokenizer, model) -> None:
        import torch

        from rag.encoders import resolve_device

        self.config = config
        self.device = resolve_device(config.device)
        self.tokenizer, self.model = tokenizer, model
        self.model.to(self.device).eval()
        mc = self.model.config
        self.start_id = mc.decoder_start_token_id if mc.decoder_start_token_id is not None else mc.pad_token_id
        self.eos_id, self.pad_id = mc.eos_token_id, mc.pad_token_id if mc.pad_token_id is not None else 0
        if self.start_id is None or self.eos_id is None:
            raise RagError(f"generator {config.model!r}: its config needs decoder_start_token_id and eos_token_id")
        self._torch = torch

    # --- inputs and per-passage likelihoods ---------------------------------------------------

    def contexts(self, question: str, passages: list[Passage]) -> list[str]:
        """RAG's `title / text // question`, the passage text cut so that the question always fits."""
        from rag.fast_tokenizer import cut_to_tokens

        out = []
        for p in passages:
            head, tail = f"{p.title}{TITLE_SEP}" if p.title else "", f"{DOC_SEP}{question}"
            budget = self.config.max_source_length - 4 - len(self.tokenizer.tokenize(head + tail))
            out.append(f"{head}{cut_to_tokens(self.tokenizer, p.text, budget)}{tail}")
        return out

    def encode(self, question: str, passages: list[Passage]) -> dict:
        enc = self.tokenizer(self.contexts(question, passages), truncation=True, max_length=self.config.max_source_length, padding=True, return_tensors="pt", return_token_type_ids=False)
        return {k: v.to(self.device) for k, v in enc.items()}

    def target_ids(self, answers: list[str]) -> list[list[int]]:
        ids = self.tokenizer(text_target=list(answers), truncation=True, max_length=self.config.max_answer_tokens, return_token_type_ids=False)["input_ids"]
        # A BERT tokenizer opens every text with [CLS], the decoder's start token: the target begins after it.
        return [t[1:] if t and t[0] == self.start_id and t[0] != self.eos_id else t for t in ids]

    def token_log_probs(self, inputs: dict, targets: list[list[int]], pairs: list[tuple[int, int]] | None = None):
        """log p(y_t | x, z, y_<t) for target n and passage z: [N, K, T] (0 beyond each target's end).

        `pairs` ((n, z) ...) limits the passes to those pairs (the rest stay -inf), as fast decoding needs.
        """
        torch = self._torch
        n_targets, k = len(targets), inputs["input_ids"].shape[0]
        pairs = pairs if pairs is not None else [(n, z) for n in range(n_targets) for z in range(k)]
        length = max(len(t) for t in targets)
        labels = torch.full((len(pairs), length), -100, dtype=torch.long, device=self.device)
        for row, (n, _) in enumerate(pairs):
            labels[row, : len(targets[n])] = torch.tensor(targets[n])
        zs = torch.tensor([z for _, z in pairs], device=self.device)
        # Each passage is encoded once, whatever the number of targets scored against it.
        encoded = self.model.get_encoder()(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]).last_hidden_state
        logits = self.model(encoder_outputs=(encoded[zs],), attention_mask=inputs["attention_mask"][zs], decoder_input_ids=self._shift_right(labels)).logits
        picked = logits.float().log_softmax(-1).gather(-1, labels.clamp(min=0)[..., None]).squeeze(-1).masked_fill(labels < 0, 0.0)
        out = torch.full((n_targets, k, length), float("-inf"), device=self.device)
        out[torch.tensor([n for n, _ in pairs], device=self.device), zs] = picked
        return out

    def _shift_right(self, labels):
        start = labels.new_full((labels.shape[0], 1), self.start_id)
        return self._torch.cat([start, labels[:, :-1].masked_fill(labels[:, :-1] < 0, self.pad_id)], dim=1)

    def passage_log_probs(self, retrieval_scores):
        return self._torch.log_softmax(self.config.score_scale * retrieval_scores, dim=-1)

    def marginal_log_likelihood(self, token_lp, passage_lp, target_lengths: list[int]):
        """log p(y | x) for each target [N] from per-passage token log-probs [N, K, T] and log p(z|x) [K]."""
        torch = self._torch
        if self.config.variant == "sequence":
            return torch.logsumexp(passage_lp[None, :] + token_lp.sum(-1), dim=1)
        per_token = torch.logsumexp(passage_lp[None, :, None] + token_lp, dim=1)  # [N, T]
        mask = torch.arange(token_lp.shape[-1], device=self.device)[None, :] < torch.tensor(target_lengths, device=self.device)[:, None]
        return per_token.masked_fill(~mask, 0.0).sum(-1)

    def answer_log_likelihood(self, question: str, passages: list[Passage], retrieval_scores, answers: tuple[str, ...]):
        """log p(answer | q) marginalized over the passages (training loss), or None when there is no target.

        The target is the first answer; for a copy_only generator, the first answer one of the passages
        holds (DPR's has-answer rule), and None when none does: it may only copy, so a question its
        passages cannot answer would teach it to want tokens it can never emit.
        """
        target = self._training_target(passages, answers)
        if target is None:
            return None
        targets = self.target_ids([target])
        token_lp = self.token_log_probs(self.encode(question, passages), targets)
        return self.marginal_log_likelihood(token_lp, self.passage_log_probs(retrieval_scores), [len(targets[0])])[0]

    def _training_target(self, passages: list[Passage], answers: tuple[str, ...]) -> str | None:
        if not self.config.copy_only:
            return answers[0] if answers else None
        from rag.metrics import has_answer

        return next((a for a in answers if any(has_answer(p.text, [a]) for p in passages)), None)

    # --- decoding -----------------------------------------------------------------------------

    def read(self, questions: list[str], hits: list[list[Hit]]) -> list[Answer]:
        from rag.precision import autocast, autocast_dtype

        answers = []
        with self._torch.inference_mode(), autocast(self.device, autocast_dtype(self.config.precision, self.device)):
            for question, question_hits in zip(questions, hits):
                if not question_hits:
                    answers.append(Answer(question, "", 0.0))
                    continue
                ids, log_p, posterior = self.generate_ids(question, question_hits)
                text = self.tokenizer.decode(ids, skip_special_tokens=True).strip()
                prior = self.passage_log_probs(self._scores(question_hits)).exp()
                answers.append(_answer(question, text, float(self._torch.exp(log_p)), question_hits, prior, posterior))
        return answers

    def generate_ids(self, question: str, hits: list[Hit]):
        """(best answer token ids, its log p(y|x), posterior p(z|x,y) per passage)."""
        inputs = self.encode(question, [h.passage for h in hits])
        passage_lp = self.passage_log_probs(self._scores(hits))
        if self.config.variant == "token":
            return self._token_beam_search(inputs, passage_lp)
        return self._sequence_decode(inputs, passage_lp)

    def _scores(self, hits: list[Hit]):
        return self._torch.tensor([h.score for h in hits], dtype=self._torch.float32, device=self.device)

    def _sequence_decode(self, inputs: dict, passage_lp):
        torch = self._torch
        beams = self.config.num_beams
        generated = self.model.generate(
            **inputs, num_beams=beams, num_return_sequences=beams, max_new_tokens=self.config.max_answer_tokens,
            decoder_start_token_id=self.start_id, eos_token_id=self.eos_id, pad_token_id=self.pad_id, do_sample=False,
            logits_processor=self._copy_constraint(inputs["input_ids"].repeat_interleave(beams, dim=0)),
        )
        candidates: dict[tuple[int, ...], set[int]] = {}  # answer ids -> passages whose beam produced them
        for row, seq in enumerate(generated.tolist()):
            ids = tuple(_strip(seq[1:], self.eos_id, self.pad_id))  # drop the start token; end at eos
            candidates.setdefault(ids, set()).add(row // beams)
        targets = [list(c) + [self.eos_id] for c in candidates]
        pairs = None if self.config.decoding == "thorough" else [(n, z) for n, zs in enumerate(candidates.values()) for z in sorted(zs)]
        token_lp = self.token_log_probs(inputs, targets, pairs)
        scores = self.marginal_log_likelihood(token_lp, passage_lp, [len(t) for t in targets])
        best = int(scores.argmax())
        return list(candidates)[best], scores[best], torch.softmax(passage_lp + token_lp[best].sum(-1), dim=0)

    def _token_beam_search(self, inputs: dict, passage_lp):
        """Beam search on p(y_t | x, y_<t) = sum_z p(z|x) p(y_t | x, z, y_<t)."""
        torch = self._torch
        k = inputs["input_ids"].shape[0]
        encoder_out = self.model.get_encoder()(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
        beams = [([], 0.0, torch.zeros(k, device=self.device))]  # (ids, log p(y|x), log p(y|x,z) per passage)
        allowed = self._allowed_tokens(inputs["input_ids"]) if self.config.copy_only else None
        finished = []
        for step in range(self.config.max_answer_tokens):
            b = len(beams)
            decoder_input = torch.tensor([[self.start_id] + ids for ids, _, _ in beams], device=self.device).repeat_interleave(k, dim=0)
            hidden = encoder_out.last_hidden_state.repeat(b, 1, 1)
            logits = self.model(encoder_outputs=(hidden,), attention_mask=inputs["attention_mask"].repeat(b, 1), decoder_input_ids=decoder_input).logits[:, -1].float()
            if allowed is not None:
                logits = logits.masked_fill(~allowed.repeat(b, 1), float("-inf"))
            lp = logits.log_softmax(-1).view(b, k, -1)  # [B, K, V]
            marginal = torch.logsumexp(passage_lp[None, :, None] + lp, dim=1)  # [B, V]
            total = marginal + torch.tensor([s for _, s, _ in beams], device=self.device)[:, None]
            if step == self.config.max_answer_tokens - 1:  # the last step ends every hypothesis: scores stay p(y|x) of whole answers
                total = torch.full_like(total, float("-inf")).index_copy(1, torch.tensor([self.eos_id], device=self.device), total[:, [self.eos_id]])
            top = total.flatten().topk(min(self.config.num_beams, total.numel()))
            next_beams = []
            for value, index in zip(top.values.tolist(), top.indices.tolist()):
                if value == float("-inf"):
                    break
                beam, token = divmod(index, total.shape[1])
                ids, _, per_passage = beams[beam]
                entry = (ids + [token], value, per_passage + lp[beam, :, token])
                (finished if token == self.eos_id else next_beams).append(entry)
            beams = next_beams
            if not beams or (finished and max(f[1] for f in finished) > max(s for _, s, _ in beams)):
                break
        ids, log_p, per_passage = max(finished, key=lambda e: e[1] / len(e[0]))  # length-normalized, as HF beam search
        return _strip(ids, self.eos_id, self.pad_id), torch.tensor(log_p), torch.softmax(passage_lp + per_passage, dim=0)

    def _allowed_tokens(self, input_ids):
        """[rows, vocab] bool: the tokens of each input row, and the end token."""
        vocab = self.model.get_output_embeddings().weight.shape[0]
        allowed = self._torch.zeros(input_ids.shape[0], vocab, dtype=self._torch.bool, device=self.device)
        allowed.scatter_(1, input_ids, True)
        allowed[:, self.eos_id] = True
        return allowed

    def _copy_constraint(self, input_ids):
        """For generate(): with copy_only, every beam of passage z may only emit tokens of passage z (or end)."""
        if not self.config.copy_only:
            return None
        from transformers import LogitsProcessor, LogitsProcessorList

        allowed = self._allowed_tokens(input_ids)

        class CopyOnly(LogitsProcessor):
            def __call__(self, _ids, scores):
                return scores.masked_fill(~allowed, float("-inf"))

        return LogitsProcessorList([CopyOnly()])

    # --- checkpoints --------------------------------------------------------------------------

    def save(self, folder: str | Path, half: bool = False) -> None:
        """A generator folder; `half`: fp16 weights (what ships; loading computes in fp32)."""
        import copy

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        from rag.bert2bert import is_tied_model, save_tied

        if is_tied_model(self.model):
            save_tied(self.model, folder, half)
        else:
            (copy.deepcopy(self.model).half() if half else self.model).save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)
        (folder / GENERATOR_FILE).write_text(json.dumps({"format": GENERATOR_FORMAT, "config": {**asdict(self.config), "model": ".", "device": None}}, indent=2))


def load_generator(folder: str | Path, device: str | None = None, **changes) -> RagGenerator:
    """A generator saved by RagGenerator.save (by `rag train --reader rag-sequence|rag-token`)."""
    from rag.files import read_versioned_json

    data = read_versioned_json(Path(folder) / GENERATOR_FILE, GENERATOR_FORMAT)
    return RagGenerator(replace(GeneratorConfig(**data["config"]), model=str(folder), device=device, **changes))


def load_seq2seq(spec: str):
    """(tokenizer, fp32 model) of a hub id or folder: a seq2seq LM, a facebook/rag-* checkpoint or a rag generator."""
    from transformers import AutoConfig, AutoModelForSeq2SeqLM, AutoTokenizer

    from rag.bert2bert import is_tied, load_tied

    try:
        if is_tied(spec):  # rag's own tied BERT-to-BERT (the shipped generator)
            return AutoTokenizer.from_pretrained(spec), load_tied(spec)
        model_type = AutoConfig.from_pretrained(spec).model_type
        if model_type == "rag":  # a facebook/rag-* checkpoint: keep its generator, retrieval is ours
            from transformers import RagSequenceForGeneration, RagTokenizer

            return RagTokenizer.from_pretrained(spec).generator, RagSequenceForGeneration.from_pretrained(spec).generator
        return AutoTokenizer.from_pretrained(spec), AutoModelForSeq2SeqLM.from_pretrained(spec).float()  # shipped weights are fp16
    except (OSError, ValueError) as e:
        raise RagError(f"cannot load generator {spec!r} (a seq2seq model: hub id or local path): {e}") from e


def _strip(ids: list[int], eos: int, pad: int) -> list[int]:
    out = []
    for t in ids:
        if t == eos:
            break
        if t != pad:
            out.append(t)
    return out


def _answer(question: str, text: str, score: float, hits: list[Hit], prior, posterior) -> Answer:
    """Evidence: passages by p(z | x, y), each with its p(z | x) and p(z | x, y). The answer is written as the
    best passage writes it when it occurs there (WordPiece decoding gives "levi ' s stadium"); spans mark it."""
    order = sorted(range(len(hits)), key=lambda i: -float(posterior[i]))
    weights = tuple(PassageWeight(hits[i].passage.id, float(prior[i]), float(posterior[i])) for i in order)
    evidence = tuple(hits[i] for i in order)
    spans = []
    for hit in evidence:
        found = find_loosely(text, hit.passage.text)
        if found:
            text = text if spans else hit.passage.text[found[0] : found[1]]
            spans.append(Span(hit.passage.id, *found))
    return Answer(question, text, score, evidence, tuple(spans), weights)


def find_loosely(text: str, passage: str) -> tuple[int, int] | None:
    """(start, end) of `text` in `passage`, ignoring case, accents and whitespace; None when absent."""
    import unicodedata

    def folded(s: str):  # (index in s, folded character) for each character that counts
        for at, c in enumerate(s):
            for f in unicodedata.normalize("NFKD", c.lower()):
                if not f.isspace() and not unicodedata.combining(f):
                    yield at, f

    target = "".join(f for _, f in folded(text))
    places = list(folded(passage))
    at = "".join(f for _, f in places).find(target) if target else -1
    return None if at < 0 else (places[at][0], places[at + len(target) - 1][0] + 1)
