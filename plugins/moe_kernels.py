"""ctypes access to the NVFP4MoE CUDA kernels (build/libnvfp4_kernels.so) on CUDA torch tensors.

    tensors, attributes = stacked_operands(moe)      # an NVFP4MoEWeights as the node's inputs 2-7 + attributes
    y = nvfp4_moe(x, router_logits, **tensors, **attributes, out=None, workspace=None)

Operands follow docs/op-contract-moe.md: x [..., H] and router_logits [..., E] float32/float16/
bfloat16 (the same dtype); the stacked weights int8 (or uint8) bytes, their block scales int8/uint8
bit patterns or float8_e4m3fn, the weight global scales float32 [E, 2I] / [E, H]; the per-expert
activation scales are the node's FLOATS attributes (lists of E floats, host side). Everything runs
on torch's current CUDA stream; with `out` and `workspace` given nothing is allocated, so the call
can be captured in a CUDA graph. Errors raise RuntimeError (CUDA status) or ValueError (bad argument).
"""
from __future__ import annotations

import ctypes
import functools
from typing import Any, Sequence

import torch

from export.contract import op_contract
from export.layer import GROUP_SIZE, NVFP4MoEWeights
from export.moe import stack_moe
from plugins import kernels
from plugins.kernels import act_type, bytes_view, check_status, mode_flag, nbytes, require_cuda, workspace_tensor

# nvfp4_moe_set_options values (nvfp4MoECApi.h).
GEMM_PATHS = {"auto": 0, "simt": 1, "mma": 2}
GROUPINGS = {"auto": 0, "single": 1, "split": 2}


_i64, _i32, _vp, _sz = ctypes.c_int64, ctypes.c_int32, ctypes.c_void_p, ctypes.c_size_t
_host_floats_p = ctypes.POINTER(ctypes.c_float)
# The NVFP4MoE entry points (nvfp4MoECApi.h), in the same library as NVFP4Linear's.
_SIGNATURES = {
    "nvfp4_moe_workspace_size": ([_i64, _i32, _i32, _i64, _i64, _i32, _i32], _sz),
    "nvfp4_moe_launch": ([_vp, _vp, _vp, _vp, _vp, _vp, _vp, _vp, _vp, _i64, _i32, _i32, _i64, _i64, _i32, _i32,
                          _host_floats_p, _host_floats_p, _host_floats_p, _host_floats_p, _i32, _vp, _sz, _vp], _i32),
    "nvfp4_moe_set_options": ([_i32, _i32, _i32], _i32),
}


@functools.lru_cache(maxsize=None)
def _declared(lib: ctypes.CDLL) -> ctypes.CDLL:
    return kernels.declare(lib, _SIGNATURES)


def library() -> ctypes.CDLL:
    """The kernels library (plugins.kernels.library()) with the NVFP4MoE entry points declared."""
    return _declared(kernels.library())


def workspace_size(M: int, num_experts: int, top_k: int, hidden_size: int, intermediate_size: int, mode: str,
                   dtype: torch.dtype) -> int:
    """Bytes of workspace nvfp4_moe needs for any M' <= M tokens."""
    return int(library().nvfp4_moe_workspace_size(M, num_experts, top_k, hidden_size, intermediate_size,
                                                   mode_flag(mode), act_type(dtype)))


def set_options(gemm: str = "auto", rows_per_item: int = 0, grouping: str = "auto") -> None:
    """Testing/benchmarking, process-wide: pin the expert-GEMM family ('auto', 'simt', 'mma'), the
    rows per work item (0 = automatic, or 8, 16, 32, 64) and the grouping ('auto', 'single': one
    CTA routes, groups and gathers; 'split': one kernel each)."""
    if gemm not in GEMM_PATHS or grouping not in GROUPINGS:
        raise ValueError(f"gemm {gemm!r} / grouping {grouping!r}: expected one of {sorted(GEMM_PATHS)} / "
                         f"{sorted(GROUPINGS)}")
    check_status(library().nvfp4_moe_set_options(GEMM_PATHS[gemm], rows_per_item, GROUPINGS[grouping]),
                 f"nvfp4_moe_set_options(rows_per_item={rows_per_item})")


