"""Describe an NVFP4 checkpoint (AMD Quark, NVIDIA ModelOpt or compressed-tensors layout).

    python scripts/inspect_checkpoint.py MODEL_DIR [--json]

Prints the detected layout, one row per NVFP4 linear (name, in/out features, weight and input
global scales in the dequant direction, dequant_l2 = float64 Frobenius norm of the dequantized
weight), the excluded (unquantized) layers and totals. With --json, one JSON object on stdout:
{"format", "layers": [{"name", "in_features", "out_features", "weight_global_scale",
"input_global_scale" (null for W4A16), "dequant_l2"}], "excluded"}, plus for Mixture-of-Experts
checkpoints "moe_blocks": [{"name", "num_experts", "projections", "top_k", "normalize_topk",
"quantized_experts"}]. The table lists each MoE block on one line instead of its expert linears.
Exit status: 0, or 2 with one line on stderr for a bad checkpoint.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from export.cli.runner import ArgumentParser, run_command


def describe(model_dir) -> dict:
    import torch

    from export.checkpoint import open_checkpoint
    from export.checkpoint.moe import describe_expert_blocks
    from export.nvfp4 import dequantize_weight

    ck = open_checkpoint(model_dir)
    layers = []
    for name in ck.quantized_names:
        layer = ck.layer(name)
        w = dequantize_weight(layer.weight_packed, layer.weight_scale, layer.weight_global_scale,
                              dtype=torch.float64)
        layers.append({
            "name": name,
            "in_features": layer.in_features,
            "out_features": layer.out_features,
            "weight_global_scale": float(layer.weight_global_scale),
            "input_global_scale": None if layer.input_global_scale is None else float(layer.input_global_scale),
            "dequant_l2": float(w.norm()),
        })
    info = {"format": ck.format, "layers": layers, "excluded": list(ck.excluded)}
    moe = describe_expert_blocks(ck)
    if moe:  # Mixture-of-Experts checkpoints only
        info["moe_blocks"] = moe
    return info


def moe_lines(info: dict) -> tuple[list[str], set[str]]:
    """One line per MoE block (experts, routing, which are NVFP4), and the expert-linear names
    those lines stand for."""
    from export.checkpoint.moe import expert_ranges

    lines, covered = [], set()
    for b in info.get("moe_blocks", []):
        routing = "top-?" if b["top_k"] is None else \
            f"top-{b['top_k']}{' renormalised' if b['normalize_topk'] else ''}"
        lines.append(f"{b['name']}: {b['num_experts']} experts ({'/'.join(b['projections'])}), {routing}, "
                     f"NVFP4 experts: {expert_ranges(b['quantized_experts'])}")
        covered |= {f"{b['name']}.experts.{e}.{p}" for e in range(b["num_experts"]) for p in b["projections"]}
    return lines, covered


def print_table(info: dict, model_dir) -> None:
    moe, expert_names = moe_lines(info)
    layers = [r for r in info["layers"] if r["name"] not in expert_names]
    print(f"{model_dir}: {info['format']} NVFP4 checkpoint")
    width = max([len("name")] + [len(r["name"]) for r in layers])
    print(f"{'name':<{width}}  {'in':>6} {'out':>6}  {'weight_global':>13}  {'input_global':>13}  {'dequant_l2':>12}")
    for r in layers:
        ig = "-" if r["input_global_scale"] is None else f"{r['input_global_scale']:.6e}"
        print(f"{r['name']:<{width}}  {r['in_features']:>6} {r['out_features']:>6}  "
              f"{r['weight_global_scale']:>13.6e}  {ig:>13}  {r['dequant_l2']:>12.6g}")
    for line in moe:
        print(line)
    print(f"excluded ({len(info['excluded'])}): {', '.join(info['excluded']) or 'none'}")
    layers = info["layers"]
    w4a4 = sum(r["input_global_scale"] is not None for r in layers)
    params = sum(r["in_features"] * r["out_features"] for r in layers)
    print(f"total: {len(layers)} NVFP4 linears ({w4a4} W4A4, {len(layers) - w4a4} W4A16), "
          f"{params} quantized weights")


def build_parser() -> argparse.ArgumentParser:
    ap = ArgumentParser(prog="inspect_checkpoint.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    return ap


def run(args: argparse.Namespace) -> int:
    info = describe(args.model_dir)
    if args.json:
        print(json.dumps(info))
    else:
        print_table(info, args.model_dir)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), run, argv)
