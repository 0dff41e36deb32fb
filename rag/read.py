"""Extractive span reader, REALM/DPR style: answers marginalized over the retrieved passages.

For each question q and each retrieved passage z the reader reads
`[CLS] question [SEP] title [SEP] passage` with a BERT-family encoder and two heads:
  - start/end logits per token: p(span | q, z) = softmax over every span of at most
    `max_answer_tokens` tokens inside the passage text of start_logit + end_logit (REALM);
  - a passage-selection logit from [CLS] (DPR's reader), zero-initialized, which re-ranks the
    retrieval distribution: p(z | q) = softmax_z(score_scale * retrieval_score + selection_logit).
The answer probability is p(y | q) = sum_z p(z | q) sum_{spans of z reading y} p(span | q, z);
equal answer strings (after SQuAD normalization) from different passages are summed, and an answer that
is its passage's title gets `title_bonus` first (rag.answers, which turns candidate spans into the Answer).

A reader folder (`SpanReader.save`) holds the transformers QA model and tokenizer, the selection
head (`selection_head.safetensors`) and `reader.json` (format and settings); a reranker folder
(`rag train reranker`) holds the same files under its own header, `reranker.json`.
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from rag.files import ArtifactKind, read_versioned_json
from rag.types import Answer, Hit, Passage, RagError, Span, title_prefix

READER_FORMAT = "rag-span-reader v1"
READER_FILE, SELECTION_FILE = "reader.json", "selection_head.safetensors"
SPAN_READER_KIND = ArtifactKind("a span-reader folder", READER_FILE, READER_FORMAT)
# A reranker is a span reader whose selection head was trained on retrieved passages and whose span heads
# were not: the same files under its own header, so that it is never loaded as a reader by mistake.
RERANKER_FORMAT, RERANKER_FILE = "rag-reranker v1", "reranker.json"
RERANKER_KIND = ArtifactKind("a reranker folder", RERANKER_FILE, RERANKER_FORMAT)
HEADERS = {READER_FILE: READER_FORMAT, RERANKER_FILE: RERANKER_FORMAT}  # a SpanReader folder's type header -> its format
# Settings a reader is trained with: None in a ReaderConfig means the saved reader's own (reader.json), else these.
TRAINED_DEFAULTS = {"max_length": 256, "max_answer_tokens": 10, "score_scale": 20.0, "read_titles": True}
# "not sure" below this p: `rag ask` and the demo show the answer as a guess (Answer.is_sure); generators have none.
# eval/tune_reader.py on the retriever's 1,021 held-out training questions, k=10, over indexes/wiki2015 (v2): the largest p
# (0.05 grid) below which answers are right < 1 time in 20. Over indexes/default (v4) that rule gives 0.85: see the README.
NOT_SURE_BELOW = 0.25


@dataclass(frozen=True)
class ReaderConfig:
    model: str = "default"  # "default" (offline MiniLM + new span head), a reader folder, or a hub QA checkpoint id
    device: str | None = None  # None: cuda when available, else cpu
    # The next three and read_titles, None: the saved reader's setting, else TRAINED_DEFAULTS (256, 10, 20.0, True); a value given is used as it is.
    max_length: int | None = None  # tokens of [CLS] question [SEP] title [SEP] passage; the passage is truncated
    max_answer_tokens: int | None = None  # longest span considered
    spans_per_passage: int = 5  # best spans of each passage kept as answer candidates
    score_scale: float | None = None  # p(z|q) = softmax(score_scale * retrieval score + selection logit)
    # read(): "rerank": the re-ranker's score (rag.rerank) in place of score_scale * retrieval where every hit has one, else "retrieval".
    # Chosen by eval/tune_reader.py on 1,021 held-out training questions over indexes/wiki2015, k=10: EM 11.5 -> 13.2.
    passage_prior: str = "rerank"
    selection_weight: float = 1.0  # read(): how much the reader's own selection logit adds to p(z|q) (0: the prior alone)
    # read(): weight of log Z_z (passage z's log-sum of raw span scores) in p(z|q); 1 without prior: Clark & Gardner's shared norm.
    answerability_weight: float = 0.0
    # read(): log-space bonus of an answer that is its passage's title ("Hydrogen" read from *Hydrogen*), the masses then rescaled to their
    # old sum. eval/tune_reader.py, 1,021 held-out training questions, k=10, v4: 0 -> 2 is EM 6.0 -> 6.5 over indexes/default, 7.2 -> 7.9 over 1/4 of wiki2015.
    title_bonus: float = 2.0
    read_titles: bool | None = None  # `title [SEP] text`, or the text alone (False: costs 0.7 EM held out; see the README)
    batch_size: int = 16  # passages per forward pass at inference
    precision: str = "auto"  # auto | bf16 | fp32: bf16 weights where the CPU/GPU runs them fast (>= 2x fp32, same answers)
    inference_only: bool = False  # no training or saving: a plain BERT folder loads through rag.bert, without transformers (same logits, faster start)


@dataclass(frozen=True)
class ReaderInputs:
    """K passages of one question, tokenized, with where each token sits in its passage's text."""

    features: dict  # input_ids, attention_mask, token_type_ids: [K, L] tensors
    token_chars: np.ndarray  # [K, L, 2] char offsets into passage.text; (-1, -1) outside the passage text
    starts: object  # [K, L] bool torch tensor: tokens a span may start on (a word's first token in the passage text)
    ends: object  # [K, L] bool torch tensor: tokens a span may end on (a word's last token)


