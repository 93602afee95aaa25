"""ctypes access to the NVFP4Linear CUDA kernels (build/libnvfp4_kernels.so) on CUDA torch tensors.

    y = nvfp4_linear(x, weight, weight_scale, weight_global_scale, bias=None, mode="w4a4",
                     input_global_scale=s_in, input_global_scale_inv=G, out=None, workspace=None)

Operands follow docs/op-contract.md: x [..., K] float32/float16/bfloat16; weight [N, K/2] int8 or
uint8 (packed E2M1, element 2j in the low nibble); weight_scale [N, K/16] int8/uint8 bit patterns or
float8_e4m3fn; weight_global_scale float32 [] / [1] / [N] (dequant direction). Everything runs on
torch's current CUDA stream. With `out` and `workspace` given nothing is allocated, so the call can
be captured in a CUDA graph. Errors raise RuntimeError (CUDA status) or ValueError (bad argument).

The library loading and the argument helpers below (`check_status`, `act_type`, `mode_flag`,
`bytes_view`, `require_cuda`, `workspace_tensor`) serve plugins/moe_kernels.py too: both ops' kernels
live in the same library.
"""
from __future__ import annotations

import ctypes
import functools
import os
from typing import Any, NamedTuple

import torch

from plugins.library import find_kernels_library

_ACT_TYPES = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2}
_MODES = ("w4a4", "w4a16")
# nvfp4_force_kernel values (nvfp4KernelsCApi.h).
KERNEL_PATHS = {"auto": 0, "simt": 1, "gemv": 2, "tiled": 3, "wgmma": 4, "native_fp4": 5, "dequant_gemm": 6}
CUDA_ERROR_NOT_SUPPORTED = 801  # cudaErrorNotSupported: a kernel or path cannot take the problem


def declare(lib: ctypes.CDLL, signatures: dict[str, tuple[list, Any]]) -> ctypes.CDLL:
    """Sets the argument and result types of entry points (name -> (argtypes, restype)); `lib`."""
    for name, (argtypes, restype) in signatures.items():
        function = getattr(lib, name)
        function.argtypes, function.restype = argtypes, restype
    return lib


_i64, _i32, _f32, _vp, _sz = ctypes.c_int64, ctypes.c_int32, ctypes.c_float, ctypes.c_void_p, ctypes.c_size_t
# The NVFP4Linear entry points (nvfp4KernelsCApi.h).
_SIGNATURES = {
    "nvfp4_workspace_size": ([_i64, _i64, _i64, _i32, _i32], _sz),
    "nvfp4_linear_launch": ([_vp, _vp, _vp, _vp, _i32, _vp, _vp, _i64, _i64, _i64, _i32, _f32, _f32, _i32, _vp, _sz,
                             _vp], _i32),
    "nvfp4_quantize_activation": ([_vp, _i64, _i64, _i32, _f32, _vp, _vp, _vp], _i32),
    "nvfp4_force_kernel": ([_i32], _i32),
    "nvfp4_fp4_scale_bytes": ([_i64, _i64], _sz),
    "nvfp4_fp4_quantize_activation": ([_vp, _i64, _i64, _i32, _f32, _vp, _vp, _vp], _i32),
    "nvfp4_fp4_prepare_weight": ([_vp, _i64, _i64, _vp, _i32, _f32, _vp, _vp, _vp], _i32),
    "nvfp4_native_fp4_probe": ([_i64, _i64, _i64, _i32, _i32, _i32, _vp], _i32),
    "nvfp4_wgmma_plan": ([_i64, _i64, _i64, _i32, ctypes.POINTER(_i32)], _i32),
    "nvfp4_native_fp4_status": ([], ctypes.c_char_p),
    "nvfp4_error_string": ([_i32], ctypes.c_char_p),
}


@functools.lru_cache(maxsize=None)
def _load(path: str | None = None) -> ctypes.CDLL:
    return declare(ctypes.CDLL(str(find_kernels_library(path))), _SIGNATURES)


def library() -> ctypes.CDLL:
    """The loaded kernels library ($NVFP4_KERNELS_LIB or build/libnvfp4_kernels.so)."""
    return _load(os.environ.get("NVFP4_KERNELS_LIB") or None)


