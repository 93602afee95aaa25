"""Runtimes that execute an exported graph and return named tensors, the runtime under test:

- `OrtRuntime`: ONNX Runtime with the project's custom-op library (plugin-format graphs);
  bfloat16 graphs run as their float32 emulation (graph.emulate_16bit_in_float32) on the CPU
  provider, which has no bfloat16 Mul/MatMul;
- `ReferenceRuntime`: onnx.reference, node by node, each tensor freed after its last use and each
  initializer read only when a node needs it, so memory stays near the model's own size (qdq-format
  graphs, whose FP4 DequantizeLinear ONNX Runtime cannot run; 16-bit graphs in float32 emulation,
  numpy having no fast 16-bit matmul);
- `TrtRuntime`: TensorRT through Polygraphy, where the full `tensorrt` package and a GPU exist.

Each takes the graph (a path, or an onnx_ir model it may change), the tensors to return besides the
graph's outputs (`extra_outputs`, marked as graph outputs) and returns every array in the graph's
own types (bfloat16 as `ml_dtypes.bfloat16`).
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import ml_dtypes
import numpy as np
import onnx
import onnx_ir as ir

from export.dtypes import numpy_dtype
from plugins.verify.graph import emulate_16bit_in_float32, mark_outputs


def _prepare(graph, extra_outputs, dtype: str, emulate: bool) -> tuple[ir.Model, dict[str, np.dtype]]:
    """The graph (a path, or an ir.Model that is then changed in place) with extra outputs (and
    emulated if asked), and the dtype each output must be returned in."""
    model = graph if isinstance(graph, ir.Model) else ir.load(str(graph))
    extra = set(mark_outputs(model, extra_outputs))
    # Outputs in the graph's 16-bit type, and the marked activations (exported graphs often carry no
    # type for intermediate values): returned in the graph's dtype.
    sixteen = (ir.DataType.FLOAT16, ir.DataType.BFLOAT16)
    out_types = {v.name: numpy_dtype(dtype) if v.dtype in sixteen or (v.dtype is None and v.name in extra)
                 else None for v in model.graph.outputs}
    if emulate:
        emulate_16bit_in_float32(model, dtype)
    return model, out_types


def _as_graph_type(outputs: dict, out_types: dict) -> dict:
    return {k: (v.astype(out_types[k]) if out_types.get(k) is not None and v.dtype != out_types[k] else v)
            for k, v in outputs.items()}


class OrtRuntime:
    def __init__(self, onnx_path, extra_outputs, dtype: str, *, library=None, providers=None):
        from plugins.ort import make_session

        providers = providers or ["CPUExecutionProvider"]
        self.emulated = dtype == "bfloat16" and providers[0] == "CPUExecutionProvider"
        self.name = "onnxrt-" + providers[0].replace("ExecutionProvider", "").lower()
        if self.emulated:
            self.name += " (bfloat16 in float32 emulation)"
        model, self.out_types = _prepare(onnx_path, extra_outputs, dtype, self.emulated)
        with tempfile.TemporaryDirectory(prefix="nvfp4-verify.") as tmp:
            path = Path(tmp) / "graph.onnx"
            ir.save(model, path, external_data="graph.onnx.data")
            del model
            self.session = make_session(path, library=library, providers=providers)
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, feeds: dict) -> dict:
        if self.emulated:
            feeds = {k: (v.astype(np.float32) if v.dtype == ml_dtypes.bfloat16 else v) for k, v in feeds.items()}
        outputs = dict(zip(self.output_names, self.session.run(None, feeds)))
        return _as_graph_type(outputs, self.out_types)


class ReferenceRuntime:
    name = "onnx-reference"

    def __init__(self, onnx_path, extra_outputs, dtype: str, ops=None):
        """`ops`: onnx.reference implementations of the graph's non-standard nodes (default:
        export.qdq's TRT_FP4DynamicQuantize)."""
        from onnx.reference import ReferenceEvaluator

        from export.qdq import reference_ops

        self.emulated = dtype in ("float16", "bfloat16")
        if self.emulated:
            self.name += f" ({dtype} in float32 emulation)"
        self.model, self.out_types = _prepare(onnx_path, extra_outputs, dtype, self.emulated)
        graph = self.model.graph
        # The evaluator sees initializers as inputs; run() hands each over when a node needs it.
        inputs = [v.name for v in graph.inputs] + list(graph.initializers)
        proto = onnx.helper.make_model(
            onnx.helper.make_graph([ir.serde.serialize_node(n) for n in graph], "verify",
                                   [onnx.helper.make_empty_tensor_value_info(n) for n in inputs],
                                   [onnx.helper.make_empty_tensor_value_info(v.name) for v in graph.outputs]),
            opset_imports=[onnx.helper.make_opsetid(d, v) for d, v in self.model.opset_imports.items()])
        self.evaluator = ReferenceEvaluator(proto, new_ops=reference_ops() if ops is None else list(ops))
        self.output_names = [v.name for v in graph.outputs]
        self.last_use = {}
        for i, node in enumerate(self.evaluator.rt_nodes_):
            for name in node.input:
                self.last_use[name] = i

    def run(self, feeds: dict) -> dict:
        initializers = self.model.graph.initializers
        keep = set(self.output_names)
        env = {k: (v.astype(np.float32) if self.emulated and v.dtype == ml_dtypes.bfloat16 else v)
               for k, v in feeds.items()}
        for i, node in enumerate(self.evaluator.rt_nodes_):
            args = []
            for name in node.input:
                if not name:
                    args.append(None)
                elif name in env:
                    args.append(env[name])
                else:
                    args.append(initializers[name].const_value.numpy())
            for name, value in zip(node.output, node.run(*args)):
                env[name] = value
            for name in node.input:
                if self.last_use.get(name) == i and name not in keep:
                    env.pop(name, None)
        return _as_graph_type({k: env[k] for k in self.output_names}, self.out_types)


