"""What the tests of the ONNX Runtime custom-op library share (test_ort_op.py, test_ort_moe_op.py,
test_op_field_fuzzing.py, test_contract.py): the library or a module-level skip, the activation
dtypes, and one-node models with the custom-op domain."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from onnx import TensorProto, helper

from plugins.library import find_ort_library

# The op's activation types T as torch dtypes and their ONNX element types.
ONNX_TYPE = {torch.float32: TensorProto.FLOAT, torch.float16: TensorProto.FLOAT16,
             torch.bfloat16: TensorProto.BFLOAT16}
DTYPES = list(ONNX_TYPE)


def ort_library_or_skip() -> Path:
    """build/libnvfp4_ort_ops.so (or $NVFP4_ORT_LIB); skips the calling test module when it is not built."""
    try:
        return find_ort_library()
    except FileNotFoundError as e:  # pragma: no cover - depends on the build
        pytest.skip(f"ORT custom-op library not built: {e}", allow_module_level=True)


def model_bytes(nodes, inputs, outputs, initializers=()) -> bytes:
    """A serialized model of `nodes` (opset 21 and the custom ops' trt.plugins domain, IR 10)."""
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21), helper.make_opsetid("trt.plugins", 1)])
    model.ir_version = 10
    return model.SerializeToString()
