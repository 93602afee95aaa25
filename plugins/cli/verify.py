"""The verify command: an exported graph, run by the runtime under test, against the checkpoint.

    python scripts/verify.py OUT.onnx --model CKPT [--runner cpu|trt|all] [--engine X.plan]
        [--text FILE] [--source HF_DIR] [--tokens N] [--context N] [--report out.json [--force]]

1. Layer by layer (the judgement): every NVFP4 node's output against the checkpoint's layer applied
   to the runtime's own input to that node (plugins.verify.layers), bounds from the op contract's
   formula and the activation dtype (plugins.verify.tolerance).
2. Accuracy (where the checkpoint folder has a tokenizer, or --text is given): perplexity, top-1
   agreement and KL on a text against the reference model in float64, judged against the
   reference's own noise; against the unquantized source with --source (reported).

Runtimes: cpu = ONNX Runtime with the custom-op library (plugin graphs; bfloat16 as its float32
emulation) or onnx.reference (qdq graphs); trt = TensorRT where the full package and a GPU exist.
Exit status: 0 every check passed, 1 a check failed, 2 bad input or a requested runtime unavailable.
"""
from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from export.cli.runner import ArgumentParser, run_command
from export.errors import DeployError, ExportError, TensorRTUnavailable, first_line

DEFAULT_TOKENS = 512
DEFAULT_CONTEXT = 128


def build_parser() -> argparse.ArgumentParser:
    from plugins.verify.accuracy import DEFAULT_TEXT

    ap = ArgumentParser(prog="verify.py", description=__doc__.split("\n\n")[0])
    ap.add_argument("onnx", help="exported model (OUT.onnx with OUT.onnx.json next to it)")
    ap.add_argument("--model", required=True, help="the checkpoint folder the ONNX was exported from")
    ap.add_argument("--runner", choices=["cpu", "trt", "all"], default="all",
                    help="runtime under test (all: the CPU runtime, plus TensorRT where installed)")
    ap.add_argument("--engine", default=None, help="a TensorRT plan to run (its own outputs only: the model-level report)")
    ap.add_argument("--text", default=None,
                    help=f"text for the accuracy report (default: {DEFAULT_TEXT.name}, shipped with the package)")
    ap.add_argument("--tokenizer", default=None, help="tokenizer folder (default: the checkpoint folder)")
    ap.add_argument("--source", default=None, help="the unquantized Hugging Face model, to report the quantization's effect")
    ap.add_argument("--tokens", type=int, default=DEFAULT_TOKENS, help=f"text tokens used (default {DEFAULT_TOKENS})")
    ap.add_argument("--context", type=int, default=DEFAULT_CONTEXT, help=f"tokens per window (default {DEFAULT_CONTEXT})")
    ap.add_argument("--report", default=None, help="write every number and the verdict as JSON")
    ap.add_argument("--force", action="store_true", help="replace an existing --report file")
    ap.add_argument("--seed", type=int, default=0, help="seed of the token ids of the layer check when there is no tokenizer")
    ap.add_argument("--ort-lib", default=None, help="ONNX Runtime custom-op library (default: NVFP4_ORT_LIB or build/)")
    ap.add_argument("--plugin", default=None, help="TensorRT plugin library (default: NVFP4_PLUGIN_LIB or build/)")
    return ap


def cpu_runtime_factory(side: dict, library=None):
    from plugins.verify.runtimes import cpu_runtime

    try:
        return cpu_runtime(side, library)
    except FileNotFoundError as err:
        raise DeployError(str(err)) from None


def trt_runtime_factory(side: dict, plugin, workdir: Path, engine=None):
    """Raises TensorRTUnavailable where the full TensorRT package is not installed."""
    from plugins.library import find_plugin_library
    from plugins.tensorrt_build import check_plugin_library, import_tensorrt
    from plugins.verify.runtimes import TrtRuntime

    import_tensorrt()
    try:
        lib = check_plugin_library(find_plugin_library(plugin))
    except FileNotFoundError as err:
        raise DeployError(str(err)) from None
    return lambda path, extra: TrtRuntime(path, extra, side["dtype"], plugin=lib, workdir=workdir, side=side, engine=engine)


def layer_ids(side: dict, tokenizer, text: str | None, seed: int):
    """Token ids [2, 9] for the layer check: from the text where there is a tokenizer (activations
    as in use), else seeded random ids."""
    import numpy as np

    from plugins.verify.layers import random_ids

    if tokenizer is None or text is None:
        return random_ids(side, seed, tokens=9)
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) < 18:
        return random_ids(side, seed, tokens=9)
    return np.asarray(ids[:18], dtype=np.int64).reshape(2, 9)


def check_checkpoint_matches(checkpoint, side: dict, model_dir) -> None:
    from export.modeling import decoder_config

    cfg = decoder_config(checkpoint)
    if side.get("checkpoint_format") and checkpoint.format != side["checkpoint_format"]:
        raise DeployError(f"{model_dir}: a {checkpoint.format} checkpoint, but the sidecar says the ONNX came "
                          f"from a {side['checkpoint_format']} checkpoint")
    for key, value in {"num_layers": cfg.num_layers, "num_kv_heads": cfg.num_kv_heads, "head_dim": cfg.head_dim,
                       "vocab_size": cfg.vocab_size}.items():
        if side[key] != value:
            raise DeployError(f"{model_dir}: {key} = {value}, but the ONNX sidecar says {side[key]} "
                              "(was the ONNX exported from another checkpoint?)")


