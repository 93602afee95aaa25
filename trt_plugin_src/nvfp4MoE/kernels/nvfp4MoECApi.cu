// C API over the NVFP4MoE kernels (see nvfp4MoECApi.h).
#include "nvfp4MoECApi.h"
#include "nvfp4MoEInternal.cuh"

extern "C" {

size_t nvfp4_moe_workspace_size(
    int64_t M, int32_t num_experts, int32_t top_k, int64_t H, int64_t I, int32_t mode_w4a4, int32_t act_type)
{
    if (!nvfp4::isActType(act_type))
    {
        return 0;
    }
    return nvfp4::moeWorkspaceSize(M, num_experts, top_k, H, I, mode_w4a4 != 0, static_cast<nvfp4::ActType>(act_type));
}

int32_t nvfp4_moe_launch(void const* x, void const* router_logits, void const* w13_weight, void const* w13_weight_scale,
    float const* w13_weight_global_scale, void const* w2_weight, void const* w2_weight_scale,
    float const* w2_weight_global_scale, void* y, int64_t M, int32_t num_experts, int32_t top_k, int64_t H, int64_t I,
    int32_t mode_w4a4, int32_t normalize_topk, float const* w13_input_global_scale,
    float const* w13_input_global_scale_inv, float const* w2_input_global_scale, float const* w2_input_global_scale_inv,
    int32_t act_type, void* workspace, size_t workspace_bytes, void* stream)
{
    if (!nvfp4::isActType(act_type)
        || workspace_bytes < nvfp4::moeWorkspaceSize(
               M, num_experts, top_k, H, I, mode_w4a4 != 0, static_cast<nvfp4::ActType>(act_type)))
    {
        return cudaErrorInvalidValue;
    }
    nvfp4::MoEParams p;
    p.x = x;
    p.routerLogits = router_logits;
    p.w13Weight = static_cast<int8_t const*>(w13_weight);
    p.w13Scale = static_cast<int8_t const*>(w13_weight_scale);
    p.w13GlobalScale = w13_weight_global_scale;
    p.w2Weight = static_cast<int8_t const*>(w2_weight);
    p.w2Scale = static_cast<int8_t const*>(w2_weight_scale);
    p.w2GlobalScale = w2_weight_global_scale;
    p.y = y;
    p.M = M;
    p.numExperts = num_experts;
    p.topK = top_k;
    p.hiddenSize = H;
    p.intermediateSize = I;
    p.w4a4 = mode_w4a4 != 0;
    p.normalizeTopk = normalize_topk != 0;
    p.w13InputScale = w13_input_global_scale;
    p.w13InputScaleInv = w13_input_global_scale_inv;
    p.w2InputScale = w2_input_global_scale;
    p.w2InputScaleInv = w2_input_global_scale_inv;
    p.actType = static_cast<nvfp4::ActType>(act_type);
    p.workspace = workspace;
    return nvfp4::launchMoE(p, static_cast<cudaStream_t>(stream));
}

int32_t nvfp4_moe_set_options(int32_t gemm, int32_t rows_per_item, int32_t grouping)
{
    bool const rowsOk = rows_per_item == 0 || rows_per_item == 8 || rows_per_item == 16 || rows_per_item == 32
        || rows_per_item == 64;
    if (gemm < 0 || gemm > 2 || !rowsOk || grouping < 0 || grouping > 2)
    {
        return cudaErrorInvalidValue;
    }
    nvfp4::moe::options() = nvfp4::moe::Options{gemm, rows_per_item, grouping};
    return cudaSuccess;
}

} // extern "C"
