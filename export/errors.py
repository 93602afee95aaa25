"""The errors every command reports to its user as one line, exit status 2 (export/cli/runner.py).

`UserError` is the base: bad input, or an output that cannot be written. Its message is one line
that names the file, tensor, field or node and says what was expected; anything the user gave that
is echoed in it is capped (`quote`), so a hostile value cannot flood the terminal.
"""
from __future__ import annotations

# Longest echo of a user-given value inside a message.
MAX_ECHO = 80


def one_line(text: object, limit: int = 2000) -> str:
    """`text` with all whitespace runs (newlines included) collapsed to one space, capped."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def first_line(error: BaseException) -> str:
    """The first non-blank line of an exception's message, or its type's name when it has none
    (a third-party library's message can run to a page: the user gets its headline)."""
    return next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)


def quote(value: object, limit: int = MAX_ECHO) -> str:
    """repr() of a user-given value, capped at `limit` characters (with the full length said)."""
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[: limit - 1]}… ({len(text)} characters)"


class UserError(Exception):
    """Bad input or an unwritable output: the command prints the one-line message and exits 2."""

    def __init__(self, message: object):
        super().__init__(one_line(message))


class UsageError(UserError):
    """Bad command-line arguments."""


class CheckpointError(UserError):
    """A checkpoint is not what the reader expects.

    The message names the file, the tensor (when there is one) and what was expected.
    """

    def __init__(self, message: str, *, file: str | None = None, tensor: str | None = None):
        parts = []
        if file is not None:
            parts.append(str(file))
        if tensor is not None:
            parts.append(f"tensor '{tensor}'")
        prefix = ": ".join(parts)
        super().__init__(f"{prefix}: {message}" if prefix else message)
        self.file = file
        self.tensor = tensor


class ExportError(UserError):
    """Bad export arguments or output path."""


class DeployError(UserError, ValueError):
    """Bad deploy input (sidecar, plugin library, plan file, Triton settings)."""


class OutputError(UserError):
    """An output cannot be written (exists, overlaps an input, read-only, disk full, ...)."""


class Unavailable(UserError):
    """Something the command needs is not on this machine: a CUDA GPU, a built library, the
    TensorRT builder."""


class TensorRTUnavailable(Unavailable):
    """The full TensorRT builder (`import tensorrt`) is not installed here."""


class ReportError(UserError, ValueError):
    """A benchmark report (the JSON scripts/bench writes) lacks a field its readers rely on."""
