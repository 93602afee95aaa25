// C API over the NVFP4Linear kernels (see nvfp4KernelsCApi.h).
#include "nvfp4KernelsCApi.h"
#include "nvfp4Launch.cuh"
#include "nvfp4ScaleLayout.h"
#include "nvfp4Tuning.h"

using nvfp4::ActType;

namespace
{

// The operand and shape fields of LinearParams (mode and activation scales are left at their defaults).
nvfp4::LinearParams operandParams(void const* x, void const* weight, void const* weightScale,
    float const* weightGlobalScale, int32_t wgsLen, void const* bias, void* y, int64_t M, int64_t N, int64_t K,
    int32_t actType, void* workspace)
{
    nvfp4::LinearParams p;
    p.x = x;
    p.weight = static_cast<int8_t const*>(weight);
    p.weightScale = static_cast<int8_t const*>(weightScale);
    p.weightGlobalScale = weightGlobalScale;
    p.weightGlobalScaleLen = wgsLen;
    p.bias = bias;
    p.y = y;
    p.M = M;
    p.N = N;
    p.K = K;
    p.actType = static_cast<ActType>(actType);
    p.workspace = workspace;
    return p;
}

} // namespace

extern "C" {

size_t nvfp4_workspace_size(int64_t M, int64_t N, int64_t K, int32_t mode_w4a4, int32_t act_type)
{
    if (!nvfp4::isActType(act_type))
    {
        return 0;
    }
    return nvfp4::workspaceSize(M, N, K, mode_w4a4 != 0, static_cast<ActType>(act_type));
}

int32_t nvfp4_linear_launch(void const* x, void const* weight, void const* weight_scale,
    float const* weight_global_scale, int32_t wgs_len, void const* bias, void* y, int64_t M, int64_t N, int64_t K,
    int32_t mode_w4a4, float input_global_scale, float input_global_scale_inv, int32_t act_type, void* workspace,
    size_t workspace_bytes, void* stream)
{
    if (!nvfp4::isActType(act_type))
    {
        return cudaErrorInvalidValue;
    }
    bool const w4a4 = mode_w4a4 != 0;
    if (workspace_bytes < nvfp4::workspaceSize(M, N, K, w4a4, static_cast<ActType>(act_type)))
    {
        return cudaErrorInvalidValue;
    }
    nvfp4::LinearParams p = operandParams(
        x, weight, weight_scale, weight_global_scale, wgs_len, bias, y, M, N, K, act_type, workspace);
    p.w4a4 = w4a4;
    p.inputGlobalScale = input_global_scale;
    p.inputGlobalScaleInv = input_global_scale_inv;
    return nvfp4::launchLinear(p, static_cast<cudaStream_t>(stream));
}

int32_t nvfp4_quantize_activation(void const* x, int64_t M, int64_t K, int32_t act_type,
    float input_global_scale_inv, void* xhat_fp16, void* scale_fp8, void* stream)
{
    if (!nvfp4::isActType(act_type) || M < 0 || K <= 0 || K % 16 != 0 || x == nullptr || xhat_fp16 == nullptr
        || reinterpret_cast<uintptr_t>(xhat_fp16) % 16 != 0)
    {
        return cudaErrorInvalidValue;
    }
    return nvfp4::detail::launchQuantizeActivation(x, static_cast<ActType>(act_type), M, K, input_global_scale_inv,
        static_cast<__half*>(xhat_fp16), static_cast<uint8_t*>(scale_fp8), nvfp4::detail::ActOrder::kNatural,
        static_cast<cudaStream_t>(stream));
}

int32_t nvfp4_force_kernel(int32_t path)
{
    if (path < 0 || path > static_cast<int32_t>(nvfp4::detail::KernelPath::kDequantGemm))
    {
        return cudaErrorInvalidValue;
    }
    nvfp4::detail::forcedPath() = static_cast<nvfp4::detail::KernelPath>(path);
    return cudaSuccess;
}

int32_t nvfp4_wgmma_plan(int64_t M, int64_t N, int64_t K, int32_t sm_count, int32_t* plan)
{
    nvfp4::LinearParams p;
    p.M = M;
    p.N = N;
    p.K = K;
    if (M < 1 || N < 1 || K < 1 || sm_count < 1 || plan == nullptr)
    {
        return cudaErrorInvalidValue;
    }
    if (!nvfp4::detail::wgmmaSupports(p))
    {
        return cudaErrorNotSupported;
    }
    nvfp4::detail::WgmmaPlan const w = nvfp4::detail::planWgmma(M, N, K, sm_count);
    nvfp4::detail::tuning::WgmmaTile const& tile = nvfp4::detail::tuning::kWgmmaTiles[w.tile];
    plan[0] = tile.bn;
    plan[1] = tile.ctasPerSm;
    plan[2] = tile.weightRows;
    plan[3] = w.splits;
    return cudaSuccess;
}

size_t nvfp4_fp4_scale_bytes(int64_t rows, int64_t K)
{
    return rows > 0 && K > 0 ? static_cast<size_t>(nvfp4::layout::swizzledScaleBytes(rows, K / 16)) : 0;
}

int32_t nvfp4_fp4_quantize_activation(void const* x, int64_t M, int64_t K, int32_t act_type,
    float input_global_scale_inv, void* packed, void* scales, void* stream)
{
    if (!nvfp4::isActType(act_type) || x == nullptr || packed == nullptr || scales == nullptr)
    {
        return cudaErrorInvalidValue;
    }
    return nvfp4::detail::launchQuantizeActivationFp4(x, static_cast<ActType>(act_type), M, K, input_global_scale_inv,
        static_cast<uint8_t*>(packed), static_cast<uint8_t*>(scales), static_cast<cudaStream_t>(stream));
}

int32_t nvfp4_fp4_prepare_weight(void const* weight_scale, int64_t N, int64_t K, float const* weight_global_scale,
    int32_t wgs_len, float input_global_scale, void* scales, float* alpha, void* stream)
{
    if (weight_scale == nullptr || weight_global_scale == nullptr || scales == nullptr || alpha == nullptr
        || (wgs_len != 1 && wgs_len != N))
    {
        return cudaErrorInvalidValue;
    }
    return nvfp4::detail::launchPrepareWeightFp4(static_cast<int8_t const*>(weight_scale), N, K, weight_global_scale,
        wgs_len, input_global_scale, static_cast<uint8_t*>(scales), alpha, static_cast<cudaStream_t>(stream));
}

int32_t nvfp4_native_fp4_probe(
    int64_t M, int64_t N, int64_t K, int32_t act_type, int32_t wgs_len, int32_t has_bias, void* buffer)
{
    if (!nvfp4::isActType(act_type) || M <= 0 || N <= 0 || K <= 0 || K % 16 != 0 || buffer == nullptr
        || reinterpret_cast<uintptr_t>(buffer) % 256 != 0 || (wgs_len != 1 && wgs_len != N))
    {
        return cudaErrorInvalidValue;
    }
    // Planning only: every operand pointer is the (valid, aligned) probe buffer.
    nvfp4::LinearParams const p = operandParams(buffer, buffer, buffer, static_cast<float const*>(buffer), wgs_len,
        has_bias != 0 ? buffer : nullptr, buffer, M, N, K, act_type, buffer);
    return nvfp4::detail::probeNativeFp4(p);
}

char const* nvfp4_native_fp4_status(void)
{
    return nvfp4::nativeFp4Status();
}

char const* nvfp4_dequant_gemm_status(void)
{
    return nvfp4::dequantGemmStatus();
}

char const* nvfp4_error_string(int32_t code)
{
    return cudaGetErrorString(static_cast<cudaError_t>(code));
}

} // extern "C"