def span_reader_module(qa_model):
    """The QA model plus a zero-initialized passage-selection head on [CLS], as one torch module.

    forward(features) -> (start_logits [K, L], end_logits [K, L], selection_logits [K]).
    """
    import torch

    class SpanReaderModule(torch.nn.Module):
        def __init__(self, qa):
            super().__init__()
            self.qa = qa
            self.select = torch.nn.Linear(qa.config.hidden_size, 1)
            torch.nn.init.zeros_(self.select.weight)  # starts as the plain retrieval distribution
            torch.nn.init.zeros_(self.select.bias)

        def forward(self, features: dict):
            out = self.qa(**features, output_hidden_states=True)
            return out.start_logits, out.end_logits, self.select(out.hidden_states[-1][:, 0]).squeeze(-1)

    return SpanReaderModule(qa_model)


class SpanReader:
    """Reader protocol implementation (rag.readers.Reader); also gives the training loss."""

    not_sure_below = NOT_SURE_BELOW  # readers without this attribute have no threshold

    def __init__(self, config: ReaderConfig = ReaderConfig()):
        import torch

        from rag.encoders import default_model_path, resolve_device

        self.config = config
        self.device = resolve_device(config.device)
        source = default_model_path() if config.model == "default" else config.model
        folder = Path(source)
        self.header = next((h for h in HEADERS if (folder / h).exists()), READER_FILE)  # what `save` writes
        settings = _read_settings(folder)
        saved = settings["config"] if settings else {}  # a saved reader keeps the settings it was trained with, unless the caller sets them
        self.config = config = replace(config, **{k: saved.get(k, default) for k, default in TRAINED_DEFAULTS.items() if getattr(config, k) is None})
        try:
            self.tokenizer, qa = _tokenizer_and_qa_model(source, self.device, config.inference_only)
        except (OSError, ValueError, KeyError) as e:
            raise RagError(f"cannot load reader {config.model!r}: {e}") from e
        # A saved reader folder or a hub QA checkpoint has trained heads; the bare MiniLM gets random ones.
        self.trained = settings is not None or not (folder / "config.json").exists() or _has_qa_head(folder)
        if not getattr(self.tokenizer, "is_fast", False):
            raise RagError(f"reader {config.model!r}: a fast tokenizer is needed for character offsets")
        self.model = span_reader_module(qa)
        if (folder / SELECTION_FILE).exists():
            from safetensors.torch import load_file

            self.model.select.load_state_dict(load_file(str(folder / SELECTION_FILE)))
        self.model.to(self.device).eval()
        from rag.precision import autocast_dtype

        self.dtype = autocast_dtype(config.precision, self.device)  # None: fp32
        if self.dtype is not None:
            self.model.to(self.dtype)
        self._torch = torch

    # --- inputs ---------------------------------------------------------------------------

    def encode(self, question: str, passages: list[Passage]) -> ReaderInputs:
        torch = self._torch
        seconds = [title_prefix(p.title, self.config.read_titles) + p.text for p in passages]
        question = self._fit_question(question)
        enc = self.tokenizer(
            [question] * len(passages), seconds, truncation="only_second", max_length=self.config.max_length,
            padding=True, return_offsets_mapping=True, return_tensors="np",
        )
        offsets = enc.pop("offset_mapping")
        chars = np.full(offsets.shape, -1, dtype=np.int64)
        for i, p in enumerate(passages):
            prefix = len(seconds[i]) - len(p.text)
            in_passage = np.array([s == 1 for s in enc.sequence_ids(i)]) & (offsets[i, :, 0] >= prefix) & (offsets[i, :, 1] > offsets[i, :, 0])
            chars[i, in_passage] = offsets[i, in_passage] - prefix
        starts, ends = word_boundaries(chars, [p.text for p in passages])
        features = {k: torch.as_tensor(v, device=self.device) for k, v in enc.items() if k in ("input_ids", "attention_mask", "token_type_ids")}
        return ReaderInputs(features, chars, torch.as_tensor(starts, device=self.device), torch.as_tensor(ends, device=self.device))

    def _fit_question(self, question: str, max_length: int | None = None) -> str:
        """The question cut to half the window (the reader's, or `max_length`), so passage tokens always fit beside it.

        (truncation="only_second" cannot shorten the question: without this a long question raises.)
        """
        from rag.fast_tokenizer import cut_to_tokens

        return cut_to_tokens(self.tokenizer, question, (max_length or self.config.max_length) // 2)

    # --- scores ---------------------------------------------------------------------------

    def scores(self, inputs: ReaderInputs):
        """(span_log_probs [K, L, L], -inf on invalid spans; selection logits [K]; log Z [K], -inf where no span is allowed)."""
        start, end, select = (t.float() for t in self.model(inputs.features))
        span_lp, log_z = span_log_probs(start, end, inputs.starts, inputs.ends, self.config.max_answer_tokens)
        return span_lp, select, log_z

    def rerank_logits(self, question: str, passages: list[Passage], max_length: int | None = None) -> np.ndarray:
        """The passage-selection logit of each passage (rag.rerank's cross-encoder score), reading at most
        `max_length` tokens of each (None: the reader's max_length).

        Passages are batched shortest first, so a batch pads to its own longest, not to the longest
        of all (measured: 100 passages 1.6 s -> 1.1 s on 2 cores); no character offsets are needed."""
        torch = self._torch
        logits = np.zeros(len(passages), dtype=np.float32)
        if not passages:
            return logits
        max_length = max_length or self.config.max_length
        question = self._fit_question(question, max_length)
        enc = self.tokenizer([question] * len(passages), [title_prefix(p.title, self.config.read_titles) + p.text for p in passages], truncation="only_second", max_length=max_length)
        order = sorted(range(len(passages)), key=lambda i: len(enc["input_ids"][i]))
        names = [k for k in ("input_ids", "attention_mask", "token_type_ids") if k in enc]
        with torch.inference_mode():
            for start in range(0, len(order), self.config.batch_size):
                rows = order[start : start + self.config.batch_size]
                batch = self.tokenizer.pad([{k: enc[k][i] for k in names} for i in rows], return_tensors="pt")
                logits[rows] = self.model({k: v.to(self.device) for k, v in batch.items()})[2].float().cpu().numpy()
        return logits

    def passage_log_probs(self, retrieval_scores, select_logits):
        """log p(z | q) over the K passages: retrieval scores re-ranked by the selection head."""
        return self._torch.log_softmax(self.config.score_scale * retrieval_scores + select_logits, dim=-1)

    def reading_log_probs(self, hits: list[Hit], select_logits, log_z):
        """log p(z | q) when answering: the prior the config names plus the weighted selection logit and log Z."""
        torch = self._torch
        reranked = self.config.passage_prior == "rerank" and all(h.rerank_score is not None for h in hits)
        prior = [h.rerank_score if reranked else self.config.score_scale * h.score for h in hits]
        prior = torch.tensor(prior, dtype=torch.float32, device=self.device)
        logits = prior + self.config.selection_weight * select_logits
        if self.config.answerability_weight:
            logits = logits + self.config.answerability_weight * log_z.clamp(min=-1e4)  # a passage with no span: ~0 mass, no nan
        return torch.log_softmax(logits, dim=-1)

    def answer_log_likelihood(self, question: str, passages: list[Passage], retrieval_scores, answers: tuple[str, ...]):
        """log p(answers | q) = log sum_z p(z|q) sum_{spans of z matching an answer} p(span|q,z).

        Weak supervision: a span matches when its text is an answer string (whole words, any case).
        `retrieval_scores` is a [K] tensor (grad-enabled in joint training). Returns None when no
        passage holds an answer: such a question gives no signal.
        """
        inputs = self.encode(question, passages)
        gold = answer_span_mask(inputs.token_chars, passages, answers, self.config.max_answer_tokens)
        if not gold.any():
            return None
        span_lp, select, _ = self.scores(inputs)
        gold = self._torch.as_tensor(gold, device=self.device)
        per_passage = span_lp.masked_fill(~gold, float("-inf")).flatten(1).logsumexp(-1)  # log p(y | q, z)
        return self._torch.logsumexp(self.passage_log_probs(retrieval_scores, select) + per_passage, dim=0)

    # --- answers --------------------------------------------------------------------------

    def read(self, questions: list[str], hits: list[list[Hit]]) -> list[Answer]:
        torch = self._torch
        answers = []
        with torch.inference_mode():
            for question, question_hits in zip(questions, hits):
                if not question_hits:
                    answers.append(Answer(question, "", 0.0))
                    continue
                parts = []  # (token_chars, span_lp, select, log_z) per batch of passages
                for i in range(0, len(question_hits), self.config.batch_size):
                    inputs = self.encode(question, [h.passage for h in question_hits[i : i + self.config.batch_size]])
                    parts.append((inputs.token_chars, *self.scores(inputs)))
                token_chars, span_lp = _pad_cat([p[0] for p in parts]), _pad_cat_t(torch, [p[1] for p in parts])
                select, log_z = (torch.cat([p[i] for p in parts]) for i in (2, 3))
                passage_lp = self.reading_log_probs(question_hits, select, log_z).cpu().numpy()
                answers.append(self._best_answer(question, question_hits, token_chars, span_lp.cpu().numpy(), passage_lp))
        return answers

    def _best_answer(self, question: str, hits: list[Hit], token_chars: np.ndarray, span_lp: np.ndarray, passage_lp: np.ndarray) -> Answer:
        from rag.answers import Candidate, aggregate

        candidates = []
        for k, hit in enumerate(hits):
            flat = span_lp[k].ravel()
            for idx in np.argsort(-flat)[: min(self.config.spans_per_passage, int(np.isfinite(flat).sum()))]:
                s, e = divmod(int(idx), span_lp.shape[-1])
                start, end = int(token_chars[k, s, 0]), int(token_chars[k, e, 1])
                candidates.append(Candidate(float(np.exp(passage_lp[k] + flat[idx])), hit, Span(hit.passage.id, start, end), hit.passage.text[start:end]))
        chosen = aggregate(candidates, self.config.title_bonus)
        return Answer(question, chosen.text, chosen.probability, chosen.evidence, chosen.spans)

    # --- checkpoints ----------------------------------------------------------------------

    def save(self, folder: str | Path, half: bool = False, header: str | None = None) -> None:
        """A reader folder (or, with `header` RERANKER_FILE, a reranker's; None: the header it was loaded with);
        `half`: fp16 weights (half the size, what ships; loading computes in fp32/bf16)."""
        import copy

        from safetensors.torch import save_file

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        qa = copy.deepcopy(self.model.qa).to(self._torch.float16) if half else self.model.qa
        qa.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)
        save_file({k: v.detach().cpu().float().contiguous() for k, v in self.model.select.state_dict().items()}, str(folder / SELECTION_FILE))
        header = header or self.header
        (folder / header).write_text(json.dumps({"format": HEADERS[header], "config": asdict(self.config)}, indent=2))


