"""Decode speed on CPU: the exported NVFP4 graph in ONNX Runtime (the project's custom-op library)
against transformers running the unquantized source model in float32, on the same threads
(scripts/bench/bench_ort_decode.py).

SOURCE_HF_DIR is quantized (W4A4, calibrated on plugins/verify/data/calibration.txt, and W4A16) and
exported (plugin, float32) into a temporary folder; e.g. the real test model of
scripts/dev/make_real_model.py. Each runtime prefills 16 tokens of the evaluation text and then
decodes --tokens tokens greedily with its KV cache (M = 1 per step); only the decode steps are
timed. Prints one row per runtime: tokens/s (median of --repeats, min..max), ratio to transformers.
The machine's load average is printed too: measure on a quiet machine.
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path


def ort_decode(onnx_path: Path, prompt, tokens: int, threads: int) -> float:
    """Seconds for `tokens` greedy decode steps after a prefill of `prompt` (the steps a Triton
    client makes: plugins.triton's feeds)."""
    import numpy as np
    import onnxruntime as ort

    from export.sidecar import load_sidecar
    from plugins.library import find_ort_library
    from plugins.triton import decode_feeds, prefill_feeds

    side = load_sidecar(onnx_path)
    options = ort.SessionOptions()
    options.register_custom_ops_library(str(find_ort_library()))
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    feeds = prefill_feeds(np.asarray([prompt], dtype=np.int64), side)
    out = dict(zip(names, session.run(None, feeds)))
    start = time.perf_counter()  # prefill done: time the decode steps only
    for _ in range(tokens):
        feeds = decode_feeds(out["logits"][:, -1].argmax(-1), out, feeds, side)
        out = dict(zip(names, session.run(None, feeds)))
    return time.perf_counter() - start


def transformers_decode(source: Path, prompt, tokens: int, threads: int) -> float:
    import torch
    import transformers

    transformers.utils.logging.set_verbosity_error()
    torch.set_num_threads(threads)
    model = transformers.AutoModelForCausalLM.from_pretrained(str(source), dtype=torch.float32).eval()
    ids = torch.tensor([prompt])
    with torch.inference_mode():
        out = model(input_ids=ids, use_cache=True)
        start = time.perf_counter()
        for _ in range(tokens):
            ids = out.logits[:, -1:].argmax(-1)
            out = model(input_ids=ids, past_key_values=out.past_key_values, use_cache=True)
    return time.perf_counter() - start


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("source", type=Path, help="unquantized Hugging Face model folder (with its tokenizer)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--tokens", type=int, default=64, help="decode steps timed per repeat")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)

    from export.onnx_export import export_model
    from export.quantize import quantize_checkpoint, text_calibration_batches
    from plugins.verify.accuracy import CALIBRATION_TEXT, DEFAULT_TEXT, load_tokenizer

    prompt = load_tokenizer(args.source)(DEFAULT_TEXT.read_text(encoding="utf-8"))["input_ids"][:16]
    calibration = CALIBRATION_TEXT.read_text(encoding="utf-8")
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-ort-decode.") as tmp:
        graphs = {}
        for mode in ("w4a4", "w4a16"):
            ckpt = Path(tmp) / mode
            quantize_checkpoint(args.source, ckpt, "modelopt", w4a16=mode == "w4a16",
                                calib_input_ids=None if mode == "w4a16" else text_calibration_batches(args.source, calibration))
            graphs[mode] = Path(tmp) / f"{mode}.onnx"
            export_model(ckpt, graphs[mode], dtype="float32", progress=False)
        runs = {"transformers float32 (source)": lambda: transformers_decode(args.source, prompt, args.tokens, args.threads)}
        for mode, path in graphs.items():
            runs[f"ONNX Runtime NVFP4 {mode.upper()} (float32 graph)"] = \
                lambda path=path: ort_decode(path, prompt, args.tokens, args.threads)
        load_before = os.getloadavg()
        speeds = {name: [] for name in runs}
        for _ in range(args.repeats):  # interleaved, so that load changes hit every runtime alike
            for name, fn in runs.items():
                speeds[name].append(args.tokens / fn())
        load_after = os.getloadavg()
    base = statistics.median(speeds["transformers float32 (source)"])
    print(f"decode, M = 1, {args.tokens} tokens after a 16-token prefill, {args.threads} threads, "
          f"{args.repeats} repeats; load average {load_before[0]:.2f} before, {load_after[0]:.2f} after")
    print(f"{'runtime':44} {'tokens/s':>9} {'min..max':>14} {'vs transformers':>16}")
    for name, values in speeds.items():
        med = statistics.median(values)
        rows.append((name, med))
        print(f"{name:44} {med:9.1f} {min(values):6.1f}..{max(values):<6.1f} {med / base:15.2f}x")
    return 0

