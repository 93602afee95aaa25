"""Module-name matching for exclude/ignore lists, as the producers and vLLM interpret them.

- `re:<regex>`: compressed-tensors' convention, `re.match` against the module name.
- anything else: a shell wildcard (`fnmatch`, ModelOpt and Quark), which also covers exact names.
  A plain name without wildcards also matches the modules below it (`model.layers.0.mlp` covers
  `model.layers.0.mlp.down_proj`), as excluding a parent module excludes its children.
"""
from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable


def matches(name: str, pattern: str) -> bool:
    if pattern.startswith("re:"):
        return re.match(pattern[3:], name) is not None
    if fnmatch.fnmatchcase(name, pattern):
        return True
    return not any(c in pattern for c in "*?[") and name.startswith(pattern + ".")


def matches_any(name: str, patterns: Iterable[str]) -> bool:
    return any(matches(name, p) for p in patterns)