def run_layer_checks(onnx_path, side: dict, checkpoint, factories: dict, ids) -> list:
    from plugins.verify.layers import check_layers

    return [check_layers(onnx_path, side, make, ids, checkpoint) for make in factories.values()]


def check_export(onnx_path, model_dir, *, library=None, out=print) -> bool:
    """`export.py --verify`: the layer-by-layer check on the CPU runtime, printed; whether it passed.
    Raises ExportError (one line) when the runtime cannot load or run the graph."""
    from plugins.verify.layers import verify_layers

    ids = layer_ids(_sidecar(onnx_path), _tokenizer(model_dir), _default_text(), 0)
    try:
        report = verify_layers(onnx_path, model_dir, library=library, ids=ids)
    except FileNotFoundError as err:  # no ORT custom-op library
        raise ExportError(f"--verify: {err}") from None
    except ValueError as err:  # graph and checkpoint disagree
        raise ExportError(f"--verify: {err}") from None
    except Exception as err:  # the runtime cannot load or run the graph (e.g. an op its library lacks)
        raise ExportError(f"--verify: running {onnx_path} failed: {first_line(err)}") from None
    out(report.table())
    out("verify: PASSED" if report.ok else "verify: FAILED (a layer is outside its bound)")
    return report.ok


def _sidecar(onnx_path) -> dict:
    from export.sidecar import load_sidecar

    return load_sidecar(onnx_path)


def _default_text() -> str:
    from plugins.verify.accuracy import DEFAULT_TEXT

    return DEFAULT_TEXT.read_text(encoding="utf-8")


def _tokenizer(directory):
    from plugins.verify.accuracy import load_tokenizer

    return load_tokenizer(directory)


def run(args: argparse.Namespace) -> int:
    from export.checkpoint import open_checkpoint
    from export.inputs import regular_file
    from export.outputs import check_outputs, write_file
    from export.sidecar import check_sidecar_matches_onnx, load_sidecar
    from plugins.tensorrt_build import check_plan_file
    from plugins.verify import accuracy

    inputs = [p for p in (args.onnx, args.model, args.engine, args.text, args.source) if p]
    if args.report:  # before the work, not after it
        check_outputs([args.report], inputs=inputs, force=args.force)
    side = load_sidecar(args.onnx)
    check_sidecar_matches_onnx(args.onnx, side)
    if args.engine:
        check_plan_file(args.engine)
        if args.runner == "cpu":
            raise DeployError("--engine needs --runner trt or all")
    for name in ("tokens", "context"):
        if getattr(args, name) < 2:
            raise DeployError(f"--{name} must be at least 2")
    checkpoint = open_checkpoint(args.model)
    check_checkpoint_matches(checkpoint, side, args.model)
    text_path = regular_file(args.text, "text", error=DeployError) if args.text else accuracy.DEFAULT_TEXT
    try:
        text = text_path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DeployError(f"{text_path}: is not UTF-8 text") from None
    tokenizer = accuracy.load_tokenizer(args.tokenizer or args.model)
    if tokenizer is None and (args.text or args.tokenizer or args.source or args.engine):
        raise DeployError(f"{args.tokenizer or args.model}: no tokenizer there; the accuracy report needs one "
                          "(--tokenizer DIR)" + (", and it is the only check of a given --engine" if args.engine else ""))

    notes = []
    with tempfile.TemporaryDirectory(prefix="verify.") as tmp:
        factories = {}
        if args.runner in ("cpu", "all") and not args.engine:
            factories["cpu"] = cpu_runtime_factory(side, args.ort_lib)
        if args.runner in ("trt", "all") or args.engine:
            try:
                factories["trt"] = trt_runtime_factory(side, args.plugin, Path(tmp), engine=args.engine)
            except TensorRTUnavailable as err:
                if args.runner == "trt" or args.engine:
                    raise
                notes.append(f"TensorRT skipped: {err}")
        try:
            ids = layer_ids(side, tokenizer, text, args.seed)
            layer_reports = [] if args.engine else run_layer_checks(args.onnx, side, checkpoint, factories, ids)
            acc = None
            if tokenizer is not None:
                windows = accuracy.text_windows(tokenizer, text, args.context, args.tokens)
                make = next(iter(factories.values()))
                acc = accuracy.accuracy_report(make(args.onnx, []), side, checkpoint, windows,
                                               text_name=text_path.name, source_dir=args.source)
            else:
                notes.append(f"accuracy report skipped: no tokenizer in {args.model}")
        except ValueError as err:  # graph and checkpoint disagree
            raise DeployError(str(err)) from None
        except (OSError, MemoryError):
            raise
        except Exception as err:  # a runtime that cannot load or run the graph (ORT/TensorRT errors)
            raise DeployError(f"running {args.onnx} failed: {first_line(err)}") from None

    for note in notes:
        print(f"note: {note}")
    for rep in layer_reports:
        print(rep.table())
    if acc is not None:
        print(acc.table())
    passed = all(r.ok for r in layer_reports) and (acc is None or acc.ok) and bool(layer_reports or acc)
    print(f"verify: {'PASSED' if passed else 'FAILED'}")
    if args.report:
        report = {"onnx": str(args.onnx), "model": str(args.model), "dtype": side["dtype"], "format": side["format"],
                  "notes": notes, "passed": passed, "layers": [r.to_json() for r in layer_reports],
                  "accuracy": acc.to_json() if acc is not None else None}
        write_file(args.report, json.dumps(report, indent=1) + "\n", inputs=inputs, force=args.force)
    return 0 if passed else 1


def main(argv: list[str] | None = None) -> int:
    return run_command(build_parser(), run, argv)
