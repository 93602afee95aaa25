// C API over the NVFP4MoE CUDA kernels, for ctypes (plugins/moe_kernels.py), tests and benchmarks.
// Built into the same library as the NVFP4Linear C API (nvfp4KernelsCApi.h). Device pointers
// except where noted; `stream` is a cudaStream_t (NULL = legacy default stream); functions return
// a cudaError_t value (0 = success), which nvfp4_error_string() names.
#pragma once

#include "nvfp4KernelsCApi.h"

#ifdef __cplusplus
extern "C" {
#endif

// act_type: 0 = float32, 1 = float16, 2 = bfloat16. mode_w4a4: 1 = w4a4, 0 = w4a16.
NVFP4_CAPI size_t nvfp4_moe_workspace_size(
    int64_t M, int32_t num_experts, int32_t top_k, int64_t H, int64_t I, int32_t mode_w4a4, int32_t act_type);

// y[M, H] = NVFP4MoE(x[M, H], router_logits[M, E]) (docs/op-contract-moe.md). The four per-expert
// activation-scale arrays (E floats each; ignored for w4a16) are HOST pointers, as the op's
// attributes. workspace: >= nvfp4_moe_workspace_size(...) bytes, 256-byte aligned. Allocates
// nothing and never waits for the device, so it can be captured in a CUDA graph.
NVFP4_CAPI int32_t nvfp4_moe_launch(void const* x, void const* router_logits, void const* w13_weight,
    void const* w13_weight_scale, float const* w13_weight_global_scale, void const* w2_weight,
    void const* w2_weight_scale, float const* w2_weight_global_scale, void* y, int64_t M, int32_t num_experts,
    int32_t top_k, int64_t H, int64_t I, int32_t mode_w4a4, int32_t normalize_topk,
    float const* w13_input_global_scale, float const* w13_input_global_scale_inv, float const* w2_input_global_scale,
    float const* w2_input_global_scale_inv, int32_t act_type, void* workspace, size_t workspace_bytes, void* stream);

// Testing/benchmarking, process-wide for later launches (0 = automatic): gemm 1 = SIMT, 2 = mma.sync
// (cudaErrorNotSupported from the launch where it cannot run); rows_per_item 8, 16, 32 or 64;
// grouping 1 = one CTA (routing, grouping and gather in one launch), 2 = one kernel each.
NVFP4_CAPI int32_t nvfp4_moe_set_options(int32_t gemm, int32_t rows_per_item, int32_t grouping);

#ifdef __cplusplus
}
#endif
