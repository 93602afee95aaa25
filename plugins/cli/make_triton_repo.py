"""Write a Triton model repository for a TensorRT engine built from an exported NVFP4 ONNX.

    python scripts/make_triton_repo.py model.plan --onnx OUT.onnx --plugin build/libnvfp4_trt_plugin.so \
        -o model_repository/ [--name NAME] [--max-batch-size N] [--instances N] [--no-dynamic-batching] [--force]

Writes model_repository/NAME/config.pbtxt (platform tensorrt_plan; inputs/outputs from the ONNX and
its sidecar OUT.onnx.json), model_repository/NAME/1/model.plan (a copy), and launch.sh + README.md
with the tritonserver command lines that load the plugin. The repository appears whole or not at
all; an existing one is replaced only with --force, and never when it holds one of the inputs.
Exit status: 0 written, 2 bad input (nothing is left behind).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from export.cli.runner import ArgumentParser, run_command


def build_parser() -> argparse.ArgumentParser:
    ap = ArgumentParser(prog="make_triton_repo.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("plan", help="TensorRT engine (scripts/build_engine.py or trtexec --saveEngine)")
    ap.add_argument("--onnx", required=True, help="the ONNX the engine was built from (its sidecar gives the I/O)")
    ap.add_argument("--plugin", required=True, help="TensorRT plugin library to load into tritonserver")
    ap.add_argument("-o", "--output", required=True, help="model repository folder to create")
    ap.add_argument("--name", default="nvfp4_llm", help="model name (folder inside the repository)")
    ap.add_argument("--max-batch-size", type=int, default=None,
                    help="Triton max_batch_size (default: the engine profile's max batch; 0 disables batching)")
    ap.add_argument("--instances", type=int, default=1, help="model instances per GPU (instance_group count)")
    ap.add_argument("--no-dynamic-batching", action="store_true", help="leave dynamic_batching out of the config")
    ap.add_argument("--force", action="store_true", help="replace an existing repository folder")
    return ap


def run(args: argparse.Namespace) -> int:
    from export.sidecar import check_sidecar_matches_onnx, load_sidecar, sidecar_path
    from plugins.triton import launch_commands, write_repository

    side = load_sidecar(args.onnx)
    check_sidecar_matches_onnx(args.onnx, side)
    repo = write_repository(args.plan, side, args.plugin, args.output, name=args.name,
                            max_batch_size=args.max_batch_size, instances=args.instances,
                            dynamic_batching=not args.no_dynamic_batching,
                            inputs=(args.onnx, sidecar_path(args.onnx)), force=args.force)
    print(f"wrote {repo}/{args.name}/config.pbtxt and {repo}/{args.name}/1/model.plan")
    for cmd in launch_commands(repo, Path(args.plugin)).values():
        print(cmd)
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), run, argv)
