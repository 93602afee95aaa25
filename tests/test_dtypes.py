"""export.dtypes: the one table of the graph's tensor types, and torch <-> numpy without loss."""
from __future__ import annotations

import ml_dtypes
import numpy as np
import onnx
import pytest
import torch

from export.dtypes import (ACTIVATION_DTYPES, DTYPES, name_of_numpy, name_of_onnx, numpy_dtype, to_numpy, to_torch,
                           torch_dtype)


@pytest.mark.parametrize("name", list(DTYPES))
def test_every_spelling_of_a_name_agrees(name):
    d = DTYPES[name]
    assert onnx.helper.tensor_dtype_to_np_dtype(d.onnx) == numpy_dtype(name)
    assert name_of_onnx(d.onnx) == name and name_of_numpy(numpy_dtype(name)) == name
    assert to_numpy(torch.empty(0, dtype=torch_dtype(name))).dtype == numpy_dtype(name)
    assert set(ACTIVATION_DTYPES) <= set(DTYPES)


def test_unknown_names_are_refused():
    for bad in ("Tensor", "float8", "int8"):
        with pytest.raises(ValueError, match="expected one of"):
            torch_dtype(bad)
        with pytest.raises(ValueError, match="expected one of"):
            numpy_dtype(bad)
    with pytest.raises(ValueError, match="none of"):
        name_of_numpy(np.int8)


def _bytes(t: torch.Tensor) -> bytes:
    return t.contiguous().view(torch.uint8).numpy().tobytes()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16, torch.float8_e4m3fn, torch.uint8])
def test_torch_numpy_round_trip_keeps_every_bit(dtype):
    if dtype.itemsize == 1:  # every byte value, NaN codes included
        t = torch.arange(256, dtype=torch.uint8).view(dtype)
    else:
        t = torch.randn(64).to(dtype)
        t[:3] = torch.tensor([float("nan"), -0.0, float("inf")])
    a = to_numpy(t)
    assert a.dtype == {torch.bfloat16: ml_dtypes.bfloat16, torch.float8_e4m3fn: ml_dtypes.float8_e4m3fn}.get(
        dtype, a.dtype) and a.tobytes() == _bytes(t)
    back = to_torch(a)
    assert back.dtype == dtype and _bytes(back) == _bytes(t)


def test_to_numpy_shares_memory_and_to_torch_copies_only_read_only_arrays():
    t = torch.zeros(4, dtype=torch.bfloat16)
    to_numpy(t)[0] = 1.5
    assert float(t[0]) == 1.5
    a = np.zeros(4, dtype=np.float32)
    to_torch(a)[1] = 2.0
    assert a[1] == 2.0
    a.flags.writeable = False
    to_torch(a)[2] = 3.0  # a copy: the read-only array stays as it was
    assert a[2] == 0.0
