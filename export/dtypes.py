"""The tensor types of the exported graph's interface, in every spelling the pipeline needs.

A name (`"float16"`, as `--dtype`, the sidecar and the docs write it) maps to its ONNX element
type, its Triton type, and its torch and numpy types (looked up on demand, so that deploy tools
that never touch torch do not import it). `to_torch` / `to_numpy` move tensors between torch and
numpy without losing the types numpy lacks (bfloat16, FP8 E4M3: ml_dtypes' types on the numpy
side, what onnxruntime, onnx_ir and tritonclient take).
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
    """The torch dtype of a table name (`torch.float16` for "float16")."""
    import torch

    if name not in DTYPES:
        raise ValueError(f"dtype {name!r}: expected one of {', '.join(DTYPES)}")
    return getattr(torch, name)


def numpy_dtype(name: str):
    """The numpy dtype of a table name; bfloat16 is ml_dtypes'."""
    import numpy as np

    if name not in DTYPES:
        raise ValueError(f"dtype {name!r}: expected one of {', '.join(DTYPES)}")
    if name == "bfloat16":
        import ml_dtypes

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


def name_of_numpy(dtype) -> str:
    """The table name of a numpy dtype (ValueError for a type the table does not have)."""
    import numpy as np

    dtype = np.dtype(dtype)
    for d in _TABLE:
        if numpy_dtype(d.name) == dtype:
            return d.name
    raise ValueError(f"numpy dtype {dtype} is none of {', '.join(DTYPES)}")


# --- torch <-> numpy ------------------------------------------------------------------------------

def to_torch(a):
    """A torch tensor over a numpy array (bfloat16 and FP8 E4M3 from ml_dtypes; a copy only if the
    array is read-only)."""
    import numpy as np
    import torch

    a = np.asarray(a)
    special = {"bfloat16": (np.int16, torch.bfloat16), "float8_e4m3fn": (np.uint8, torch.float8_e4m3fn)}
    if a.dtype.name in special:
        bits, dtype = special[a.dtype.name]
        return torch.from_numpy(np.array(a).view(bits)).view(dtype)
    a = np.ascontiguousarray(a)
    return torch.from_numpy(a if a.flags.writeable else a.copy())


def to_numpy(t):
    """numpy over a CPU tensor's memory (bfloat16 and FP8 E4M3 as ml_dtypes' types)."""
    import torch

    t = t.detach().contiguous()
    if t.dtype in (torch.bfloat16, torch.float8_e4m3fn):
        import ml_dtypes

        bits, dtype = {torch.bfloat16: (torch.int16, ml_dtypes.bfloat16),
                       torch.float8_e4m3fn: (torch.uint8, ml_dtypes.float8_e4m3fn)}[t.dtype]
        return t.view(bits).numpy().view(dtype)
    return t.numpy()
