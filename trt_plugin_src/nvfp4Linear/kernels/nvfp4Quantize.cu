// Dynamic NVFP4 quantization of the activation (w4a4), one pass: x [M, K] -> x-hat = q * s_B as fp16
// (exact) for the GEMM kernels, optionally also the FP8 block scales (for bit-exact tests).
// The arithmetic is nvfp4Math.h's, shared with the CPU ONNX Runtime op, so both agree bit for bit.
#include "nvfp4QuantizeBlock.cuh"

namespace nvfp4
{
namespace detail
{
namespace
{

// One thread per block of 16 (blocks are contiguous along K, so consecutive threads read
// consecutive memory).
template <typename T, bool Vec>
__global__ void quantizeActivationKernel(T const* __restrict__ x, int64_t numBlocks, float G, float invG,
    __half* __restrict__ xhat, uint8_t* __restrict__ scaleOut)
{
    allowDependentLaunch(); // the GEMV may start streaming weights meanwhile
    int64_t const b = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (b >= numBlocks)
    {
        return;
    }
    float v[16];
    loadActBlock<T, Vec>(x + b * 16, v);
    alignas(16) uint4 out[2];
    uint8_t const fp8 = quantizeActBlock(v, G, invG, out);
    uint4* dst = reinterpret_cast<uint4*>(xhat + b * 16);
    dst[0] = out[0];
    dst[1] = out[1];
    if (scaleOut != nullptr)
    {
        scaleOut[b] = fp8;
    }
}

template <typename T>
cudaError_t launchTyped(
    void const* x, int64_t M, int64_t K, float G, __half* xhat, uint8_t* scaleOut, cudaStream_t stream)
{
    int64_t const numBlocks = M * (K / 16);
    if (numBlocks == 0)
    {
        return cudaSuccess;
    }
    int const threads = 128;
    int64_t const grid = (numBlocks + threads - 1) / threads;
    float const invG = math::inverseGlobalScale(G);
    bool const vec = (reinterpret_cast<uintptr_t>(x) % 16) == 0;
    if (vec)
    {
        quantizeActivationKernel<T, true><<<static_cast<unsigned>(grid), threads, 0, stream>>>(
            static_cast<T const*>(x), numBlocks, G, invG, xhat, scaleOut);
    }
    else
    {
        quantizeActivationKernel<T, false><<<static_cast<unsigned>(grid), threads, 0, stream>>>(
            static_cast<T const*>(x), numBlocks, G, invG, xhat, scaleOut);
    }
    return cudaGetLastError();
}

} // namespace

cudaError_t launchQuantizeActivation(void const* x, ActType actType, int64_t M, int64_t K, float inputGlobalScaleInv,
    __half* xhat, uint8_t* scaleOut, cudaStream_t stream)
{
    switch (actType)
    {
    case ActType::kFLOAT: return launchTyped<float>(x, M, K, inputGlobalScaleInv, xhat, scaleOut, stream);
    case ActType::kHALF: return launchTyped<__half>(x, M, K, inputGlobalScaleInv, xhat, scaleOut, stream);
    case ActType::kBF16: return launchTyped<__nv_bfloat16>(x, M, K, inputGlobalScaleInv, xhat, scaleOut, stream);
    }
    return cudaErrorInvalidValue;
}

} // namespace detail
} // namespace nvfp4
