"""Export an NVFP4 checkpoint (AMD Quark, NVIDIA ModelOpt or llm-compressor) to ONNX.

    python scripts/export.py MODEL_DIR OUT.onnx [--format plugin|qdq] [--dtype float16|bfloat16|float32]
                             [--opset N] [--external-data] [--verify [--keep-unverified]] [--force]

Writes OUT.onnx (+ OUT.onnx.data when external), and the sidecar OUT.onnx.json, all at once or
not at all; existing files are replaced only with --force. With --verify the written graph is
checked layer by layer on CPU (plugins.verify, as the verify command does) before it is published:
if the check fails nothing is written (unless --keep-unverified). Exit status: 0 success, 1
--verify found a layer outside its bound, 2 bad input (one-line message, nothing written).
See docs/export.md. The command lives beside the deploy-side ones because --verify runs the graph
on a runtime (export/ never imports plugins/).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from export.cli.runner import ArgumentParser, run_command
from export.dtypes import ACTIVATION_DTYPES
from export.sidecar import FORMATS


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="export.py", description=__doc__.split("\n\n")[0])
    p.add_argument("model_dir", help="checkpoint folder (config.json + *.safetensors)")
    p.add_argument("out", help="output .onnx path; its folder must exist")
    p.add_argument("--format", choices=FORMATS, default="plugin",
                   help="plugin: one trt.plugins::NVFP4Linear node per layer (default); qdq: FP4 Q/DQ for Blackwell")
    p.add_argument("--dtype", choices=ACTIVATION_DTYPES, default="float16",
                   help="activation precision of the graph (default float16)")
    p.add_argument("--opset", type=int, default=None, help="ai.onnx opset (plugin: 17..23, default 21; qdq: 23)")
    p.add_argument("--external-data", action="store_true",
                   help="always store weights in OUT.onnx.data (automatic above 256 MiB); uses less memory")
    p.add_argument("--verify", action="store_true",
                   help="check the graph layer by layer on CPU against the checkpoint before publishing it "
                        "(docs/verify.md)")
    p.add_argument("--keep-unverified", action="store_true",
                   help="with --verify: write the export even when the check fails")
    p.add_argument("--ort-library", default=None, help="ONNX Runtime custom-op library for --verify of plugin graphs")
    p.add_argument("--force", action="store_true", help="replace existing output files")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def verify_staged(onnx_path: Path, args: argparse.Namespace) -> bool:
    """The --verify check of the staged export: prints the layer table, returns whether it passed."""
    from plugins.cli.verify import check_export

    return check_export(onnx_path, args.model_dir, library=args.ort_library)


def run(args: argparse.Namespace) -> int:
    from export.onnx_export import export_model

    check = (lambda path: verify_staged(path, args)) if args.verify else None
    result = export_model(args.model_dir, args.out, fmt=args.format, dtype=args.dtype, opset=args.opset,
                          force=args.force, external_data=True if args.external_data else None,
                          progress=not args.quiet, check=check, keep_unchecked=args.keep_unverified)
    if result.published:
        print(result.summary())
    if result.check_passed is None:
        return 0
    if result.check_passed:
        print("verify: PASSED")
        return 0
    print("verify: FAILED (a layer is outside its bound); " + (
        "written anyway (--keep-unverified)" if result.published
        else "nothing was written (--keep-unverified writes it anyway)"))
    return 1


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), run, argv)
