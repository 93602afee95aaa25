"""Errors the export pipeline reports to users as one line (scripts print it and exit 2)."""
from __future__ import annotations


class CheckpointError(Exception):
    """A checkpoint is not what the reader expects.

    The message is one line that names the file, the tensor (when there is one) and what was
    expected, so a script can print it alone, without a traceback.
    """

    def __init__(self, message: str, *, file: str | None = None, tensor: str | None = None):
        parts = []
        if file is not None:
            parts.append(str(file))
        if tensor is not None:
            parts.append(f"tensor '{tensor}'")
        prefix = ": ".join(parts)
        text = f"{prefix}: {message}" if prefix else message
        # One line, whatever the caller passed.
        super().__init__(" ".join(text.split()))
        self.file = file
        self.tensor = tensor