def check_status(status: int, what: str) -> None:
    """RuntimeError naming `what` and the CUDA error, unless `status` is 0 (cudaSuccess)."""
    if status != 0:
        name = library().nvfp4_error_string(status).decode()
        raise RuntimeError(f"{what}: CUDA error {status} ({name})")


def act_type(dtype: torch.dtype) -> int:
    """The C API's act_type of an activation dtype."""
    if dtype not in _ACT_TYPES:
        raise ValueError(f"activation dtype {dtype} not supported; expected float32, float16 or bfloat16")
    return _ACT_TYPES[dtype]


def mode_flag(mode: str) -> int:
    """The C API's mode_w4a4 of a mode name."""
    if mode not in _MODES:
        raise ValueError(f"mode {mode!r}: expected 'w4a4' or 'w4a16'")
    return 1 if mode == "w4a4" else 0


def workspace_size(M: int, N: int, K: int, mode: str, dtype: torch.dtype) -> int:
    """Bytes of workspace nvfp4_linear needs for any M' <= M."""
    return int(library().nvfp4_workspace_size(M, N, K, mode_flag(mode), act_type(dtype)))


def force_kernel(path: str) -> None:
    """Testing/benchmarking: pin one kernel family ('auto', 'simt', 'gemv', 'tiled', 'wgmma',
    'native_fp4', 'dequant_gemm') process-wide. workspace_size covers the pinned family."""
    if path not in KERNEL_PATHS:
        raise ValueError(f"kernel path {path!r}: expected one of {sorted(KERNEL_PATHS)}")
    check_status(library().nvfp4_force_kernel(KERNEL_PATHS[path]), "nvfp4_force_kernel")


def bytes_view(t: torch.Tensor, name: str) -> torch.Tensor:
    """Packed FP4 or FP8 bit patterns as the int8/uint8 bytes the C API takes."""
    if t.dtype in (torch.int8, torch.uint8):
        return t
    if t.dtype == torch.float8_e4m3fn:
        return t.view(torch.uint8)
    raise ValueError(f"{name}: dtype {t.dtype} not supported; expected int8/uint8 bytes")


def require_cuda(t: torch.Tensor, name: str, device: torch.device) -> None:
    if not t.is_cuda or t.device != device:
        raise ValueError(f"{name}: expected a CUDA tensor on {device}, got {t.device}")
    if not t.is_contiguous():
        raise ValueError(f"{name}: expected a contiguous tensor")


def nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def workspace_tensor(need: int, workspace: torch.Tensor | None, device: torch.device) -> torch.Tensor:
    """`workspace`, checked to hold `need` bytes on `device`, or a new one (at least 256 bytes)."""
    if workspace is None:
        return torch.empty(max(need, 256), dtype=torch.uint8, device=device)
    require_cuda(workspace, "workspace", device)
    if nbytes(workspace) < need:
        raise ValueError(f"workspace: {nbytes(workspace)} bytes < {need} needed")
    return workspace


