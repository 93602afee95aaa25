#!/usr/bin/env python3
"""Export an NVFP4 checkpoint (AMD Quark, NVIDIA ModelOpt or llm-compressor) to ONNX.

    python scripts/export.py MODEL_DIR OUT.onnx [--format plugin|qdq] [--dtype float16|bfloat16|float32]
                             [--opset N] [--external-data] [--verify] [--force]

Writes OUT.onnx (+ OUT.onnx.data when external), and the sidecar OUT.onnx.json. Exit status:
0 success, 1 --verify found errors above tolerance, 2 bad input (one-line message, nothing written).
See docs/export.md.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model_dir", help="checkpoint folder (config.json + *.safetensors)")
    p.add_argument("out", help="output .onnx path; its folder must exist")
    p.add_argument("--format", choices=["plugin", "qdq"], default="plugin",
                   help="plugin: one trt.plugins::NVFP4Linear node per layer (default); qdq: FP4 Q/DQ for Blackwell")
    p.add_argument("--dtype", choices=["float16", "bfloat16", "float32"], default="float16",
                   help="activation precision of the graph (default float16)")
    p.add_argument("--opset", type=int, default=None, help="ai.onnx opset (plugin: 17..23, default 21; qdq: 23)")
    p.add_argument("--external-data", action="store_true",
                   help="always store weights in OUT.onnx.data (automatic above 256 MiB); uses less memory")
    p.add_argument("--verify", action="store_true",
                   help="check the graph layer by layer on CPU against the checkpoint (docs/verify.md)")
    p.add_argument("--ort-library", default=None, help="ONNX Runtime custom-op library for --verify of plugin graphs")
    p.add_argument("--force", action="store_true", help="overwrite an existing output")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from export.errors import CheckpointError
    from export.onnx_export import ExportError, export_model

    try:
        result = export_model(args.model_dir, args.out, fmt=args.format, dtype=args.dtype, opset=args.opset,
                              force=args.force, external_data=True if args.external_data else None,
                              progress=not args.quiet)
    except (ExportError, CheckpointError, FileNotFoundError, NotADirectoryError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(result.summary())
    if not args.verify:
        return 0
    from plugins.cli.verify import verify_after_export

    try:
        return verify_after_export(result.onnx_path, args.model_dir, library=args.ort_library)
    except (FileNotFoundError, ValueError) as e:  # no ORT custom-op library; graph and checkpoint disagree
        print(f"error: --verify: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
