"""Polygraphy pieces for verifying an exported model: a torch-reference runner, an onnx.reference
runner (for Q/DQ graphs that ONNX Runtime cannot run), a KV-cache data loader, and error statistics.

Polygraphy's `Comparator` takes any `BaseRunner`; custom runners must set `self.inference_time`
in `infer_impl` (Polygraphy adds it up) and return an OrderedDict of numpy arrays. Its built-in
`PytRunner` moves everything to CUDA, so the torch reference gets its own CPU-capable runner here.
"""
from __future__ import annotations

import time
from collections import OrderedDict

import numpy as np
import torch
from polygraphy.backend.base import BaseRunner
from polygraphy.common import TensorMetadata

TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def numpy_dtype(dtype: str):
    if dtype == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(dtype)


def _metadata_from_sidecar(side: dict) -> TensorMetadata:
    meta = TensorMetadata()
    for spec in side["inputs"]:
        shape = [d if isinstance(d, int) else -1 for d in spec["shape"]]
        # Polygraphy has no numpy bfloat16 type; it takes torch tensors for it (TensorRT runner too).
        dtype = torch.bfloat16 if spec["dtype"] == "bfloat16" else numpy_dtype(spec["dtype"])
        meta.add(spec["name"], dtype, shape)
    return meta


def _to_torch(array) -> torch.Tensor:
    if isinstance(array, torch.Tensor):
        return array
    if array.dtype == numpy_dtype("bfloat16"):
        return torch.from_numpy(np.ascontiguousarray(array).view(np.int16)).view(torch.bfloat16)
    return torch.from_numpy(np.ascontiguousarray(array))


def _to_numpy(t: torch.Tensor):
    """numpy for float32/float16/int; bfloat16 stays a CPU torch tensor, as Polygraphy's TensorRT
    runner returns it (numpy has no bfloat16)."""
    t = t.detach().cpu().contiguous()
    return t if t.dtype == torch.bfloat16 else t.numpy()


class TorchReferenceRunner(BaseRunner):
    """Runs the project's torch model (`export.modeling.build_model`) on the graph's inputs/outputs.

    `model(input_ids, position_ids, attention_mask, past_key_values) -> (logits, presents)`; the
    names follow the export I/O contract (past_key_values.{i}.key/value -> present.{i}.key/value).
    """

    def __init__(self, model: torch.nn.Module, side: dict, name: str | None = None):
        super().__init__(name=name, prefix="torch-reference-runner")
        self.model = model
        self.side = side

    def activate_impl(self):
        self.model.eval()

    def get_input_metadata_impl(self):
        return _metadata_from_sidecar(self.side)

    def infer_impl(self, feed_dict):
        start = time.perf_counter()
        t = {k: _to_torch(v) for k, v in feed_dict.items()}
        past = [(t[f"past_key_values.{i}.key"], t[f"past_key_values.{i}.value"]) for i in range(self.side["num_layers"])]
        with torch.inference_mode():
            logits, presents = self.model(t["input_ids"], t["position_ids"], t["attention_mask"], past)
        out = OrderedDict(logits=_to_numpy(logits))
        for i, (k, v) in enumerate(presents):
            out[f"present.{i}.key"] = _to_numpy(k)
            out[f"present.{i}.value"] = _to_numpy(v)
        self.inference_time = time.perf_counter() - start
        return out

    def deactivate_impl(self):
        pass


