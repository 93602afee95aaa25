#!/usr/bin/env python3
"""Compare an exported NVFP4 ONNX (and optionally its TensorRT engine) with the torch reference.

    python scripts/verify.py OUT.onnx --model MODEL_DIR [--engine X.plan] [--runner onnxrt|trt|all]
        [--reference exact|emulation] [--report out.json]

Polygraphy's Comparator runs the project's torch model (export.modeling.build_model on the
checkpoint, in the sidecar's dtype) beside ONNX Runtime with the NVFP4Linear custom-op library
(plugin-format graphs), onnx.reference (qdq-format graphs, which ONNX Runtime cannot run) and
TensorRT where `tensorrt` is installed. Inputs: prefill with an empty KV cache, decode with a
non-empty, partly padded cache, and a chunk continuation (docs/verify.md). Tolerances per output
follow from the numerics (docs/verify.md). Prints Polygraphy's summary and an error table.
Exit status: 0 all comparisons passed, 1 a mismatch, 2 bad input or a requested runner unavailable.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from plugins.tensorrt_build import (  # noqa: E402
    DeployError,
    TensorRTUnavailable,
    check_plan_file,
    check_plugin_library,
    check_sidecar_matches_onnx,
    load_sidecar,
    write_atomically,
)


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("onnx", help="exported model (OUT.onnx with OUT.onnx.json next to it)")
    ap.add_argument("--model", required=True, help="the checkpoint folder the ONNX was exported from")
    ap.add_argument("--engine", default=None, help="a TensorRT plan to compare (else one is built when --runner includes trt)")
    ap.add_argument("--runner", choices=["onnxrt", "trt", "all"], default="all",
                    help="what to compare with the torch reference (all: ONNX Runtime, plus TensorRT where installed)")
    ap.add_argument("--reference", choices=["exact", "emulation"], default="exact",
                    help="torch NVFP4 linear: exact products + float64 sums, or vLLM's emulation")
    ap.add_argument("--report", default=None, help="write the error table and verdict as JSON")
    ap.add_argument("--ort-lib", default=None, help="ONNX Runtime custom-op library (default: NVFP4_ORT_LIB or build/)")
    ap.add_argument("--plugin", default=None, help="TensorRT plugin library (default: NVFP4_PLUGIN_LIB or build/)")
    ap.add_argument("--providers", default=None, help="comma-separated ONNX Runtime providers (default: CUDA if present, else CPU)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the generated inputs")
    return ap.parse_args(argv)


def reference_runner(args, side):
    from export.checkpoint import open_checkpoint
    from export.modeling import build_model
    from plugins.polygraphy_runners import TORCH_DTYPES, TorchReferenceRunner

    checkpoint = open_checkpoint(args.model)
    if side.get("checkpoint_format") and checkpoint.format != side["checkpoint_format"]:
        raise DeployError(f"{args.model}: a {checkpoint.format} checkpoint, but the sidecar says the ONNX came "
                          f"from a {side['checkpoint_format']} checkpoint")
    model = build_model(checkpoint, dtype=TORCH_DTYPES[side["dtype"]], reference=args.reference)
    cfg = model.config
    got = {"num_layers": cfg.num_layers, "num_kv_heads": cfg.num_kv_heads, "head_dim": cfg.head_dim,
           "vocab_size": cfg.vocab_size}
    for key, value in got.items():
        if side[key] != value:
            raise DeployError(f"{args.model}: {key} = {value}, but the ONNX sidecar says {side[key]} "
                              f"(was the ONNX exported from another checkpoint?)")
    return TorchReferenceRunner(model, side, name=f"torch-{args.reference}")


def onnxrt_runner(args, side):
    from polygraphy.backend.onnxrt import OnnxrtRunner

    if side["format"] == "qdq":
        from plugins.polygraphy_runners import OnnxReferenceRunner

        return OnnxReferenceRunner(args.onnx, side, custom_ops=qdq_custom_ops(), name="onnx-reference")
    import onnxruntime as ort

    from plugins.library import find_ort_library
    from plugins.ort import make_session

    try:
        library = find_ort_library(args.ort_lib)
    except FileNotFoundError as err:
        raise DeployError(str(err)) from None
    if args.providers:
        providers = args.providers.split(",")
    else:
        available = ort.get_available_providers()
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in available]
    if side["dtype"] == "bfloat16" and providers[0] == "CPUExecutionProvider":
        raise OrtUnsupported("ONNX Runtime's CPU provider has no bfloat16 kernels for the graph's "
                             "Mul/MatMul; verify a float16/float32 export on CPU, or bfloat16 with TensorRT")
    return OnnxrtRunner(lambda: make_session(args.onnx, library=library, providers=providers),
                        name=f"onnxrt-{providers[0].replace('ExecutionProvider', '').lower()}")


class OrtUnsupported(DeployError):
    """ONNX Runtime cannot run this graph here (not a defect of the graph)."""


def qdq_custom_ops():
    """onnx.reference implementations of the non-standard nodes a qdq export uses (export/qdq.py)."""
    from export.qdq import reference_ops

    return reference_ops()


def trt_runner(args, side, workdir: Path):
    from plugins.tensorrt_build import build_engine, import_tensorrt

    trt = import_tensorrt()
    from polygraphy.backend.common import BytesFromPath
    from polygraphy.backend.trt import EngineFromBytes, TrtRunner

    from plugins.library import find_plugin_library

    try:
        plugin = check_plugin_library(find_plugin_library(args.plugin))
    except FileNotFoundError as err:
        raise DeployError(str(err)) from None
    # The engine's NVFP4Linear layers need the creator registered before deserialization.
    trt.get_plugin_registry().load_library(str(plugin))
    plan = Path(args.engine) if args.engine else build_engine(args.onnx, plugin, workdir / "verify.plan", side)
    return TrtRunner(EngineFromBytes(BytesFromPath(str(check_plan_file(plan)))), name="tensorrt")


def select_runners(args, side, workdir):
    runners = []
    notes = []
    if args.runner in ("onnxrt", "all"):
        try:
            runners.append(onnxrt_runner(args, side))
        except OrtUnsupported as err:
            if args.runner == "onnxrt":
                raise
            notes.append(f"ONNX Runtime skipped: {err}")
    if args.runner in ("trt", "all") or args.engine:
        if args.runner == "onnxrt":
            raise DeployError("--engine needs --runner trt or all")
        try:
            runners.append(trt_runner(args, side, workdir))
        except TensorRTUnavailable as err:
            if args.runner == "trt" or args.engine:
                raise
            notes.append(f"TensorRT skipped: {err}")
    if not runners:
        raise DeployError("no runner can execute this graph here: " + "; ".join(notes))
    return runners, notes


def print_table(rows):
    header = (f"{'runner':<16} {'case':>4} {'output':<22} {'max abs':>9} {'mean abs':>9} {'ref rms':>9} "
              f"{'max rel':>9} {'mean rel':>9} {'median rel':>10} {'top1':>5} {'ok':>3}")
    print(header)
    print("-" * len(header))
    for r in rows:
        s = r["stats"]
        if "shape_mismatch" in s:
            print(f"{r['runner']:<16} {r['iteration']:>4} {r['output']:<22} shape mismatch {s['shape_mismatch']}")
            continue
        top1 = f"{s['top1']:.2f}" if "top1" in s else ""
        print(f"{r['runner']:<16} {r['iteration']:>4} {r['output']:<22} {s['max_abs']:>9.2e} {s['mean_abs']:>9.2e} "
              f"{s['ref_rms']:>9.2e} {s['max_rel']:>9.2e} {s['mean_rel']:>9.2e} {s['median_rel']:>10.2e} {top1:>5} "
              f"{'yes' if r['passed'] else 'NO':>3}")


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        side = load_sidecar(args.onnx)
        check_sidecar_matches_onnx(args.onnx, side)
        if args.engine:
            check_plan_file(args.engine)
    except DeployError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    from polygraphy.comparator import Comparator

    from export.errors import CheckpointError
    from plugins.polygraphy_runners import check_outputs, compare_funcs, error_stats, kv_cache_feeds, top1_agreement

    with tempfile.TemporaryDirectory(prefix="verify.") as tmp:
        try:
            ref = reference_runner(args, side)
            runners, notes = select_runners(args, side, Path(tmp))
        except (DeployError, CheckpointError, TensorRTUnavailable) as err:
            print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
            return 2
        for note in notes:
            print(f"note: {note}")
        feeds = kv_cache_feeds(side, seed=args.seed)
        try:
            results = Comparator.run([ref, *runners], data_loader=feeds)
        except Exception as err:  # a runner that cannot load or run the graph (ORT/TensorRT errors)
            first = next((line for line in str(err).splitlines() if line.strip()), type(err).__name__)
            print(f"error: running {args.onnx} failed: {first}", file=sys.stderr)
            return 2

    runs = list(results)  # [(runner name, [IterationResult per input case])], the reference first
    failures = []
    for name, iterations in runs[1:]:
        for it in iterations:
            missing = check_outputs(it, runs[0][1][0], side)
            if missing:
                failures.append(f"{name}: {missing}")
    accuracy = Comparator.compare_accuracy(results, comparisons=[(i, 0) for i in range(1, len(runs))],
                                           compare_func=compare_funcs(side["dtype"]))
    passed = bool(accuracy) and not failures

    rows = []
    for name, iterations in runs[1:]:
        for k, (it, ref_it) in enumerate(zip(iterations, runs[0][1])):
            for out in ref_it.keys():
                stats = error_stats(it[out], ref_it[out]) if out in it else {"shape_mismatch": ["missing", list(ref_it[out].shape)]}
                if out == "logits" and out in it:
                    stats["top1"] = top1_agreement(it[out], ref_it[out])
                rows.append({"runner": name, "iteration": k, "output": out, "stats": stats,
                             "passed": _output_passed(accuracy, name, runs[0][0], k, out)})
    print()
    print(f"Error table ({side['dtype']} graph vs torch-{args.reference}; rel = |a - r| / rms(r); "
          f"top1 = greedy-token agreement):")
    print_table(rows)
    for failure in failures:
        print(f"MISMATCH {failure}")
    print(f"\nverify: {'PASSED' if passed else 'FAILED'} ({len(runners)} runner(s) vs torch-{args.reference})")
    if args.report:
        report = {"onnx": str(args.onnx), "model": str(args.model), "dtype": side["dtype"], "format": side["format"],
                  "reference": f"torch-{args.reference}", "runners": [r.name for r in runners], "notes": notes,
                  "passed": passed, "tolerances": _describe_tolerances(side["dtype"]), "rows": rows}
        write_atomically(Path(args.report), (json.dumps(report, indent=1) + "\n").encode())
    return 0 if passed else 1


def _output_passed(accuracy, runner_name: str, reference_name: str, iteration: int, output: str) -> bool:
    """Whether every compare function passed `output` of one iteration (AccuracyResults is one
    AccuracyResult per function: {(runner, reference): [per-iteration {output: result}]})."""
    verdicts = []
    for per_func in accuracy:
        try:
            matches = per_func[(runner_name, reference_name)]
        except KeyError:
            return False
        if iteration >= len(matches) or output not in matches[iteration]:
            return False
        verdicts.append(bool(matches[iteration][output]))
    return all(verdicts)


def _describe_tolerances(dtype: str):
    from plugins.polygraphy_runners import TOLERANCES

    return TOLERANCES[dtype]


if __name__ == "__main__":
    if importlib.util.find_spec("polygraphy") is None:
        print("error: polygraphy is not installed (pip install polygraphy)", file=sys.stderr)
        sys.exit(2)
    sys.exit(main())
