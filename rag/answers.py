"""Answer aggregation: a span reader's candidate spans over K passages -> the answer they agree on.

Candidates whose texts normalize alike (SQuAD normalization) are one answer, whose probability is
the sum of their masses p(z|q) p(span|q,z): the answer a question's passages agree on wins. An answer
that is its passage's own title ("Hydrogen" read from *Hydrogen*, "Alexander Graham Bell" from his
article) gets a bonus first, `title_bonus` in log space, and all masses are then rescaled to their
old sum, so that an answer's probability stays a share of what was read. (Readers trained on SQuAD
learn that a paragraph's subject is rarely the answer; open-domain questions ask for it all the time.)
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace

from rag.metrics import normalize_answer

_QUALIFIER = re.compile(r"\s*\([^()]*\)$")  # "Mercury (planet)" is the answer "Mercury"


@dataclass(frozen=True)
class Candidate:
    mass: float  # p(z | q) p(span | q, z)
    hit: Hit  # the passage z it was read from (rag.types.Hit)
    span: Span  # rag.types.Span: character offsets into hit.passage.text
    text: str  # the passage's words there


@dataclass(frozen=True)
class Chosen:
    """What SpanReader.read turns into its Answer: the text, its probability, the passages and spans that read it (best first)."""

    text: str = ""
    probability: float = 0.0
    evidence: tuple[Hit, ...] = ()
    spans: tuple[Span, ...] = ()


def aggregate(candidates: list[Candidate], title_bonus: float = 0.0) -> Chosen:
    """The answer with the most mass (after the title bonus); its evidence and spans most likely first."""
    groups: dict[str, list[tuple[float, Candidate]]] = {}
    for c in candidates:
        key = normalize_answer(c.text)
        if key:
            bonus = title_bonus if title_bonus and key == normalize_answer(_QUALIFIER.sub("", c.hit.passage.title)) else 0.0
            groups.setdefault(key, []).append((c.mass * math.exp(bonus), c))
    if not groups:
        return Chosen()
    scale = sum(c.mass for m in groups.values() for _, c in m) / sum(w for m in groups.values() for w, _ in m)
    members = max(groups.values(), key=lambda m: sum(w for w, _ in m))
    members.sort(key=lambda x: -x[0])
    evidence = tuple(dict.fromkeys(c.hit for _, c in members))
    text = members[0][1].text  # spans that only normalize the same ("the planet Xylo", "planet Xylo.") mark the answer's own words
    spans = (answer_span(c.hit.passage.text, text, c.span) for _, c in members)
    return Chosen(text, scale * sum(w for w, _ in members), evidence, tuple(dict.fromkeys(s for s in spans if s is not None)))


def answer_span(passage_text: str, answer: str, span: Span) -> Span | None:
    """Where `answer` itself stands in the passage for a candidate span whose text normalizes to it: the span
    when its text is the answer (up to case and spacing), else the answer's whole-word occurrence nearest it
    ("the planet Xylo" or "planet Xylo." for "planet Xylo"); None when the passage writes it only otherwise."""
    words = answer.split()
    if " ".join(passage_text[span.start : span.end].split()).casefold() == " ".join(words).casefold():
        return span
    pattern = r"\s+".join(map(re.escape, words))
    pattern = ("(?<!\\w)" if answer[:1].isalnum() else "") + pattern + ("(?!\\w)" if answer[-1:].isalnum() else "")
    found = [m.span() for m in re.finditer(pattern, passage_text, flags=re.IGNORECASE)]
    if not found:
        return None
    start, end = min(found, key=lambda se: abs(se[0] - span.start))
    return replace(span, start=start, end=end)
