"""Whole-model ONNX export of an NVFP4 checkpoint, and the CPU verification of the result.

Pipeline (`export_model`):
 1. `export.modeling.build_model(checkpoint, dtype, reference="onnx", defer_casts=True)`: NVFP4
    weights stay views of the checkpoint's (memory-mapped) tensors.
 2. The TorchScript exporter (`torch.onnx.export(..., dynamo=False)`, chosen for speed, see
    docs/export.md) traces the graph only: weights are passed as inputs, custom ops skip their
    arithmetic, and each `nvfp4::linear` call becomes one `trt.plugins::NVFP4Linear` node, each
    `nvfp4::moe` call one `trt.plugins::NVFP4MoE` node (export/torch_ops.py). The weights then
    become initializers over the model's own tensors (an MoE block's stacked experts are made
    while being written, one tensor at a time).
 3. The ONNX IR model is tidied: interface I/O names and dim names, node names = module paths,
    IR version; `--format qdq` rewrites the plugin nodes (export/qdq.py).
 4. onnx_ir saves it, streaming initializers into external data when asked or when the model is
    larger than protobuf's 2 GB, beside the sidecar JSON (export/sidecar.py), all under a staging
    folder (export/outputs.py). An optional check (`--verify`) runs on the staged files; they are
    published by rename only if it passes, so a failure or an interruption leaves no partial output.

Verification of the written graph lives on the runtime side (plugins.verify, docs/verify.md).
"""
from __future__ import annotations

import json
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from export import sidecar as sidecar_mod
from export.dtypes import ACTIVATION_DTYPES, to_numpy, torch_dtype
from export.errors import CheckpointError, ExportError  # noqa: F401  (ExportError: part of this module's API)
from export.modeling import NVFP4CausalLM, build_model, decoder_config
from export.outputs import Staging, check_outputs
from export.torch_ops import NVFP4Linear, NVFP4MoE, op_contract, register_onnx_symbolic, shape_only_tracing

FORMATS = sidecar_mod.FORMATS
DEFAULT_OPSET = {"plugin": 21, "qdq": 23}
OPSET_RANGE = {"plugin": (17, 23), "qdq": (23, 23)}  # IR <= 10 for plugin, 11 for qdq
PLUGIN_IR_VERSION = 10
# Above this many initializer bytes the weights go to OUT.onnx.data: a single protobuf file cannot
# exceed 2 GB, and serializing in memory would hold the weights twice (docs/export.md).
EXTERNAL_DATA_THRESHOLD = 256 * 1024**2


@dataclass
class ExportResult:
    onnx_path: Path
    data_path: Path | None
    sidecar_path: Path
    format: str
    dtype: str
    opset: int
    quantized_layers: int
    excluded_layers: list[str]
    parameters: int
    bytes_written: int
    seconds: float
    sidecar: dict = field(repr=False, default_factory=dict)
    check_passed: bool | None = None  # the check's (--verify) verdict; None: no check ran
    published: bool = True  # False: the check failed and nothing was written

    def summary(self) -> str:
        files = [self.onnx_path] + ([self.data_path] if self.data_path else []) + [self.sidecar_path]
        return "\n".join([
            f"exported {self.onnx_path} ({self.format}, {self.dtype}, opset {self.opset}) in {self.seconds:.1f} s",
            f"  layers: {self.quantized_layers} NVFP4, {len(self.excluded_layers)} excluded"
            + (f" ({', '.join(self.excluded_layers[:4])}{', ...' if len(self.excluded_layers) > 4 else ''})" if self.excluded_layers else ""),
            f"  parameters: {self.parameters:,}",
            f"  bytes written: {self.bytes_written:,} in {', '.join(p.name for p in files)}",
        ])


def open_any(model_dir_or_checkpoint):
    """A Checkpoint from a folder, or the object itself if it already is one (tests)."""
    if hasattr(model_dir_or_checkpoint, "layer") and hasattr(model_dir_or_checkpoint, "quantized_names"):
        return model_dir_or_checkpoint
    from export.checkpoint import open_checkpoint

    return open_checkpoint(model_dir_or_checkpoint)


# --- tracing ---------------------------------------------------------------------------------------

def example_inputs(model: NVFP4CausalLM, batch: int = 2, seq: int = 3, past: int = 4):
    """Inputs for tracing; sizes > 1 and distinct so no dimension is specialized."""
    c = model.config
    ids = torch.zeros(batch, seq, dtype=torch.int64)
    pos = torch.arange(past, past + seq, dtype=torch.int64).expand(batch, seq).contiguous()
    mask = torch.ones(batch, past + seq, dtype=torch.int64)
    kv = [(torch.zeros(batch, c.num_kv_heads, past, c.head_dim, dtype=model.dtype),
           torch.zeros(batch, c.num_kv_heads, past, c.head_dim, dtype=model.dtype)) for _ in range(c.num_layers)]
    return ids, pos, mask, kv


