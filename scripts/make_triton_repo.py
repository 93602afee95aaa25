#!/usr/bin/env python3
"""Write a Triton model repository for a TensorRT engine built from an exported NVFP4 ONNX.

    python scripts/make_triton_repo.py model.plan --onnx OUT.onnx --plugin build/libnvfp4_trt_plugin.so \
        -o model_repository/ [--name NAME] [--max-batch-size N] [--instances N] [--no-dynamic-batching]

Writes model_repository/NAME/config.pbtxt (platform tensorrt_plan; inputs/outputs from the ONNX and
its sidecar OUT.onnx.json), model_repository/NAME/1/model.plan (a copy), and launch.sh + README.md
with the tritonserver command lines that load the plugin.
Exit status: 0 written, 2 bad input (nothing is left behind).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from plugins.tensorrt_build import DeployError, check_sidecar_matches_onnx, load_sidecar  # noqa: E402
from plugins.triton import launch_commands, write_repository  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("plan", help="TensorRT engine (scripts/build_engine.py or trtexec --saveEngine)")
    ap.add_argument("--onnx", required=True, help="the ONNX the engine was built from (its sidecar gives the I/O)")
    ap.add_argument("--plugin", required=True, help="TensorRT plugin library to load into tritonserver")
    ap.add_argument("-o", "--output", required=True, help="model repository folder to create")
    ap.add_argument("--name", default="nvfp4_llm", help="model name (folder inside the repository)")
    ap.add_argument("--max-batch-size", type=int, default=None,
                    help="Triton max_batch_size (default: the engine profile's max batch; 0 disables batching)")
    ap.add_argument("--instances", type=int, default=1, help="model instances per GPU (instance_group count)")
    ap.add_argument("--no-dynamic-batching", action="store_true", help="leave dynamic_batching out of the config")
    args = ap.parse_args(argv)
    try:
        side = load_sidecar(args.onnx)
        check_sidecar_matches_onnx(args.onnx, side)
        repo = write_repository(args.plan, side, args.plugin, args.output, name=args.name,
                                max_batch_size=args.max_batch_size, instances=args.instances,
                                dynamic_batching=not args.no_dynamic_batching)
    except DeployError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {repo}/{args.name}/config.pbtxt and {repo}/{args.name}/1/model.plan")
    for cmd in launch_commands(repo, Path(args.plugin)).values():
        print(cmd)
    return 0


if __name__ == "__main__":
    sys.exit(main())
