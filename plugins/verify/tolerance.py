"""The verification's tolerance policy, in one place (docs/verify.md explains it).

Layer by layer, a runtime's output of one node is compared with the reference computed from the
runtime's own input to that node, so nothing accumulates and the bound follows from the op's
formula and the activation dtype T alone:

    |runtime - reference| <= (K + 2) · u32 · Σ_k |a_k · w_k| · |alpha|   accumulation in float32, any order
                             + ulp_T(|reference|)                          the runtime's final rounding to T
                             (+ ulp_T again where the formula rounds to T twice: a qdq bias Add)

u32 = 2^-24, a and w are the formula's exact operands (x̂ and ŵ for NVFP4Linear), and
Σ|a·w|·|alpha| is the worst-case scale of the sum's rounding errors. An implementation that rounds
like the reference (the ONNX Runtime op) is at 0; one that sums in float32 in another order (a GPU
kernel) is within the bound; a wrong scale, code or wire is far outside it.

Model level, thresholds are multiples of the reference's own sensitivity: the same NVFP4 model
run by the torch reference in T and in float64 (`NOISE_FACTOR`), with small absolute floors.
"""
from __future__ import annotations

import ml_dtypes
import numpy as np

from export.dtypes import numpy_dtype

U32 = 2.0 ** -24


def ulp(values: np.ndarray, dtype: str) -> np.ndarray:
    """The spacing of `dtype` at |values| (its subnormal spacing near zero), as float64."""
    info = ml_dtypes.finfo(numpy_dtype(dtype))
    smallest_normal = float(info.smallest_normal)
    eps = float(info.eps)
    a = np.maximum(np.abs(np.asarray(values, dtype=np.float64)), smallest_normal)
    with np.errstate(invalid="ignore"):
        exponent = np.floor(np.log2(np.where(np.isfinite(a), a, smallest_normal)))
    return eps * np.exp2(exponent)


def accumulation_bound(abs_sum: np.ndarray, k: int) -> np.ndarray:
    """Largest difference between two float32 accumulations (any order) of K terms whose absolute
    values sum to `abs_sum` (already times |alpha|), including the final multiply by alpha."""
    return (k + 2) * U32 * np.asarray(abs_sum, dtype=np.float64)


def linear_bound(reference: np.ndarray, abs_sum: np.ndarray, k: int, dtype: str, roundings: int = 1) -> np.ndarray:
    """Per-element bound for a linear layer's output (module docstring)."""
    return accumulation_bound(abs_sum, k) + roundings * ulp(reference, dtype)


def default_bound(reference: np.ndarray, dtype: str) -> np.ndarray:
    """Bound for a registered reference that returns only its output: a few float32 roundings of
    the output's scale (rms), plus one rounding to T."""
    r = np.asarray(reference, dtype=np.float64)
    rms = float(np.sqrt(np.mean(r * r))) if r.size else 0.0
    return 64 * U32 * rms + ulp(r, dtype)


# Model level: an exported model passes when its distance to the reference in float64 is within
# NOISE_FACTOR times the reference's own distance (same dtype as the graph) to the float64 run.
NOISE_FACTOR = 4.0
# Floors: below these a metric is at the level of the statistics' own resolution.
KL_FLOOR = 1e-4  # nats per token
TOP1_DISAGREEMENT_FLOOR = 0.02  # fraction of positions
NLL_SHIFT_FLOOR = 0.005  # nats per token: 0.5 % of perplexity


def model_thresholds(noise: dict) -> dict:
    """Thresholds from the reference's own sensitivity `noise` = {"kl", "top1_disagreement",
    "nll_shift"} (reference in the graph's dtype vs reference in float64)."""
    return {
        "kl": max(NOISE_FACTOR * noise["kl"], KL_FLOOR),
        "top1_disagreement": max(NOISE_FACTOR * noise["top1_disagreement"], TOP1_DISAGREEMENT_FLOOR),
        "nll_shift": max(NOISE_FACTOR * noise["nll_shift"], NLL_SHIFT_FLOOR),
    }
