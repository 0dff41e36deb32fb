"""Wikitext -> plain text, for the Wikipedia XML reader (rag.corpus): what a reader should read of a page."""
from __future__ import annotations

import re

_SKIP_SECTIONS = {"references", "external links", "see also", "further reading", "notes", "bibliography", "sources", "footnotes"}
_REF = re.compile(r"<ref[^>/]*/>|<ref[^>]*>.*?</ref\s*>", re.S | re.I)
_COMMENT = re.compile(r"<!--.*?-->", re.S)
_LEFTOVER_MARKUP = re.compile(r"\[\[[^\]]*\]\]|\{\{[^}]*\}\}|</?[a-zA-Z][a-zA-Z0-9]*(\s[^<>]*)?/?>|\[\[|\]\]|\{\{|\}\}")
_NON_TEXT_LINK = re.compile(r"^\s*:?\s*(file|image|category|media|[a-z]{2,3}(-[a-z]+)?)\s*:", re.I)


def clean_wikitext(wikitext: str) -> str:
    """Wikitext -> plain text: templates, refs, tables, files and categories removed, link text kept."""
    import mwparserfromhell

    # References are dropped before parsing: the parser gives up on some nested <ref> markup
    # (a template inside a ref inside a quote) and would leave it behind as text.
    wikitext = _REF.sub(" ", _COMMENT.sub("", wikitext))
    code = mwparserfromhell.parse(wikitext)
    for section in code.get_sections(levels=[2]):
        heading = section.filter_headings()[0].title.strip_code().strip().lower()
        if heading in _SKIP_SECTIONS:
            try:
                code.remove(section)
            except ValueError:  # already removed with an enclosing section
                pass
    for node in code.filter_templates(recursive=False):
        _remove(code, node)
    for node in code.filter_tags(matches=lambda t: str(t.tag).lower() in ("table", "ref", "gallery", "math")):
        _remove(code, node)
    for link in code.filter_wikilinks():
        if _NON_TEXT_LINK.match(str(link.title)):
            _remove(code, link)
    for heading in code.filter_headings():
        _remove(code, heading)
    text = code.strip_code(normalize=True, collapse=True)
    # strip_code leaves list bullets, table rows parsed outside <table> and bold/italic quote runs.
    lines = []
    for line in text.splitlines():
        line = line.strip().lstrip("*#:;").strip()
        if not line or line.startswith(("{|", "|", "!")):
            continue
        lines.append(line)
    text = " ".join(lines)
    text = re.sub(r"'{2,}", "", text)
    text = _LEFTOVER_MARKUP.sub(" ", text)  # what the parser could not parse: unbalanced [[ ]], {{ }}, stray tags
    text = re.sub(r"\(\s*[,;]?\s*\)", "", text)  # "( )" left where a template sat in parentheses
    return re.sub(r"\s+", " ", text).strip()


def _remove(code, node) -> None:
    try:
        code.remove(node)
    except ValueError:  # inside a node removed earlier
        pass
