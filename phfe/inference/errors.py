"""Errors raised while reading GGUF files and resolving model sources."""

from __future__ import annotations

import os


class GGUFError(Exception):
    """A GGUF file is unreadable or holds something PHFE cannot use; the message names the file."""

    def __init__(self, path: str | os.PathLike[str], message: str):
        self.path = os.fspath(path)
        self.reason = message
        super().__init__(f"{self.path}: {message}")


class GGUFFormatError(GGUFError):
    """The file is not a well-formed GGUF file (bad magic, truncated, out-of-range lengths...)."""


class UnsupportedTensorTypeError(GGUFError):
    """A tensor's ggml type has no PHFE kernel; names the tensor and the type."""

    def __init__(self, path: str | os.PathLike[str], tensor: str, type_name: str, supported: list[str]):
        self.tensor = tensor
        self.type_name = type_name
        super().__init__(
            path,
            f"tensor {tensor!r} has ggml type {type_name}, which PHFE cannot convert "
            f"(supported: {', '.join(supported)})",
        )


class TensorNotFoundError(GGUFError, KeyError):
    """A tensor name that the file does not hold."""

    def __init__(self, path: str | os.PathLike[str], tensor: str):
        self.tensor = tensor
        super().__init__(path, f"no tensor named {tensor!r}")

    def __str__(self) -> str:  # KeyError would quote the whole message
        return self.args[0]


class SourceError(Exception):
    """A model source string cannot be resolved to a verified local file."""


class ChecksumMismatchError(SourceError):
    """A fetched file's sha256 differs from the one its package declares."""
