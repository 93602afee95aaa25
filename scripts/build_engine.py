#!/usr/bin/env python3
"""Build a TensorRT engine (plan) from an exported ONNX with the NVFP4Linear plugin.

    python scripts/build_engine.py OUT.onnx --plugin build/libnvfp4_trt_plugin.so -o model.plan
    python scripts/build_engine.py OUT.onnx --plugin build/libnvfp4_trt_plugin.so -o model.plan --print-trtexec

The optimization profile (min/opt/max shapes of every input) comes from the export sidecar
OUT.onnx.json. Building needs the full TensorRT Python package (`import tensorrt`); where only the
lean runtime is installed the command says so and exits 2. --print-trtexec prints the equivalent
trtexec command lines (both plugin loading styles) and builds nothing.
Exit status: 0 built/printed, 2 bad input or no TensorRT builder.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from plugins.tensorrt_build import (  # noqa: E402
    DeployError,
    TensorRTUnavailable,
    build_engine,
    check_plugin_library,
    check_sidecar_matches_onnx,
    load_sidecar,
    trtexec_commands,
)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("onnx", help="exported model (OUT.onnx, with OUT.onnx.json next to it)")
    ap.add_argument("--plugin", required=True, help="TensorRT plugin library (build/libnvfp4_trt_plugin.so)")
    ap.add_argument("-o", "--output", default=None, help="plan file to write (default: OUT.plan)")
    ap.add_argument("--print-trtexec", action="store_true", help="print the equivalent trtexec commands and exit")
    ap.add_argument("--workspace-mib", type=int, default=None, help="builder workspace limit in MiB")
    ap.add_argument("--version-compatible", action="store_true",
                    help="build a version-compatible plan with the plugin library serialized into it "
                         "(runs on the lean runtime / Triton version-compatible=true)")
    args = ap.parse_args(argv)

    onnx_path = Path(args.onnx)
    plan = Path(args.output) if args.output else onnx_path.with_suffix(".plan")
    try:
        side = load_sidecar(onnx_path)
        check_sidecar_matches_onnx(onnx_path, side)
        plugin = check_plugin_library(args.plugin)
        if side["format"] != "plugin":
            print(f"note: {onnx_path} is a {side['format']} graph; the plugin library is loaded but unused", file=sys.stderr)
        if args.print_trtexec:
            cmds = trtexec_commands(onnx_path, plugin, plan, side)
            print("# plugin registered through getCreators (IPluginRegistry::loadLibrary):")
            print(cmds["dynamic"])
            print("# plugin registered by a static initializer when the library is dlopen()ed:")
            print(cmds["static"])
            print("# TensorRT 11 trtexec is strongly typed: precision follows the ONNX dtypes (no --fp16/--bf16).")
            return 0
        build_engine(onnx_path, plugin, plan, side,
                     workspace_bytes=args.workspace_mib * 2**20 if args.workspace_mib else None,
                     version_compatible=args.version_compatible)
    except (DeployError, TensorRTUnavailable) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {plan}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
