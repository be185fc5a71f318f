"""PHFE: Posthumanity's First Exam — in-context learning versus memorization in GGUF models."""

__version__ = "0.1.0"
