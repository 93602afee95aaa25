"""Build a TensorRT engine (plan) from an exported ONNX with the project's plugin library.

    python scripts/build_engine.py OUT.onnx --plugin build/libnvfp4_trt_plugin.so -o model.plan [--force]
    python scripts/build_engine.py OUT.onnx [--plugin LIB] --print-trtexec

The optimization profile (min/opt/max shapes of every input) comes from the export sidecar
OUT.onnx.json, and so does the list of custom ops (NVFP4Linear, NVFP4MoE) the library must register,
checked once it is loaded. Building needs the full TensorRT Python package (`import tensorrt`);
where only the lean runtime is installed the command says so and exits 2. --print-trtexec prints the equivalent
trtexec command lines (both plugin loading styles) and builds nothing; it needs no built library
(default: where CMake puts it). The plan appears whole or not at all; an existing one is replaced
only with --force.
Exit status: 0 built/printed, 2 bad input or no TensorRT builder.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from export.cli.runner import ArgumentParser, run_command


def build_parser() -> argparse.ArgumentParser:
    ap = ArgumentParser(prog="build_engine.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("onnx", help="exported model (OUT.onnx, with OUT.onnx.json next to it)")
    ap.add_argument("--plugin", default=None,
                    help="TensorRT plugin library (default: $NVFP4_PLUGIN_LIB or build/libnvfp4_trt_plugin.so)")
    ap.add_argument("-o", "--output", default=None, help="plan file to write (default: OUT.plan)")
    ap.add_argument("--print-trtexec", action="store_true", help="print the equivalent trtexec commands and exit")
    ap.add_argument("--workspace-mib", type=int, default=None, help="builder workspace limit in MiB")
    ap.add_argument("--version-compatible", action="store_true",
                    help="build a version-compatible plan with the plugin library serialized into it "
                         "(runs on the lean runtime / Triton version-compatible=true)")
    ap.add_argument("--force", action="store_true", help="replace an existing plan file")
    return ap


def plugin_path(given: str | None) -> Path:
    from plugins.library import BUILD_DIR, PLUGIN_LIBRARY

    if given:
        return Path(given)
    return Path(os.environ.get("NVFP4_PLUGIN_LIB") or BUILD_DIR / PLUGIN_LIBRARY)


def run(args: argparse.Namespace) -> int:
    from export.errors import UserError
    from export.sidecar import check_sidecar_matches_onnx, describe_ops, load_sidecar, plugin_ops
    from plugins.tensorrt_build import build_engine, check_plugin_library, trtexec_commands

    if args.workspace_mib is not None and args.workspace_mib <= 0:
        raise UserError(f"--workspace-mib must be > 0, got {args.workspace_mib}")
    onnx_path = Path(args.onnx)
    plan = Path(args.output) if args.output else onnx_path.with_suffix(".plan")
    side = load_sidecar(onnx_path)
    check_sidecar_matches_onnx(onnx_path, side)
    plugin = plugin_path(args.plugin)
    if side["format"] != "plugin":
        print(f"note: {onnx_path} is a {side['format']} graph; the plugin library is loaded but unused", file=sys.stderr)
    if args.print_trtexec:
        # Printing needs no library; one that is there must be a plugin library, though.
        if plugin.exists():
            check_plugin_library(plugin)
        else:
            print(f"note: {plugin} is not built yet; the commands name it where it will be", file=sys.stderr)
        cmds = trtexec_commands(onnx_path, plugin, plan, side)
        if plugin_ops(side):
            print(f"# the graph's custom ops, which the plugin library must register: {describe_ops(plugin_ops(side))}")
        print("# plugin registered through getCreators (IPluginRegistry::loadLibrary):")
        print(cmds["dynamic"])
        print("# plugin registered by a static initializer when the library is dlopen()ed:")
        print(cmds["static"])
        print("# TensorRT 11 trtexec is strongly typed: precision follows the ONNX dtypes (no --fp16/--bf16).")
        return 0
    build_engine(onnx_path, plugin, plan, side,
                 workspace_bytes=args.workspace_mib * 2**20 if args.workspace_mib else None,
                 version_compatible=args.version_compatible, force=args.force)
    print(f"wrote {plan}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), run, argv)