class OnnxReferenceRunner(BaseRunner):
    """Runs an ONNX model with `onnx.reference.ReferenceEvaluator` (numpy; FP4/FP8 Q/DQ included).

    `custom_ops` are `onnx.reference.op_run.OpRun` subclasses for non-standard nodes (e.g.
    `TRT_FP4DynamicQuantize`, which export/qdq.py implements).
    """

    def __init__(self, model_path, side: dict, custom_ops=(), name: str | None = None):
        super().__init__(name=name, prefix="onnx-reference-runner")
        self.model_path = str(model_path)
        self.side = side
        self.custom_ops = list(custom_ops)

    def activate_impl(self):
        from onnx.reference import ReferenceEvaluator

        self.evaluator = ReferenceEvaluator(self.model_path, new_ops=self.custom_ops or None)
        self.output_names = list(self.evaluator.output_names)

    def get_input_metadata_impl(self):
        return _metadata_from_sidecar(self.side)

    def infer_impl(self, feed_dict):
        start = time.perf_counter()
        results = self.evaluator.run(None, dict(feed_dict))
        self.inference_time = time.perf_counter() - start
        return OrderedDict(zip(self.output_names, results))

    def deactivate_impl(self):
        del self.evaluator


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------

# (name, batch, new tokens, cached tokens, left padding of the second row inside the cache)
CASES = (
    ("prefill, empty cache", 2, 5, 0, 0),
    ("decode, cache with a left-padded row", 2, 1, 6, 2),
    ("chunk of 3 after 4 cached", 1, 3, 4, 0),
)


def _clamp(value: int, lo: int, hi: int) -> int:
    return max(lo, min(hi, value))


def kv_cache_feeds(side: dict, seed: int = 0, cases=CASES) -> list[OrderedDict]:
    """Realistic inputs for the KV-cache graph: token ids in the vocabulary, positions that continue
    the cache, an attention mask that hides left padding, random past K/V of unit scale.

    Every case is clamped into the engine profile (sidecar min/max), and every query token can
    attend at least to itself, so no softmax row is fully masked. Returns a list of feed dicts
    (a Polygraphy data loader may be any sequence of them).
    """
    rng = np.random.default_rng(seed)
    specs = {s["name"]: s for s in side["inputs"]}
    ids_spec, mask_spec = specs["input_ids"], specs["attention_mask"]
    kv_spec = specs.get("past_key_values.0.key")
    kv_dtype = np.float32 if side["dtype"] == "bfloat16" else numpy_dtype(side["dtype"])
    heads, head_dim = side["num_kv_heads"], side["head_dim"]
    feeds = []
    for _, batch, seq, past, pad in cases:
        batch = _clamp(batch, ids_spec["min"][0], ids_spec["max"][0])
        seq = _clamp(seq, ids_spec["min"][1], ids_spec["max"][1])
        if kv_spec is not None:
            past = _clamp(past, kv_spec["min"][2], kv_spec["max"][2])
        past = _clamp(past + seq, mask_spec["min"][1], mask_spec["max"][1]) - seq
        pad = min(pad, past) if batch > 1 else 0
        feed = OrderedDict()
        feed["input_ids"] = rng.integers(0, side["vocab_size"], size=(batch, seq), dtype=np.int64)
        start = np.full((batch, 1), past, dtype=np.int64)
        start[1:] -= pad  # padded rows count positions from their first real token
        feed["position_ids"] = start + np.arange(seq, dtype=np.int64)
        mask = np.ones((batch, past + seq), dtype=np.int64)
        mask[1:, :pad] = 0
        feed["attention_mask"] = mask
        for i in range(side["num_layers"]):
            for kv in ("key", "value"):
                values = rng.standard_normal((batch, heads, past, head_dim)).astype(np.float32).astype(kv_dtype)
                # bfloat16 goes as a torch tensor (see _metadata_from_sidecar)
                feed[f"past_key_values.{i}.{kv}"] = (torch.from_numpy(values).to(torch.bfloat16)
                                                     if side["dtype"] == "bfloat16" else values)
        feeds.append(feed)
    return feeds


# --------------------------------------------------------------------------------------------
# Error statistics (the table verify prints and --report writes)
# --------------------------------------------------------------------------------------------