def stacked_operands(moe: NVFP4MoEWeights, device: torch.device | str | None = None
                     ) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The NVFP4MoE node's inputs 2-7 and attributes for an NVFP4MoEWeights block, as the exporter
    writes them (export.moe.stack_moe, export.torch_ops.moe_node_attributes), on `device`."""
    stacked = stack_moe(moe)
    tensors = {name: t.contiguous().to(device) for name, t in zip(stacked.TENSORS, stacked.tensors())}
    attributes = stacked.node_attributes()
    return tensors, {n: attributes[n] for n in op_contract("NVFP4MoE")["attributes"]}


def _bytes(t: torch.Tensor, name: str, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    t = bytes_view(t, name)
    if tuple(t.shape) != shape:
        raise ValueError(f"{name}: expected shape {list(shape)}, got {list(t.shape)}")
    require_cuda(t, name, device)
    return t


def _host_floats(values: Sequence[float], name: str, count: int):
    values = [float(v) for v in values]
    if len(values) != count:
        raise ValueError(f"{name}: expected num_experts={count} values, got {len(values)}")
    return (ctypes.c_float * count)(*values)


def nvfp4_moe(x, router_logits, w13_weight, w13_weight_scale, w13_weight_global_scale, w2_weight, w2_weight_scale,
              w2_weight_global_scale, *, num_experts: int, top_k: int, hidden_size: int, intermediate_size: int,
              mode: str = "w4a4", normalize_topk: int = 1, w13_input_global_scale: Sequence[float] = (),
              w13_input_global_scale_inv: Sequence[float] = (), w2_input_global_scale: Sequence[float] = (),
              w2_input_global_scale_inv: Sequence[float] = (), group_size: int = GROUP_SIZE,
              activation: str = "silu", out=None, workspace=None):
    """y[..., H] = NVFP4MoE(x[..., H], router_logits[..., E]) on torch's current stream."""
    E, k, H, I = num_experts, top_k, hidden_size, intermediate_size
    if mode not in ("w4a4", "w4a16") or group_size != GROUP_SIZE or activation != "silu":
        raise ValueError(f"mode {mode!r}, group_size {group_size}, activation {activation!r}: expected "
                         f"'w4a4'/'w4a16', 16, 'silu'")
    device = x.device
    act = act_type(x.dtype)
    if x.shape[-1] != H or router_logits.shape[-1] != E or x.shape[:-1] != router_logits.shape[:-1] \
            or router_logits.dtype != x.dtype:
        raise ValueError(f"x {x.dtype} {list(x.shape)} and router_logits {router_logits.dtype} "
                         f"{list(router_logits.shape)}: expected [..., {H}] and [..., {E}] of one dtype")
    x2, l2 = x.reshape(-1, H), router_logits.reshape(-1, E)
    M = int(x2.shape[0])
    require_cuda(x2, "x", device)
    require_cuda(l2, "router_logits", device)
    w13 = _bytes(w13_weight, "w13_weight", (E, 2 * I, H // 2), device)
    s13 = _bytes(w13_weight_scale, "w13_weight_scale", (E, 2 * I, H // 16), device)
    w2 = _bytes(w2_weight, "w2_weight", (E, H, I // 2), device)
    s2 = _bytes(w2_weight_scale, "w2_weight_scale", (E, H, I // 16), device)
    for t, name, shape in ((w13_weight_global_scale, "w13_weight_global_scale", (E, 2 * I)),
                           (w2_weight_global_scale, "w2_weight_global_scale", (E, H))):
        if t.dtype != torch.float32 or tuple(t.shape) != shape:
            raise ValueError(f"{name}: expected float32 {list(shape)}, got {t.dtype} {list(t.shape)}")
        require_cuda(t, name, device)
    w4a4 = mode == "w4a4"
    if w4a4:
        host = [_host_floats(v, n, E) for v, n in ((w13_input_global_scale, "w13_input_global_scale"),
                                                    (w13_input_global_scale_inv, "w13_input_global_scale_inv"),
                                                    (w2_input_global_scale, "w2_input_global_scale"),
                                                    (w2_input_global_scale_inv, "w2_input_global_scale_inv"))]
    else:
        host = [None] * 4
    if out is None:
        out = torch.empty_like(x)
    elif out.dtype != x.dtype or out.numel() != x.numel():
        raise ValueError(f"out: expected {x.dtype} with {x.numel()} elements, got {out.dtype} {list(out.shape)}")
    require_cuda(out, "out", device)
    workspace = workspace_tensor(workspace_size(M, E, k, H, I, mode, x.dtype), workspace, device)
    stream = torch.cuda.current_stream(device).cuda_stream
    status = library().nvfp4_moe_launch(
        x2.data_ptr(), l2.data_ptr(), w13.data_ptr(), s13.data_ptr(), w13_weight_global_scale.data_ptr(),
        w2.data_ptr(), s2.data_ptr(), w2_weight_global_scale.data_ptr(), out.data_ptr(), M, E, k, H, I, int(w4a4),
        int(normalize_topk), *host, act, workspace.data_ptr(), nbytes(workspace), stream)
    check_status(status, f"nvfp4_moe_launch(M={M}, E={E}, top_k={k}, H={H}, I={I}, mode={mode}, dtype={x.dtype})")
    return out.reshape(x.shape)
