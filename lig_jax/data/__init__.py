"""Dependency corpora: readers for PTB-SD, CoNLL-U, CoNLL-X and plain text, and a demo corpus."""

from .readers import (
    DEMO_NAME,
    FORMATS,
    Corpus,
    Sentence,
    demo_path,
    detect_format,
    read_corpus,
)

__all__ = ["DEMO_NAME", "FORMATS", "Corpus", "Sentence", "demo_path", "detect_format",
           "read_corpus"]