def error_stats(actual: np.ndarray, reference: np.ndarray) -> dict:
    """Absolute error |a - r| (max, mean, median) and the same relative to the reference's RMS,
    the scale the tolerances use (an elementwise |a - r| / |r| explodes where r is near zero).
    For logits [..., vocab], also the fraction of positions whose argmax (greedy token) agrees."""
    a, r = as_float64(actual), as_float64(reference)
    if a.shape != r.shape:
        return {"shape_mismatch": [list(a.shape), list(r.shape)]}
    if a.size == 0:
        return {"max_abs": 0.0, "mean_abs": 0.0, "median_abs": 0.0, "ref_rms": 0.0,
                "max_rel": 0.0, "mean_rel": 0.0, "median_rel": 0.0, "nonfinite": 0}
    d = np.abs(a - r)
    scale = max(rms(r), np.finfo(np.float32).tiny)
    stats = {"max_abs": float(np.max(d)), "mean_abs": float(np.mean(d)), "median_abs": float(np.median(d)),
             "ref_rms": rms(r), "nonfinite": int(np.count_nonzero(~np.isfinite(d)))}
    for key in ("max", "mean", "median"):
        stats[f"{key}_rel"] = stats[f"{key}_abs"] / scale
    return stats


def top1_agreement(logits: np.ndarray, reference: np.ndarray) -> float:
    a, r = as_float64(logits), as_float64(reference)
    if a.shape != r.shape or a.size == 0:
        return float("nan")
    return float(np.mean(a.argmax(-1) == r.argmax(-1)))


# --------------------------------------------------------------------------------------------
# Tolerances (docs/verify.md derives them) and Polygraphy compare functions
# --------------------------------------------------------------------------------------------

# Per graph dtype: (Polygraphy error statistic, bound as a fraction of the reference output's RMS).
# An output passes when every check passes. float32: every element within accumulation-order
# error (elemwise: |a - r| <= c * rms(r), or |a - r| / |r| <= c). 16-bit: the dtype's rounding
# flips some W4A4 activation codes, so the bulk (median), the average (mean) and the worst
# element (max) of |a - r| are bounded separately.
TOLERANCES = {
    "float32": [("elemwise", 1e-4)],
    "float16": [("median", 0.08), ("mean", 0.12), ("max", 1.2)],
    "bfloat16": [("median", 0.20), ("mean", 0.25), ("max", 1.5)],
}


def as_float64(array) -> np.ndarray:
    """numpy float64 copy of a runner output (numpy of any float dtype, ml_dtypes, or a torch tensor,
    which Polygraphy's TensorRT runner returns for dtypes numpy lacks)."""
    if isinstance(array, torch.Tensor):
        return array.detach().cpu().to(torch.float64).numpy()
    return np.asarray(array).astype(np.float64)


def rms(array) -> float:
    a = as_float64(array)
    return float(np.sqrt(np.mean(a * a))) if a.size else 0.0


class RmsScaledCompareFunc:
    """A Polygraphy `SimpleCompareFunc` whose absolute tolerance for each output is
    `factor * rms(reference output)` of the iteration being compared (the reference is the
    second IterationResult), so one bound fits logits and KV caches of any scale."""

    def __init__(self, stat: str, factor: float):
        self.stat, self.factor = stat, factor

    def __call__(self, result, reference):
        from polygraphy.comparator import SimpleCompareFunc

        atol = {name: self.factor * max(rms(reference[name]), np.finfo(np.float32).tiny) for name in reference.keys()}
        # rtol only helps the elementwise check; a statistic is bounded by its absolute value alone.
        rtol = self.factor if self.stat == "elemwise" else 0.0
        return SimpleCompareFunc(check_shapes=True, check_error_stat=self.stat, atol=atol, rtol=rtol)(result, reference)


def compare_funcs(dtype: str) -> list:
    return [RmsScaledCompareFunc(stat, factor) for stat, factor in TOLERANCES[dtype]]


def check_outputs(result, reference, side: dict) -> str:
    """'' if `result` has every output of `reference`, else a one-line description of what is missing."""
    missing = [name for name in reference.keys() if name not in result]
    return f"missing outputs {missing}" if missing else ""