def _tokenizer_and_qa_model(source: str, device: str, inference_only: bool):
    """The tokenizer and QA model of `source`: through rag.bert (no transformers import) when only
    answering from a plain BERT folder, else transformers' (trainable, savable)."""
    from rag.bert import is_bert_folder

    if inference_only and is_bert_folder(source) and (_has_qa_head(Path(source)) or any((Path(source) / h).exists() for h in HEADERS)):
        from rag.bert import load_bert
        from rag.fast_tokenizer import FastTokenizer

        return FastTokenizer(source), load_bert(source, qa_head=True)[0]
    from transformers import AutoModelForQuestionAnswering, AutoTokenizer

    # Shipped weights are fp16: compute in fp32 or bf16. On CPU, plain (eager) attention: at ~110
    # tokens torch's CPU flash-attention kernel took a quarter of the reader's time, eager ~10% less in all.
    attention = {"attn_implementation": "eager"} if device == "cpu" else {}
    return AutoTokenizer.from_pretrained(source), AutoModelForQuestionAnswering.from_pretrained(source, **attention).float()


def span_log_probs(start, end, starts, ends, max_answer_tokens: int):
    """(log p(span | q, z) for every (start, end) token pair: [K, L, L], -inf where the span is not allowed; log Z: [K]).

    A span lies inside the passage text, begins and ends on word boundaries (`starts`, `ends`:
    [K, L] bool), ends at or after its start and has at most `max_answer_tokens` tokens; the
    softmax runs over all allowed spans of a passage (REALM).
    """
    import torch

    length = start.shape[-1]
    s_idx = torch.arange(length, device=start.device)
    width = s_idx[None, :] - s_idx[:, None]  # end - start
    allowed = (width >= 0) & (width < max_answer_tokens)
    allowed = allowed[None] & starts[:, :, None] & ends[:, None, :]
    scores = (start[:, :, None] + end[:, None, :]).masked_fill(~allowed, float("-inf"))
    log_z = scores.flatten(1).logsumexp(-1)
    norm = torch.where(torch.isfinite(log_z), log_z, torch.zeros_like(log_z))  # a passage with no allowed span stays all -inf
    return scores - norm[:, None, None], log_z


