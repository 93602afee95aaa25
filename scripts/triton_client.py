#!/usr/bin/env python3
"""Greedy generation against a Triton server hosting the exported NVFP4 engine (KV-cache graph).

    python scripts/triton_client.py --url localhost:8000 --model nvfp4_llm --sidecar OUT.onnx.json \
        --prompt-ids 1,15043,3186 --max-new-tokens 16 [--protocol grpc] [--tokenizer MODEL_DIR --prompt TEXT]

Step 1 (prefill) sends the whole prompt with an empty cache (past_seq = 0); every decode step sends
the last token and feeds the previous response's present.* back as past_key_values.*.
Exit status: 0 done, 1 server/request failure, 2 bad input.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from plugins.tensorrt_build import DeployError, read_sidecar_file  # noqa: E402
from plugins.triton import build_infer_inputs, build_requested_outputs, greedy_generate  # noqa: E402


def client_module(protocol: str):
    if protocol == "grpc":
        import tritonclient.grpc as module
    else:
        import tritonclient.http as module
    return module


def make_infer(client, module, model: str, side: dict):
    """One Triton request per call: feeds (name -> array) in, outputs (name -> array) out."""
    def infer(feeds):
        result = client.infer(model, build_infer_inputs(module, feeds, side),
                              outputs=build_requested_outputs(module, side))
        return {s["name"]: result.as_numpy(s["name"]) for s in side["outputs"]}
    return infer


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", default="localhost:8000", help="server address (8000 HTTP, 8001 gRPC by default)")
    ap.add_argument("--protocol", choices=["http", "grpc"], default="http")
    ap.add_argument("--model", default="nvfp4_llm", help="model name in the repository")
    ap.add_argument("--sidecar", required=True, help="OUT.onnx.json written by scripts/export.py")
    ap.add_argument("--prompt-ids", default=None, help="comma-separated token ids")
    ap.add_argument("--tokenizer", default=None, help="checkpoint folder with a tokenizer (with --prompt)")
    ap.add_argument("--prompt", default=None, help="text prompt (needs --tokenizer)")
    ap.add_argument("--max-new-tokens", type=int, default=16)
    args = ap.parse_args(argv)
    try:
        side = read_sidecar_file(args.sidecar)
        tokenizer = None
        if args.prompt is not None:
            if not args.tokenizer:
                raise DeployError("--prompt needs --tokenizer MODEL_DIR")
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
            prompt = np.array(tokenizer(args.prompt)["input_ids"], dtype=np.int64)
        elif args.prompt_ids:
            try:
                prompt = np.array([int(t) for t in args.prompt_ids.split(",")], dtype=np.int64)
            except ValueError:
                raise DeployError(f"--prompt-ids {args.prompt_ids!r}: expected comma-separated integers") from None
        else:
            raise DeployError("give --prompt-ids or --prompt with --tokenizer")
        if prompt.size == 0 or prompt.min() < 0 or prompt.max() >= side["vocab_size"]:
            raise DeployError(f"prompt ids must be in [0, {side['vocab_size']})")
    except DeployError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    module = client_module(args.protocol)
    try:
        client = module.InferenceServerClient(url=args.url)
        if not client.is_model_ready(args.model):
            print(f"error: model {args.model!r} is not ready on {args.url}", file=sys.stderr)
            return 1
        new_ids = greedy_generate(make_infer(client, module, args.model, side), prompt, side, args.max_new_tokens)
    except DeployError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # tritonclient raises InferenceServerException / connection errors
        print(f"error: request to {args.url} failed: {str(err).splitlines()[0] if str(err) else type(err).__name__}",
              file=sys.stderr)
        return 1
    ids = new_ids[0].tolist()
    print("generated ids:", ",".join(str(i) for i in ids))
    if tokenizer is not None:
        print("generated text:", tokenizer.decode(ids))
    return 0


if __name__ == "__main__":
    sys.exit(main())
