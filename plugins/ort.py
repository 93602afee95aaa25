"""ONNX Runtime sessions that can run `trt.plugins::NVFP4Linear` and `trt.plugins::NVFP4MoE` nodes (CPU
custom-op library)."""
from __future__ import annotations

import os

import onnxruntime as ort

from export.contract import CONTRACT_YAMLS, op_contract
from export.errors import DeployError, quote
from export.inputs import regular_file
from plugins.library import find_ort_library

# Node attributes TensorRT's ONNX parser reads itself; every other one must be a contract attribute.
PARSER_ATTRIBUTES = ("plugin_version", "plugin_namespace")


def check_custom_op_attributes(model) -> None:
    """Refuse custom-op nodes (every op with a contract: NVFP4Linear, NVFP4MoE) with attributes their
    op contract does not name.

    ONNX Runtime's C API gives a custom op no way to list a node's attributes (it can only ask for
    the ones it knows), so a misspelt or unknown attribute would pass silently; duplicates ONNX
    Runtime refuses itself. `model` is an onnx.ModelProto."""
    contracts = {(c["domain"], c["name"]): c for c in map(op_contract, CONTRACT_YAMLS)}
    for node in model.graph.node:
        c = contracts.get((node.domain, node.op_type))
        if c is None:
            continue
        for attr in node.attribute:
            if attr.name not in c["attributes"] and attr.name not in PARSER_ATTRIBUTES:
                raise DeployError(f"{c['name']} node {quote(node.name)}: unknown attribute {quote(attr.name)} "
                                  f"(expected {', '.join(c['attributes'])})")


def make_session(model: str | os.PathLike | bytes, library: str | os.PathLike | None = None,
                 providers: list | None = None) -> ort.InferenceSession:
    """An InferenceSession over `model` (path or serialized bytes) with libnvfp4_ort_ops.so registered.

    `library` defaults to `find_ort_library()` (env NVFP4_ORT_LIB, then build/). `providers` defaults
    to the CPU provider, the only one the custom op implements. The custom-op nodes' attributes are
    checked against the op contract first (`check_custom_op_attributes`)."""
    import onnx

    if isinstance(model, (bytes, bytearray)):
        proto = onnx.load_from_string(bytes(model))
    else:
        model = os.fspath(regular_file(model, "ONNX file", error=DeployError))
        proto = onnx.load(model, load_external_data=False)
    check_custom_op_attributes(proto)
    options = ort.SessionOptions()
    options.register_custom_ops_library(str(find_ort_library(library)))
    return ort.InferenceSession(model, options, providers=providers or ["CPUExecutionProvider"])
