"""Greedy generation against a Triton server hosting the exported NVFP4 engine (KV-cache graph).

    python scripts/triton_client.py --url localhost:8000 --model nvfp4_llm --sidecar OUT.onnx.json \
        --prompt-ids 1,15043,3186 --max-new-tokens 16 [--protocol grpc] [--tokenizer MODEL_DIR --prompt TEXT]

Step 1 (prefill) sends the whole prompt with an empty cache (past_seq = 0); every decode step sends
the last token and feeds the previous response's present.* back as past_key_values.*.
Exit status: 0 done, 1 server/request failure, 2 bad input.
"""
from __future__ import annotations

import argparse

from export.cli.runner import ArgumentParser, run_command
from export.errors import DeployError, one_line, quote

EXIT_SERVER = 1


def build_parser() -> argparse.ArgumentParser:
    ap = ArgumentParser(prog="triton_client.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", default="localhost:8000", help="server address (8000 HTTP, 8001 gRPC by default)")
    ap.add_argument("--protocol", choices=["http", "grpc"], default="http")
    ap.add_argument("--model", default="nvfp4_llm", help="model name in the repository")
    ap.add_argument("--sidecar", required=True, help="OUT.onnx.json written by scripts/export.py")
    ap.add_argument("--prompt-ids", default=None, help="comma-separated token ids")
    ap.add_argument("--tokenizer", default=None, help="checkpoint folder with a tokenizer (with --prompt)")
    ap.add_argument("--prompt", default=None, help="text prompt (needs --tokenizer)")
    ap.add_argument("--max-new-tokens", type=int, default=16)
    return ap


def client_module(protocol: str):
    if protocol == "grpc":
        import tritonclient.grpc as module
    else:
        import tritonclient.http as module
    return module


def make_infer(client, module, model: str, side: dict):
    """One Triton request per call: feeds (name -> array) in, outputs (name -> array) out."""
    from plugins.triton import build_infer_inputs, build_requested_outputs

    def infer(feeds):
        result = client.infer(model, build_infer_inputs(module, feeds, side),
                              outputs=build_requested_outputs(module, side))
        return {s["name"]: result.as_numpy(s["name"]) for s in side["outputs"]}
    return infer


def load_tokenizer(folder: str):
    """The tokenizer saved in `folder`, or DeployError naming the folder."""
    from pathlib import Path

    path = Path(folder)
    if not path.is_dir():
        raise DeployError(f"{path}: --tokenizer must be a folder with a tokenizer (tokenizer.json ...)")
    try:
        import transformers

        transformers.utils.logging.set_verbosity_error()
        return transformers.AutoTokenizer.from_pretrained(str(path))
    except Exception as e:  # noqa: BLE001 - transformers raises OSError, ValueError, KeyError... for a bad folder
        raise DeployError(f"{path}: no usable tokenizer in this folder ({one_line(e, 200)})") from None


def prompt_ids(args: argparse.Namespace, side: dict):
    import numpy as np

    tokenizer = None
    if args.prompt is not None:
        if not args.tokenizer:
            raise DeployError("--prompt needs --tokenizer MODEL_DIR")
        tokenizer = load_tokenizer(args.tokenizer)
        prompt = np.array(tokenizer(args.prompt)["input_ids"], dtype=np.int64)
    elif args.prompt_ids:
        try:
            prompt = np.array([int(t) for t in args.prompt_ids.split(",")], dtype=np.int64)
        except (ValueError, OverflowError):
            raise DeployError(f"--prompt-ids {quote(args.prompt_ids)}: expected comma-separated integers") from None
    else:
        raise DeployError("give --prompt-ids or --prompt with --tokenizer")
    if prompt.size == 0 or prompt.min() < 0 or prompt.max() >= side["vocab_size"]:
        raise DeployError(f"prompt ids must be in [0, {side['vocab_size']})")
    return prompt, tokenizer


def run(args: argparse.Namespace) -> int:
    import sys

    from export.sidecar import read_sidecar
    from plugins.triton import greedy_generate

    side = read_sidecar(args.sidecar)
    if not 0 <= args.max_new_tokens <= 1_000_000:
        raise DeployError(f"--max-new-tokens must be in [0, 1000000], got {args.max_new_tokens}")
    prompt, tokenizer = prompt_ids(args, side)
    module = client_module(args.protocol)
    try:
        client = module.InferenceServerClient(url=args.url)
        if not client.is_model_ready(args.model):
            print(f"error: model {args.model!r} is not ready on {args.url}", file=sys.stderr)
            return EXIT_SERVER
        new_ids = greedy_generate(make_infer(client, module, args.model, side), prompt, side, args.max_new_tokens)
    except DeployError:
        raise
    except Exception as err:  # noqa: BLE001 - tritonclient raises InferenceServerException / connection errors
        print(f"error: request to {args.url} failed: {one_line(err, 300) or type(err).__name__}", file=sys.stderr)
        return EXIT_SERVER
    ids = new_ids[0].tolist()
    print("generated ids:", ",".join(str(i) for i in ids))
    if tokenizer is not None:
        print("generated text:", tokenizer.decode(ids))
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), run, argv)
