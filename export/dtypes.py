"""The tensor types of the exported graph's interface, in every spelling the pipeline needs.

A name (`"float16"`, as `--dtype`, the sidecar and the docs write it) maps to its ONNX element
type, its Triton type, and its torch and numpy types (looked up on demand, so that deploy tools
that never touch torch do not import it).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DType:
    name: str
    onnx: int  # onnx.TensorProto.DataType
    triton: str  # Triton's TYPE_<...> without the prefix


_TABLE = (
    DType("float32", 1, "FP32"),
    DType("float16", 10, "FP16"),
    DType("bfloat16", 16, "BF16"),
    DType("int64", 7, "INT64"),
    DType("int32", 6, "INT32"),
    DType("bool", 9, "BOOL"),
)
DTYPES = {d.name: d for d in _TABLE}
# The graph's activation precision (`--dtype`).
ACTIVATION_DTYPES = ("float16", "bfloat16", "float32")


def name_of_onnx(elem_type: int) -> str:
    """The name of an ONNX element type (its number as text if it is none of the table's)."""
    for d in _TABLE:
        if d.onnx == elem_type:
            return d.name
    return str(elem_type)


def torch_dtype(name: str):
    import torch

    return getattr(torch, name)


def numpy_dtype(name: str):
    """numpy dtype; bfloat16 is ml_dtypes' (what onnxruntime and tritonclient take)."""
    import numpy as np

    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)
