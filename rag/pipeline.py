"""answer(questions) = retrieve -> read: the one path the CLI, demo.py and eval/ all call."""
from __future__ import annotations

from dataclasses import dataclass

from rag.readers import Reader, ReaderOptions, load_reader, load_reranker, rerank_if_installed
from rag.rerank import RerankConfig
from rag.retrieve import Retriever, check_k
from rag.types import Answer, RagError

MAX_QUESTION_CHARS = 500  # questions are cut here: the reader reads question + passage in 256 tokens; keeps a 100 KB paste fast
LONGEST_WORD = 40  # how far back a cut looks for the end of a word


@dataclass(frozen=True)
class CheckedQuestion:
    text: str  # what the pipeline is asked
    notes: tuple[str, ...] = ()  # what was changed, to tell the user


def check_question(question: str | None, max_chars: int = MAX_QUESTION_CHARS) -> CheckedQuestion:
    """Empty or whitespace-only questions are refused; terminal escape sequences and control characters are
    removed before anything encodes the question (a pasted colour code is no words); very long ones are cut.
    Each change comes with a note saying so."""
    from rag.console import printable

    text = " ".join(printable(question or "").split())
    notes = ("Terminal escape sequences or control characters were removed from your question.",) if text != " ".join((question or "").split()) else ()
    if not text:
        raise RagError("Type a question first.")
    if len(text) > max_chars:
        cut = cut_at_word(text, max_chars)
        notes += (f"Your question is {len(question or ''):,} characters long; only the first {len(cut):,} were used (the models read a few hundred tokens).",)
        return CheckedQuestion(cut, notes)
    return CheckedQuestion(text, notes)


def cut_at_word(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, between two words where one is near the limit.

    It goes back at most LONGEST_WORD characters, to the last space, else to the last character
    that is not a letter or digit; with neither (Chinese, Thai, a URL) it cuts at the limit.
    Looking back for a space without that bound cut "Who is " + 616 characters of Chinese (one
    space in 623 characters) to "Who is": 6 characters.
    """
    if len(text) <= limit:
        return text
    head = text[:limit]
    if not (head[-1].isalnum() and text[limit].isalnum()):  # the limit falls between words already
        return head.rstrip()
    near = max(limit - LONGEST_WORD, 1)
    space = head.rfind(" ", near)
    if space >= near:
        return head[:space]
    other = max((i for i in range(near, limit) if not head[i].isalnum()), default=None)
    return head[: other + 1].rstrip() if other is not None else head


@dataclass
class Pipeline:
    retriever: Retriever
    reader: Reader
    k: int = 10
    index: object = None  # the rag.index_folder.IndexFolder retrieved from, when load_pipeline made it (for reports)

    def __post_init__(self):
        check_k(self.k)

    def answer(self, questions: list[str], k: int | None = None) -> list[Answer]:
        hits = self.retriever.retrieve(list(questions), self.k if k is None else k)  # k=0 is refused, not read as "default"
        return self.reader.read(list(questions), hits)


RERANK_DEFAULT = RerankConfig()  # the default pipeline re-ranks: held-out top-20 25.1 -> 26.5, top-1 10.3 -> 11.7 (eval/tune_pipeline.py)


def load_pipeline(index: str, reader: str = "default", k: int = 10, retriever: str = "dense", device: str | None = None, generator: str | None = None, hybrid=None,
                  precision: str = "auto", rerank: RerankConfig | None = RERANK_DEFAULT) -> Pipeline:
    """Index folder + reader spec -> Pipeline. A `rag train` checkpoint brings its fine-tuned query encoder.

    `retriever` is dense, bm25 or hybrid (`hybrid`: a rag.retrieve.HybridConfig); `rerank`, a
    rag.rerank.RerankConfig, re-scores its top passages with a cross-encoder before reading (the
    default pipeline does, with models/reranker, and warns and reads without it when it is not
    installed; None: no re-ranking).
    """
    from rag.checkpoint import is_checkpoint, load_query_encoder
    from rag.encoders import EncoderConfig
    from rag.index_folder import open_index
    from rag.retrieve import load_retriever

    folder = open_index(index)
    encoder = None
    if is_checkpoint(reader) and retriever != "bm25":
        encoder = load_query_encoder(reader, folder, device)
    elif retriever != "bm25":  # the index's encoder, at the precision asked for (queries: auto = bf16 where fast)
        encoder = folder.load_encoder(EncoderConfig(spec=folder.manifest.encoder, device=device, precision=precision, inference_only=True))
    chosen = load_retriever(folder, retriever, encoder=encoder, config=hybrid)
    reading = load_reader(reader, ReaderOptions(device, generator, precision, inference_only=True))
    rerank = rerank_if_installed(rerank)
    if rerank is not None:
        from rag.rerank import load_reranking

        chosen = load_reranking(chosen, rerank, load_reranker(rerank, reading if reader == "default" else None))
    return Pipeline(chosen, reading, k, folder)
