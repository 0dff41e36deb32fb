"""rag: open-domain question answering over your own Wikipedia."""
from rag.types import Answer, Hit, Passage, QAExample, RagError, Span

__all__ = ["Answer", "Hit", "Passage", "QAExample", "RagError", "Span"]
__version__ = "0.1.0"
