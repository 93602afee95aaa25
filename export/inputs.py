"""Reading the files a command is given, refusing what would hang or exhaust memory.

A FIFO or a device named as a config file blocks or never ends; a multi-gigabyte "config.json"
would be read whole before the JSON parser could say anything. Every JSON the pipeline reads
(config.json, hf_quant_config.json, a safetensors index, the export sidecar) goes through
`read_json_object`; other inputs are checked with `regular_file` before they are opened.
"""
from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Callable

from export.errors import UserError

# Larger than any real config or sidecar (a 100-layer sidecar is ~100 KB).
MAX_JSON_BYTES = 64 * 1024**2


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def regular_file(path: str | os.PathLike, what: str = "file", *, error: Callable[[str], Exception] = UserError,
                 max_bytes: int | None = None) -> Path:
    """`path` if it is an existing regular file (symlinks followed) no larger than `max_bytes`;
    else `error(one line)` is raised."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise error(f"{path}: {what} not found") from None
    except OSError as e:
        raise error(f"{path}: cannot read it ({e.strerror})") from None
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{path}: is {_kind(st.st_mode)}; expected a regular file ({what})")
    if max_bytes is not None and st.st_size > max_bytes:
        raise error(f"{path}: {st.st_size:,} bytes, more than the {max_bytes:,} accepted for a {what}")
    return path


def read_json_object(path: str | os.PathLike, what: str = "JSON file", *,
                     error: Callable[[str], Exception] = UserError) -> dict:
    """The JSON object in `path`; `error(one line)` for a missing, special, huge, unreadable or
    malformed file, or one that holds something other than an object."""
    path = regular_file(path, what, error=error, max_bytes=MAX_JSON_BYTES)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise error(f"{path}: is not UTF-8 text") from None
    except OSError as e:
        raise error(f"{path}: cannot read it ({e.strerror})") from None
    try:
        data = json.loads(text)
    except RecursionError:
        raise error(f"{path}: JSON nested too deeply") from None
    except ValueError as e:
        raise error(f"{path}: is not valid JSON ({e})") from None
    if not isinstance(data, dict):
        raise error(f"{path}: expected a JSON object ({what}), got {type(data).__name__}")
    return data
