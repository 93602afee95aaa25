"""The config.json fields the pipeline sizes things by, checked before anything is allocated from them.

transformers trusts config.json: `num_hidden_layers: 1000000000` builds a billion-entry list before
anything fails, `max_position_embeddings: -5` is accepted, a string where a list belongs is read
character by character. `check_model_config` checks the JSON type and range of every field the
export and the quantizer use, and that the sizes agree with the tensors actually stored (the layer
count, the embedding's shape), so that an absurd value is one line naming the field.
"""
from __future__ import annotations

import math
import re
from typing import Callable, Iterable

from export.errors import CheckpointError, quote

MAX_SIZE = 2**31 - 1
REQUIRED_SIZES = ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size")
OPTIONAL_SIZES = ("num_key_value_heads", "head_dim", "max_position_embeddings")
OPTIONAL_POSITIVE_NUMBERS = ("rms_norm_eps", "rope_theta")
OPTIONAL_BOOLS = ("tie_word_embeddings", "attention_bias", "mlp_bias")
_LAYER_INDEX = re.compile(r"^model\.layers\.(\d+)\.")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def check_model_config(config: dict, file: str, tensor_names: Iterable[str] | None = None,
                       shape_of: Callable[[str], list[int]] | None = None) -> None:
    """Raise CheckpointError (naming `file` and the field) unless the fields are well typed, in
    range, and (given the stored tensor names and their shapes) agree with the tensors."""
    def fail(field: str, expected: str) -> None:
        raise CheckpointError(f"field {field!r} must be {expected}, got {quote(config.get(field))}", file=file)

    archs = config.get("architectures")
    if archs is not None and (not isinstance(archs, list) or not all(isinstance(a, str) for a in archs)):
        fail("architectures", "null or a list of strings")
    for field in REQUIRED_SIZES:
        v = config.get(field)
        if not _is_int(v) or not 0 < v <= MAX_SIZE:
            fail(field, f"an integer in [1, {MAX_SIZE}]")
    for field in OPTIONAL_SIZES:
        v = config.get(field)
        if v is not None and (not _is_int(v) or not 0 < v <= MAX_SIZE):
            fail(field, f"null or an integer in [1, {MAX_SIZE}]")
    window = config.get("sliding_window")
    if window is not None and (not _is_int(window) or not 0 < window <= MAX_SIZE):
        fail("sliding_window", f"null or an integer in [1, {MAX_SIZE}]")
    for field in OPTIONAL_POSITIVE_NUMBERS:
        v = config.get(field)
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)
                              or v <= 0):
            fail(field, "a finite number > 0")
    for field in OPTIONAL_BOOLS:
        if field in config and not isinstance(config[field], bool):
            fail(field, "true or false")
    for field in ("rope_parameters", "rope_scaling"):
        if config.get(field) is not None and not isinstance(config[field], dict):
            fail(field, "null or an object")
    layers = config["num_hidden_layers"]
    types = config.get("layer_types")
    if types is not None and (not isinstance(types, list) or len(types) != layers
                              or not all(isinstance(t, str) for t in types)):
        fail("layer_types", f"a list of {layers} strings (one per layer)")

    if tensor_names is None:
        return
    names = list(tensor_names)
    stored = {int(m.group(1)) for m in map(_LAYER_INDEX.match, names) if m}
    if stored and (len(stored) != layers or max(stored) != layers - 1):  # i.e. not exactly 0..layers-1
        raise CheckpointError(f"field 'num_hidden_layers' is {layers} but the tensors hold decoder layers "
                              f"{_ranges(stored)}", file=file)
    if shape_of is None:
        return
    embed = "model.embed_tokens.weight"
    if embed in names:
        expected = [config["vocab_size"], config["hidden_size"]]
        got = list(shape_of(embed))
        if got != expected:
            raise CheckpointError(f"vocab_size x hidden_size is {expected[0]} x {expected[1]} but tensor '{embed}' "
                                  f"has shape {got}", file=file)
    # Output sizes (rows; a packed NVFP4 weight has them too) of the first layer's linears.
    heads = config["num_attention_heads"]
    head_dim = config.get("head_dim") or config["hidden_size"] // heads
    kv_heads = config.get("num_key_value_heads") or heads
    for tensor, rows, fields in (
            ("model.layers.0.self_attn.q_proj.weight", heads * head_dim, "num_attention_heads x head_dim"),
            ("model.layers.0.self_attn.k_proj.weight", kv_heads * head_dim, "num_key_value_heads x head_dim"),
            ("model.layers.0.mlp.gate_proj.weight", config["intermediate_size"], "intermediate_size")):
        if tensor in names:
            got = list(shape_of(tensor))
            if not got or got[0] != rows:
                raise CheckpointError(f"{fields} is {rows} but tensor '{tensor}' has shape {got}", file=file)


def _ranges(indices: set[int]) -> str:
    """0..3, 7 for {0, 1, 2, 3, 7} (at most a few runs shown)."""
    runs, start, prev = [], None, None
    for i in sorted(indices):
        if start is None:
            start = prev = i
        elif i == prev + 1:
            prev = i
        else:
            runs.append((start, prev))
            start = prev = i
    runs.append((start, prev))
    text = ", ".join(f"{a}..{b}" if a != b else str(a) for a, b in runs[:4])
    return text + (", ..." if len(runs) > 4 else "")
