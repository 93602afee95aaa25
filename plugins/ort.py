"""ONNX Runtime sessions that can run `trt.plugins::NVFP4Linear` nodes (CPU custom-op library)."""
from __future__ import annotations

import os

import onnxruntime as ort

from plugins.library import find_ort_library


def make_session(model: str | os.PathLike | bytes, library: str | os.PathLike | None = None,
                 providers: list | None = None) -> ort.InferenceSession:
    """An InferenceSession over `model` (path or serialized bytes) with libnvfp4_ort_ops.so registered.

    `library` defaults to `find_ort_library()` (env NVFP4_ORT_LIB, then build/). `providers` defaults
    to the CPU provider, the only one the custom op implements.
    """
    options = ort.SessionOptions()
    options.register_custom_ops_library(str(find_ort_library(library)))
    if not isinstance(model, (bytes, bytearray)):
        model = os.fspath(model)
    return ort.InferenceSession(model, options, providers=providers or ["CPUExecutionProvider"])