class TrtRuntime:
    name = "tensorrt"

    def __init__(self, onnx_path, extra_outputs, dtype: str, *, plugin, workdir: Path, side: dict, engine=None):
        from polygraphy.backend.common import BytesFromPath
        from polygraphy.backend.trt import EngineFromBytes, TrtRunner

        from plugins.tensorrt_build import build_engine, check_plan_file, check_registered_ops, import_tensorrt

        trt = import_tensorrt()
        # The engine's plugin layers need their creators registered before deserialization.
        trt.get_plugin_registry().load_library(str(plugin))
        check_registered_ops(trt, plugin, side)
        if engine is None:
            model, self.out_types = _prepare(onnx_path, extra_outputs, dtype, emulate=False)
            marked = workdir / "verify.onnx"
            ir.save(model, marked, external_data="verify.onnx.data")
            del model
            engine = build_engine(marked, plugin, workdir / "verify.plan", side)
        else:  # a given engine has only its own outputs
            self.out_types = {}
        self.runner = TrtRunner(EngineFromBytes(BytesFromPath(str(check_plan_file(engine)))))
        self.runner.activate()

    def run(self, feeds: dict) -> dict:
        import torch

        from export.dtypes import to_numpy, to_torch

        # Polygraphy passes bfloat16 as torch tensors (numpy has no bfloat16 of its own).
        feeds = {k: (to_torch(v) if v.dtype == ml_dtypes.bfloat16 else v) for k, v in feeds.items()}
        outputs = self.runner.infer(feeds)
        return {k: (to_numpy(v.cpu()) if isinstance(v, torch.Tensor) else np.asarray(v)) for k, v in outputs.items()}


def cpu_runtime(side: dict, library=None):
    """A factory (onnx_path, extra_outputs) -> runtime for the CPU runtime of the sidecar's format:
    ONNX Runtime with the custom-op library for plugin graphs (FileNotFoundError without it),
    onnx.reference for qdq graphs."""
    if side["format"] == "qdq":
        return lambda path, extra: ReferenceRuntime(path, extra, side["dtype"])
    from plugins.library import find_ort_library

    lib = find_ort_library(library)
    return lambda path, extra: OrtRuntime(path, extra, side["dtype"], library=lib)