def nvfp4_linear(x, weight_int8, weight_scale_int8, weight_global_scale, bias=None, *, mode="w4a4",
                 input_global_scale=1.0, input_global_scale_inv=1.0, out=None, workspace=None):
    """y[..., N] = NVFP4Linear(x[..., K]) on torch's current stream (see module docstring)."""
    device = x.device
    act = act_type(x.dtype)
    flag = mode_flag(mode)
    weight = bytes_view(weight_int8, "weight")
    scale = bytes_view(weight_scale_int8, "weight_scale")
    if weight.ndim != 2:
        raise ValueError(f"weight: expected [N, K/2], got shape {tuple(weight.shape)}")
    N, K = int(weight.shape[0]), int(weight.shape[1]) * 2
    if x.shape[-1] != K:
        raise ValueError(f"x: last dimension {x.shape[-1]} != in_features {K} (from weight [N, K/2])")
    if K % 16 != 0:
        raise ValueError(f"weight: in_features {K} must be a multiple of 16")
    if tuple(scale.shape) != (N, K // 16):
        raise ValueError(f"weight_scale: expected shape {(N, K // 16)}, got {tuple(scale.shape)}")
    wgs = weight_global_scale
    if not isinstance(wgs, torch.Tensor) or wgs.dtype != torch.float32:
        raise ValueError("weight_global_scale: expected a float32 CUDA tensor of 1 or N elements")
    wgs = wgs.reshape(-1)
    if wgs.numel() not in (1, N):
        raise ValueError(f"weight_global_scale: {wgs.numel()} elements, expected 1 or N={N}")
    x2 = x.reshape(-1, K)
    M = int(x2.shape[0])
    for t, name in ((x2, "x"), (weight, "weight"), (scale, "weight_scale"), (wgs, "weight_global_scale")):
        require_cuda(t, name, device)
    if bias is not None:
        if bias.dtype != x.dtype or tuple(bias.shape) != (N,):
            raise ValueError(f"bias: expected {x.dtype} [{N}], got {bias.dtype} {tuple(bias.shape)}")
        require_cuda(bias, "bias", device)
    if out is None:
        out = torch.empty(*x.shape[:-1], N, dtype=x.dtype, device=device)
    else:
        if out.dtype != x.dtype or out.numel() != M * N:
            raise ValueError(f"out: expected {x.dtype} with {M * N} elements, got {out.dtype} {tuple(out.shape)}")
        require_cuda(out, "out", device)
    workspace = workspace_tensor(workspace_size(M, N, K, mode, x.dtype), workspace, device)
    stream = torch.cuda.current_stream(device).cuda_stream
    status = library().nvfp4_linear_launch(
        x2.data_ptr(), weight.data_ptr(), scale.data_ptr(), wgs.data_ptr(), wgs.numel(),
        bias.data_ptr() if bias is not None else None, out.data_ptr(), M, N, K, flag,
        float(input_global_scale), float(input_global_scale_inv), act,
        workspace.data_ptr(), nbytes(workspace), stream)
    check_status(status, f"nvfp4_linear_launch(M={M}, N={N}, K={K}, mode={mode}, dtype={x.dtype})")
    return out.reshape(*x.shape[:-1], N)


def quantize_activation(x: torch.Tensor, input_global_scale_inv: float):
    """The kernels' w4a4 activation quantization alone: (x_hat float16 [M, K] = q * s_B,
    block scales float8_e4m3fn [M, K/16]) for x [M, K] on CUDA."""
    if x.ndim != 2:
        raise ValueError(f"x: expected [M, K], got shape {tuple(x.shape)}")
    M, K = (int(d) for d in x.shape)
    if K % 16 != 0:
        raise ValueError(f"x: K={K} must be a multiple of 16")
    require_cuda(x, "x", x.device)
    xhat = torch.empty(M, K, dtype=torch.float16, device=x.device)
    scales = torch.empty(M, K // 16, dtype=torch.uint8, device=x.device)
    stream = torch.cuda.current_stream(x.device).cuda_stream
    status = library().nvfp4_quantize_activation(x.data_ptr(), M, K, act_type(x.dtype), float(input_global_scale_inv),
                                                 xhat.data_ptr(), scales.data_ptr(), stream)
    check_status(status, "nvfp4_quantize_activation")
    return xhat, scales.view(torch.float8_e4m3fn)


def fp4_quantize_activation(x: torch.Tensor, input_global_scale_inv: float):
    """The native FP4 path's activation operand for x [M, K] (K % 64 == 0) on CUDA: (packed E2M1
    uint8 [M, K/2], block scales uint8 in cuBLASLt's tiled 128x4 layout, padding rows zero)."""
    if x.ndim != 2:
        raise ValueError(f"x: expected [M, K], got shape {tuple(x.shape)}")
    M, K = (int(d) for d in x.shape)
    require_cuda(x, "x", x.device)
    lib = library()
    packed = torch.empty(M, K // 2, dtype=torch.uint8, device=x.device)
    scales = torch.full((int(lib.nvfp4_fp4_scale_bytes(M, K)),), 0xAA, dtype=torch.uint8, device=x.device)
    stream = torch.cuda.current_stream(x.device).cuda_stream
    status = lib.nvfp4_fp4_quantize_activation(x.data_ptr(), M, K, act_type(x.dtype), float(input_global_scale_inv),
                                               packed.data_ptr(), scales.data_ptr(), stream)
    check_status(status, "nvfp4_fp4_quantize_activation")
    return packed, scales


def fp4_prepare_weight(weight_scale: torch.Tensor, weight_global_scale: torch.Tensor, input_global_scale: float):
    """The native FP4 path's weight-side operands: (weight_scale [N, K/16] re-laid into cuBLASLt's tiled
    layout as UE4M3, alpha float32 [len(weight_global_scale) + 1] = input_global_scale * wgs, then 0)."""
    scale = bytes_view(weight_scale, "weight_scale")
    N, K = int(scale.shape[0]), int(scale.shape[1]) * 16
    wgs = weight_global_scale.reshape(-1)
    for t, name in ((scale, "weight_scale"), (wgs, "weight_global_scale")):
        require_cuda(t, name, scale.device)
    lib = library()
    out = torch.full((int(lib.nvfp4_fp4_scale_bytes(N, K)),), 0xAA, dtype=torch.uint8, device=scale.device)
    alpha = torch.full((wgs.numel() + 1,), float("nan"), dtype=torch.float32, device=scale.device)
    stream = torch.cuda.current_stream(scale.device).cuda_stream
    status = lib.nvfp4_fp4_prepare_weight(scale.data_ptr(), N, K, wgs.data_ptr(), wgs.numel(),
                                          float(input_global_scale), out.data_ptr(), alpha.data_ptr(), stream)
    check_status(status, "nvfp4_fp4_prepare_weight")
    return out, alpha


class WgmmaPlan(NamedTuple):
    bn: int           # activation rows per tile
    ctas_per_sm: int
    weight_rows: int  # per CTA
    splits: int       # K splits


def wgmma_plan(M: int, N: int, K: int, sm_count: int) -> WgmmaPlan | None:
    """The tile and K splits the Hopper wgmma kernel takes for this problem on sm_count SMs (its
    planner, on the host: no GPU needed), or None where it cannot take the problem."""
    plan = (_i32 * 4)()
    status = int(library().nvfp4_wgmma_plan(M, N, K, sm_count, plan))
    if status == CUDA_ERROR_NOT_SUPPORTED:
        return None
    check_status(status, "nvfp4_wgmma_plan")
    return WgmmaPlan(*plan)


def native_fp4_probe(M: int, N: int, K: int, dtype: torch.dtype, wgs_len: int = 1, bias: bool = False):
    """Plan the native FP4 GEMM (cuBLASLt) without the compute-capability test and without running
    it: (CUDA status, reason string or None)."""
    lib = library()
    buf = torch.empty(256, dtype=torch.uint8, device="cuda")
    status = int(lib.nvfp4_native_fp4_probe(M, N, K, act_type(dtype), wgs_len, int(bias), buf.data_ptr()))
    return status, native_fp4_status()


def native_fp4_status() -> str | None:
    """Why Blackwell's native FP4 path (cuBLASLt) first could not run, or None."""
    why = library().nvfp4_native_fp4_status()
    return why.decode() if why else None


def dequant_gemm_status() -> str | None:
    """Why the dequantize-then-GEMM path (cuBLASLt) first could not run, or None. Looked up when
    called, so that libraries built before the path still load (scripts/dev/bench_libs.py)."""
    lib = library()
    status = lib.nvfp4_dequant_gemm_status
    status.argtypes, status.restype = [], ctypes.c_char_p
    why = status()
    return why.decode() if why else None


def tiled_scale_layout(scales: torch.Tensor) -> torch.Tensor:
    """cuBLAS "1D block scaling factors layout": [rows, cols] uint8 -> flat uint8, 128x4 tiles of
    512 bytes (row-tile major); inside a tile, row r and column c at (r % 32) * 16 + (r // 32) * 4 + c;
    rows padded to 128 and columns to 4 with zeros."""
    rows, cols = scales.shape
    rt, ct = -(-rows // 128), -(-cols // 4)
    padded = torch.zeros(rt * 128, ct * 4, dtype=torch.uint8)
    padded[:rows, :cols] = scales
    tiles = padded.view(rt, 128, ct, 4).permute(0, 2, 1, 3)  # [rt, ct, 128, 4]
    return tiles.reshape(rt, ct, 4, 32, 4).transpose(2, 3).reshape(-1)
