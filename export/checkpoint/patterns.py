"""Module-name matching for exclude/ignore lists, as the producers and vLLM interpret them.

- `re:<regex>`: compressed-tensors' convention, `re.match` against the module name.
- anything else: a shell wildcard (`fnmatch`, ModelOpt and Quark), which also covers exact names.
  A plain name without wildcards also matches the modules below it (`model.layers.0.mlp` covers
  `model.layers.0.mlp.down_proj`), as excluding a parent module excludes its children.

Lists read from a config or the command line go through `pattern_list` first: a string where a
list belongs, a non-string entry or an invalid `re:` expression is one line naming where it came from.
"""
from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from typing import Callable

from export.errors import UserError, quote


def matches(name: str, pattern: str) -> bool:
    if pattern.startswith("re:"):
        return re.match(pattern[3:], name) is not None
    if fnmatch.fnmatchcase(name, pattern):
        return True
    return not any(c in pattern for c in "*?[") and name.startswith(pattern + ".")


def matches_any(name: str, patterns: Iterable[str]) -> bool:
    return any(matches(name, p) for p in patterns)


def pattern_list(value, where: str, error: Callable[[str], Exception] = UserError) -> list[str]:
    """`value` as a list of valid patterns (None = empty); else `error(one line naming where)`."""
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(p, str) for p in value):
        raise error(f"{where} must be a list of module names or patterns, got {quote(value)}")
    for p in value:
        if p.startswith("re:"):
            try:
                re.compile(p[3:])
            except (re.error, RecursionError, OverflowError) as e:
                raise error(f"{where}: {quote(p)} is not a valid regular expression ({e})") from None
    return list(value)