def word_boundaries(token_chars: np.ndarray, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """([K, L] may-start, [K, L] may-end): passage tokens that do not cut a run of letters/digits."""
    starts, ends = np.zeros(token_chars.shape[:2], bool), np.zeros(token_chars.shape[:2], bool)
    for i, text in enumerate(texts):
        for t, (s, e) in enumerate(token_chars[i]):
            if s >= 0:
                starts[i, t] = s == 0 or not (text[s - 1].isalnum() and text[s].isalnum())
                ends[i, t] = e == len(text) or not (text[e - 1].isalnum() and text[e].isalnum())
    return starts, ends


def answer_span_mask(token_chars: np.ndarray, passages: list[Passage], answers: tuple[str, ...], max_answer_tokens: int) -> np.ndarray:
    """[K, L, L] bool: token spans whose text is one of the answers (whole-word, case-insensitive match)."""
    k, length = token_chars.shape[:2]
    mask = np.zeros((k, length, length), dtype=bool)
    for i, p in enumerate(passages):
        starts, ends = token_chars[i, :, 0], token_chars[i, :, 1]
        for answer in answers:
            answer = answer.strip()
            if not answer:
                continue
            for m in re.finditer(rf"(?<!\w){re.escape(answer)}(?!\w)", p.text, flags=re.IGNORECASE):
                s_tok = np.flatnonzero(starts == m.start())
                e_tok = np.flatnonzero(ends == m.end())
                if len(s_tok) and len(e_tok) and 0 <= e_tok[0] - s_tok[0] < max_answer_tokens:
                    mask[i, s_tok[0], e_tok[0]] = True
    return mask


def _pad_cat(arrays: list[np.ndarray]) -> np.ndarray:
    length = max(a.shape[1] for a in arrays)
    return np.concatenate([np.pad(a, ((0, 0), (0, length - a.shape[1]), (0, 0)), constant_values=-1) for a in arrays])


def _pad_cat_t(torch, tensors):
    length = max(t.shape[1] for t in tensors)
    pad = lambda t: torch.nn.functional.pad(t, (0, length - t.shape[2], 0, length - t.shape[1]), value=float("-inf"))  # noqa: E731
    return torch.cat([pad(t) for t in tensors])


def _has_qa_head(folder: Path) -> bool:
    """A local transformers folder whose config says it was saved as a question-answering model."""
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, json.JSONDecodeError):
        return False
    return any(a.endswith("ForQuestionAnswering") for a in config.get("architectures") or [])


def _read_settings(folder: Path) -> dict | None:
    header = next((h for h in HEADERS if (folder / h).exists()), None)
    return read_versioned_json(folder / header, HEADERS[header]) if header else None