def dynamic_axes(num_layers: int) -> dict:
    in_names, out_names = sidecar_mod.io_names(num_layers)
    axes = {"input_ids": {0: "batch", 1: "sequence"}, "position_ids": {0: "batch", 1: "sequence"},
            "attention_mask": {0: "batch", 1: "total_sequence"}, "logits": {0: "batch", 1: "sequence"}}
    axes.update({n: {0: "batch", 2: "past_sequence"} for n in in_names[3:]})
    axes.update({n: {0: "batch", 2: "total_sequence"} for n in out_names[1:]})
    return axes


# The TorchScript exporter's newest opset; a higher requested opset is stamped afterwards
# (the graph uses no operator whose semantics changed after it).
TORCHSCRIPT_MAX_OPSET = 20


def _as_ir_tensor(t: torch.Tensor, name: str):
    """An onnx_ir tensor over the torch tensor's memory (no copy of a contiguous tensor)."""
    import onnx_ir as ir

    return ir.Tensor(to_numpy(t), name=name)


class _WeightsAsInputs(torch.nn.Module):
    """The model with every weight passed as a forward argument. Traced this way the weights are
    graph inputs, not parameters, so the TorchScript exporter never serializes them (its shape
    inference would otherwise put a copy of every weight into a protobuf). While it is in use
    (a context manager) the model's buffers are emptied; they are put back on exit."""

    def __init__(self, model: torch.nn.Module, weights: dict[str, torch.Tensor]):
        super().__init__()
        self.inner = [model]  # a list: not a submodule, so its (emptied) state is not traced
        self.weights = weights
        self.owners = []
        for name in weights:
            path, _, attr = name.rpartition(".")
            self.owners.append((model.get_submodule(path) if path else model, attr))

    def _set(self, tensors) -> None:
        for (module, attr), t in zip(self.owners, tensors):
            module._buffers[attr] = t

    def __enter__(self):
        self._set([None] * len(self.owners))
        return self

    def __exit__(self, *exc):
        self._set(list(self.weights.values()))

    def forward(self, input_ids, position_ids, attention_mask, past_key_values, *weights):
        self._set(weights)
        try:
            return self.inner[0](input_ids, position_ids, attention_mask, past_key_values)
        finally:
            self._set([None] * len(self.owners))


def trace_to_onnx_ir(model: NVFP4CausalLM, opset: int):
    """TorchScript export of the graph only, then each weight becomes an initializer that wraps
    the model's own tensor (a view of the checkpoint: nothing is copied before it is written)."""
    import io

    import onnx
    import onnx_ir as ir

    register_onnx_symbolic()
    c = model.config
    in_names, out_names = sidecar_mod.io_names(c.num_layers)
    weights = dict(model.named_buffers())  # tied weights appear once
    buf = io.BytesIO()
    threads = torch.get_num_threads()
    # One thread: the traced ops are tiny, and on a busy machine intra-op threads make each of them
    # take up to a second (bfloat16 matmuls on 2 loaded cores, measured).
    torch.set_num_threads(1)
    try:
        example = example_inputs(model)
        with warnings.catch_warnings(), torch.no_grad(), shape_only_tracing(), _WeightsAsInputs(model, weights) as wrapped:
            warnings.simplefilter("ignore")
            torch.onnx.export(
                wrapped, (*example, *weights.values()), buf,
                dynamo=False, export_params=False, input_names=in_names + list(weights),
                output_names=out_names, dynamic_axes=dynamic_axes(c.num_layers),
                opset_version=min(opset, TORCHSCRIPT_MAX_OPSET), custom_opsets={op_contract()["domain"]: 1},
                do_constant_folding=False,  # folded below, without touching weights
            )
    finally:
        torch.set_num_threads(threads)
    model_ir = ir.from_proto(onnx.load_from_string(buf.getvalue()))
    model_ir.opset_imports[""] = opset
    graph = model_ir.graph
    deferred = getattr(model, "deferred_casts", {})
    # Deferred conversions first: each converted copy is written and freed before the other
    # weights' pages are read.
    values = sorted(graph.inputs[len(in_names):], key=lambda v: v.name not in deferred)
    for value in values:
        graph.inputs.remove(value)
        if value.name not in weights:
            raise RuntimeError(f"traced graph input {value.name!r} is not a tensor of the model")
        if not value.uses():
            continue
        if value.name in deferred:
            src, name = deferred[value.name], value.name
            # A stored tensor to convert, or a function making the tensor (stacked MoE experts).
            make = src if callable(src) else (lambda src=src: src.to(model.dtype))
            value.const_value = ir.LazyTensor(lambda make=make, name=name: _as_ir_tensor(make(), name),
                                              dtype=value.type.dtype, shape=ir.Shape(weights[name].shape), name=name)
        else:
            value.const_value = _as_ir_tensor(weights[value.name], value.name)
        graph.register_initializer(value)
    import onnxscript.optimizer
    from onnx_ir.passes.common import RemoveUnusedNodesPass

    # Fold shape arithmetic, never an op on a weight (that would store a second, transformed copy).
    # Only constant folding: onnxscript's full optimize() pattern-matches its rewrite rules over the
    # whole graph, which took minutes for a 16-layer model.
    onnxscript.optimizer.fold_constants(
        model_ir, should_fold=lambda node: False if any(v is not None and v.name in weights for v in node.inputs) else None)
    RemoveUnusedNodesPass()(model_ir)
    return model_ir


