"""What the CLI prints and parses, made safe: data printed without terminal control sequences,
numeric options checked by argparse (exit 2, one line) before anything loads."""
from __future__ import annotations

import argparse
import re

# Terminal control sequences: CSI (ESC [ ... or the one-byte 0x9b), OSC (ESC ] ... BEL or ESC \), and
# any other ESC + one character. Removed whole, so no "[2J" is left behind from "\x1b[2J".
_ESCAPE = re.compile(r"(?:\x1b\[|\x9b)[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b\x9c]*(?:\x07|\x1b\\|\x9c)?|\x1b.?")
# What is left that a terminal acts on instead of showing: C0 and C1 controls, DEL, and the
# Unicode line separators and bidi overrides (they reorder what the line after them shows).
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def printable(text: object) -> str:
    """Text from the data (titles, passages, answers, questions) made safe to print on one line.

    A corpus is untrusted input: an escape sequence in a passage would otherwise clear the
    screen, retitle the window or hide lines when `rag search` prints it. Tabs and line breaks
    become spaces; other control characters and whole escape sequences are dropped.
    """
    text = _ESCAPE.sub("", str(text))
    return _CONTROL.sub(lambda m: " " if m.group().isspace() else "", text)


def positive_int(text: str) -> int:
    """argparse type for -k and friends: a k below 1 is refused (hybrid search printed 119 hits for -k -5)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of 1 or more, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, not {value}")
    return value


def log(message: str, enabled: bool = True) -> None:
    """A progress or status line on stderr (stdout stays for results), unless `enabled` is False."""
    import sys

    if enabled:
        print(message, file=sys.stderr, flush=True)


def warn(message: str) -> None:
    """A warning on stderr: what rag does instead of what was asked (an uninstalled default model, say)."""
    import sys

    print(f"rag: warning: {message}", file=sys.stderr)


def quiet_libraries() -> None:
    """Silence the model libraries' chatter (load reports with raw ANSI codes, "Loading weights" bars);
    rag's own progress bars and messages stay. `rag --verbose` skips this."""
    import logging
    import os

    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    for name in ("transformers", "sentence_transformers", "huggingface_hub", "bm25s", "faiss"):
        logging.getLogger(name).setLevel(logging.ERROR)
