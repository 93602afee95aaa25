"""The sidecar JSON written next to an exported model (`OUT.onnx.json`): what a TensorRT build
(shape profiles), Triton (I/O names and types) and `--verify` need to know without parsing the
ONNX file. Its schema is fixed by the project's interfaces (docs/export.md shows an example)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from export.contract import op_contract


def sidecar_path(onnx_path: str | os.PathLike) -> Path:
    p = Path(onnx_path)
    return p.with_name(p.name + ".json")


@dataclass(frozen=True)
class ShapeLimits:
    """Shape-profile suggestions: batch and total (past + new) tokens per sequence."""
    max_batch: int = 8
    max_total: int = 4096  # capped by max_position_embeddings
    opt_batch: int = 1
    opt_seq: int = 128  # a prefill chunk; decode (seq=1) lies inside the profile too
    opt_past: int = 128


def io_spec(*, dtype: str, num_layers: int, num_kv_heads: int, head_dim: int, vocab_size: int,
            max_position_embeddings: int, limits: ShapeLimits = ShapeLimits()) -> tuple[list, list]:
    """(inputs, outputs) entries of the sidecar, in the graph's I/O order."""
    total = max(2, min(limits.max_total, max_position_embeddings))
    b_max, b_opt = limits.max_batch, min(limits.opt_batch, limits.max_batch)
    s_opt = min(limits.opt_seq, total // 2)
    p_opt = min(limits.opt_past, total - s_opt)
    kv, hd = num_kv_heads, head_dim

    def entry(name, dt, shape, mn, opt, mx):
        return {"name": name, "dtype": dt, "shape": shape, "min": mn, "opt": opt, "max": mx}

    inputs = [
        entry("input_ids", "int64", ["batch", "sequence"], [1, 1], [b_opt, s_opt], [b_max, total]),
        entry("position_ids", "int64", ["batch", "sequence"], [1, 1], [b_opt, s_opt], [b_max, total]),
        entry("attention_mask", "int64", ["batch", "total_sequence"], [1, 1], [b_opt, p_opt + s_opt], [b_max, total]),
    ]
    outputs = [{"name": "logits", "dtype": dtype, "shape": ["batch", "sequence", vocab_size]}]
    for i in range(num_layers):
        for kind in ("key", "value"):
            inputs.append(entry(f"past_key_values.{i}.{kind}", dtype, ["batch", kv, "past_sequence", hd],
                                [1, kv, 0, hd], [b_opt, kv, p_opt, hd], [b_max, kv, total - 1, hd]))
    for i in range(num_layers):
        for kind in ("key", "value"):
            outputs.append({"name": f"present.{i}.{kind}", "dtype": dtype,
                            "shape": ["batch", kv, "total_sequence", hd]})
    return inputs, outputs


def build_sidecar(*, fmt: str, dtype: str, architecture: str, num_layers: int, num_kv_heads: int,
                  head_dim: int, vocab_size: int, max_position_embeddings: int, quantized_layers: int,
                  excluded_layers: list[str], source_checkpoint: str, checkpoint_format: str,
                  limits: ShapeLimits = ShapeLimits()) -> dict:
    inputs, outputs = io_spec(dtype=dtype, num_layers=num_layers, num_kv_heads=num_kv_heads,
                              head_dim=head_dim, vocab_size=vocab_size,
                              max_position_embeddings=max_position_embeddings, limits=limits)
    c = op_contract()
    plugin = None
    if fmt == "plugin":
        plugin = {"name": c["name"], "version": str(c["plugin_version"]),
                  "namespace": str(c["plugin_namespace"]), "domain": c["domain"]}
    return {
        "format": fmt, "dtype": dtype, "architecture": architecture, "num_layers": num_layers,
        "num_kv_heads": num_kv_heads, "head_dim": head_dim, "vocab_size": vocab_size,
        "inputs": inputs, "outputs": outputs, "plugin": plugin,
        "quantized_layers": quantized_layers, "excluded_layers": list(excluded_layers),
        "source_checkpoint": source_checkpoint, "checkpoint_format": checkpoint_format,
    }