def finalize_graph(model_ir, cfg, source: str) -> None:
    """Interface names and dims for the graph I/O, readable node names, metadata."""
    import onnx_ir as ir

    graph = model_ir.graph
    in_names, out_names = sidecar_mod.io_names(cfg.num_layers)
    if len(graph.inputs) != len(in_names) or len(graph.outputs) != len(out_names):
        raise RuntimeError(f"traced graph has {len(graph.inputs)} inputs / {len(graph.outputs)} outputs, "
                           f"expected {len(in_names)} / {len(out_names)}")
    kv, hd = cfg.num_kv_heads, cfg.head_dim
    for v, name in zip(graph.inputs, in_names):
        v.name = name
        if name in ("input_ids", "position_ids"):
            v.shape = ir.Shape(["batch", "sequence"])
        elif name == "attention_mask":
            v.shape = ir.Shape(["batch", "total_sequence"])
        else:
            v.shape = ir.Shape(["batch", kv, "past_sequence", hd])
    for v, name in zip(graph.outputs, out_names):
        v.name = name
        v.shape = ir.Shape(["batch", "sequence", cfg.vocab_size] if name == "logits" else ["batch", kv, "total_sequence", hd])

    contract = op_contract()
    moe = op_contract("NVFP4MoE")
    for node in graph:
        node.metadata_props.clear()  # the tracer's stack traces: large, of no use downstream
        if node.domain == contract["domain"] and node.op_type == contract["name"]:
            w = node.inputs[1].name  # "<module path>.weight"
            node.name = w[: -len(".weight")] if w.endswith(".weight") else w
        elif node.domain == moe["domain"] and node.op_type == moe["name"]:
            w = node.inputs[2].name  # "<block>.experts.w13_weight"
            node.name = w[: -len(".w13_weight")] if w.endswith(".w13_weight") else w
    model_ir.producer_name = "nvfp4-export"
    model_ir.producer_version = "0.1.0"
    model_ir.metadata_props["nvfp4.source_checkpoint"] = source
    model_ir.opset_imports[contract["domain"]] = 1
    model_ir.ir_version = PLUGIN_IR_VERSION


def count_parameters(model: torch.nn.Module) -> int:
    """Logical parameters: N*K per NVFP4 weight (not its bytes or scales), numel elsewhere."""
    total, seen = 0, set()
    for module in model.modules():
        if isinstance(module, NVFP4MoE):  # E experts of gate, up [I, H] and down [H, I]
            total += 3 * module.num_experts * module.hidden_size * module.intermediate_size
            continue
        for name, buf in module.named_buffers(recurse=False):
            if buf is None or id(buf) in seen or name == "inv_freq":
                continue
            seen.add(id(buf))
            if isinstance(module, NVFP4Linear):
                if name == "weight":
                    total += module.in_features * module.out_features
                elif name == "bias":
                    total += buf.numel()
            else:
                total += buf.numel()
    return total


def nvfp4_linear_count(model: torch.nn.Module) -> int:
    """NVFP4 linears of the model, each expert's three projections included."""
    return sum(1 if isinstance(m, NVFP4Linear) else 3 * m.num_experts if isinstance(m, NVFP4MoE) else 0
               for m in model.modules())


# --- writing --------------------------------------------------------------------------------------

def output_paths(out_path: Path) -> tuple[Path, Path, Path]:
    """(OUT.onnx.data, OUT.onnx.json, OUT.onnx): the files an export writes, in publishing order
    (the .onnx last: a reader that finds it finds its data and sidecar)."""
    return out_path.with_name(out_path.name + ".data"), sidecar_mod.sidecar_path(out_path), out_path


def check_output_path(out_path: Path, force: bool, inputs=()) -> None:
    if out_path.suffix != ".onnx":
        raise ExportError(f"{out_path}: the output file name must end in .onnx")
    data, side, onnx = output_paths(out_path)
    check_outputs([onnx, data, side], inputs=inputs, force=force)


