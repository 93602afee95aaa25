// C API over the NVFP4Linear CUDA kernels, for ctypes (plugins/kernels.py), tests and benchmarks.
// Every pointer is a device pointer except where noted; `stream` is a cudaStream_t (NULL = legacy
// default stream). Functions return a cudaError_t value (0 = success); nvfp4_error_string() names it.
#pragma once

#include <stddef.h>
#include <stdint.h>

#if defined(_WIN32)
#define NVFP4_CAPI __declspec(dllexport)
#else
#define NVFP4_CAPI __attribute__((visibility("default")))
#endif

#ifdef __cplusplus
extern "C" {
#endif

// act_type: 0 = float32, 1 = float16, 2 = bfloat16 (nvfp4::ActType). mode_w4a4: 1 = w4a4, 0 = w4a16.
NVFP4_CAPI size_t nvfp4_workspace_size(int64_t M, int64_t N, int64_t K, int32_t mode_w4a4, int32_t act_type);

// y[M, N] = NVFP4Linear(x[M, K]) (docs/op-contract.md). weight_global_scale has wgs_len = 1 or N
// elements; bias may be NULL; workspace: >= nvfp4_workspace_size(...) bytes, 256-byte aligned.
// Allocates nothing, so it can be captured in a CUDA graph.
NVFP4_CAPI int32_t nvfp4_linear_launch(void const* x, void const* weight, void const* weight_scale,
    float const* weight_global_scale, int32_t wgs_len, void const* bias, void* y, int64_t M, int64_t N, int64_t K,
    int32_t mode_w4a4, float input_global_scale, float input_global_scale_inv, int32_t act_type, void* workspace,
    size_t workspace_bytes, void* stream);

// The activation quantization alone (w4a4): xhat_fp16[M, K] = q * s_B (exact in fp16) and, if
// scale_fp8 is not NULL, the block scales [M, K/16] as float8_e4m3fn bits.
NVFP4_CAPI int32_t nvfp4_quantize_activation(void const* x, int64_t M, int64_t K, int32_t act_type,
    float input_global_scale_inv, void* xhat_fp16, void* scale_fp8, void* stream);

// Testing/benchmarking: force one kernel family for every later launch in this process
// (0 = automatic dispatch, 1 = SIMT, 2 = GEMV (M <= 64; M > 16 needs K % 128 == 0), 3 = tiled mma.sync, 4 = wgmma (sm_90a),
// 5 = native block-scaled FP4 through cuBLASLt (sm >= 100, w4a4; compile-checked only),
// 6 = weights dequantized to 16 bits, then a cuBLASLt GEMM (sm >= 80; automatic from M = 2048)).
// A forced family that cannot run the problem makes nvfp4_linear_launch return cudaErrorNotSupported.
// nvfp4_workspace_size covers the forced family: call it after forcing.
NVFP4_CAPI int32_t nvfp4_force_kernel(int32_t path);

// The wgmma kernel's plan (sm_90a) for a problem on sm_count SMs, computed on the host (no GPU
// needed): plan (host memory, 4 values) = activation rows per tile, CTAs per SM, weight rows per
// CTA, K splits. cudaErrorNotSupported where the kernel cannot take the problem (K % 256 != 0).
NVFP4_CAPI int32_t nvfp4_wgmma_plan(int64_t M, int64_t N, int64_t K, int32_t sm_count, int32_t* plan);

// Native FP4 path (Blackwell): its operand preparation, exposed for bit-exact tests on any GPU.
// Bytes of a block-scale matrix [rows, K/16] in cuBLASLt's tiled 128x4 layout (padding included).
NVFP4_CAPI size_t nvfp4_fp4_scale_bytes(int64_t rows, int64_t K);
// x[M, K] -> packed E2M1 [M, K/2] (8-byte aligned) + block scales in the tiled layout
// (nvfp4_fp4_scale_bytes(M, K) bytes, padding rows zero). K % 64 == 0.
NVFP4_CAPI int32_t nvfp4_fp4_quantize_activation(void const* x, int64_t M, int64_t K, int32_t act_type,
    float input_global_scale_inv, void* packed, void* scales, void* stream);
// weight_scale[N, K/16] (4-byte aligned) -> tiled layout as UE4M3 (nvfp4_fp4_scale_bytes(N, K) bytes);
// alpha[0 .. wgs_len-1] = fp32(input_global_scale * weight_global_scale[n]), alpha[wgs_len] = 0.
NVFP4_CAPI int32_t nvfp4_fp4_prepare_weight(void const* weight_scale, int64_t N, int64_t K,
    float const* weight_global_scale, int32_t wgs_len, float input_global_scale, void* scales, float* alpha,
    void* stream);
// Plans the native FP4 GEMM for this problem (loads libcublasLt, builds the descriptors, asks the
// heuristic) without the compute-capability test and without launching; `buffer` is any 256-byte
// aligned device allocation (only its address is used). 0 when cuBLASLt offers an algorithm;
// otherwise nvfp4_native_fp4_status() says why.
NVFP4_CAPI int32_t nvfp4_native_fp4_probe(int64_t M, int64_t N, int64_t K, int32_t act_type, int32_t wgs_len,
    int32_t has_bias, void* buffer);
// Why the native FP4 path last could not run (first reason, static string), or NULL.
NVFP4_CAPI char const* nvfp4_native_fp4_status(void);
// Why the dequantize-then-GEMM path could not run the first time (static string), or NULL.
NVFP4_CAPI char const* nvfp4_dequant_gemm_status(void);

// Human-readable name of a cudaError_t value (static string).
NVFP4_CAPI char const* nvfp4_error_string(int32_t code);

#ifdef __cplusplus
}
#endif