def initializer_bytes(model_ir) -> int:
    return sum(v.const_value.nbytes for v in model_ir.graph.initializers.values() if v.const_value is not None)


def save_model(model_ir, onnx_path: Path, *, external_data: bool, progress: bool = True) -> None:
    """onnx_ir.save of the model to `onnx_path` (+ `onnx_path`.data when external)."""
    import onnx_ir as ir
    from tqdm import tqdm

    data_name = onnx_path.name + ".data"
    total = initializer_bytes(model_ir)
    with tqdm(total=total, unit="B", unit_scale=True, desc="writing", disable=not progress, leave=False) as bar:
        def callback(tensor, info):
            bar.update(tensor.nbytes)

        ir.save(model_ir, onnx_path, external_data=data_name if external_data else None,
                callback=callback if external_data else None)


def export_model(model_dir: str | os.PathLike, out_path: str | os.PathLike, *, fmt: str = "plugin",
                 dtype: str = "float16", opset: int | None = None, force: bool = False,
                 external_data: bool | None = None, progress: bool = True,
                 check: Callable[[Path], bool] | None = None, keep_unchecked: bool = False,
                 log: Callable[[str], None] = print) -> ExportResult:
    """Export the checkpoint in `model_dir` to `out_path`. external_data None = only when needed.

    `check(staged_onnx_path) -> ok` (e.g. --verify) runs on the written files before they are
    published; when it fails they are discarded (`result.published` False) unless `keep_unchecked`.
    Raises a UserError (one line) for bad input or an unwritable output."""
    from tqdm import tqdm

    t0 = time.perf_counter()
    out_path = Path(out_path)
    if fmt not in FORMATS:
        raise ExportError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if dtype not in ACTIVATION_DTYPES:
        raise ExportError(f"--dtype must be one of {', '.join(ACTIVATION_DTYPES)}, got {dtype!r}")
    opset = DEFAULT_OPSET[fmt] if opset is None else int(opset)
    lo, hi = OPSET_RANGE[fmt]
    if not lo <= opset <= hi:
        raise ExportError(f"--opset {opset} is not supported for --format {fmt} (allowed: {lo}..{hi})")
    check_output_path(out_path, force, inputs=[getattr(model_dir, "directory", model_dir)])
    checkpoint = open_any(model_dir)

    cfg = decoder_config(checkpoint)
    with tqdm(total=cfg.num_layers, desc="layers", unit="layer", disable=not progress, leave=False) as bar:
        model = build_model(checkpoint, torch_dtype(dtype), reference="onnx", progress=lambda i: bar.update(1),
                            defer_casts=True)
    quantized = nvfp4_linear_count(model)
    parameters = count_parameters(model)

    model_ir = trace_to_onnx_ir(model, opset)
    finalize_graph(model_ir, cfg, str(checkpoint.directory))
    custom_ops = sidecar_mod.graph_ops(model_ir)
    if fmt == "qdq":
        from export.qdq import rewrite_to_qdq

        rewrite_to_qdq(model_ir)
    if external_data is None:
        external_data = initializer_bytes(model_ir) > EXTERNAL_DATA_THRESHOLD

    side = sidecar_mod.build_sidecar(
        fmt=fmt, dtype=dtype, architecture=cfg.architecture, num_layers=cfg.num_layers,
        num_kv_heads=cfg.num_kv_heads, head_dim=cfg.head_dim, vocab_size=cfg.vocab_size,
        max_position_embeddings=cfg.max_position_embeddings, quantized_layers=quantized,
        excluded_layers=sorted(checkpoint.excluded), source_checkpoint=str(checkpoint.directory),
        checkpoint_format=checkpoint.format, ops=custom_ops,
    )
    data_path, side_path, _ = targets = output_paths(out_path)
    with Staging(targets) as staging:
        staged_onnx = staging.path(out_path)
        save_model(model_ir, staged_onnx, external_data=external_data, progress=progress)
        staging.path(side_path).write_text(json.dumps(side, indent=2) + "\n", encoding="utf-8")
        written = sum(f.stat().st_size for f in staging.folder.iterdir())
        passed = None if check is None else bool(check(staged_onnx))
        published = passed is not False or keep_unchecked
        if published:
            staging.publish(obsolete=[] if external_data else [data_path])
    return ExportResult(
        onnx_path=out_path, data_path=data_path if external_data else None, sidecar_path=side_path,
        format=fmt, dtype=dtype, opset=opset, quantized_layers=quantized,
        excluded_layers=sorted(checkpoint.excluded), parameters=parameters, bytes_written=written,
        seconds=time.perf_counter() - t0, sidecar=side, check_passed=passed, published=published,
    )
