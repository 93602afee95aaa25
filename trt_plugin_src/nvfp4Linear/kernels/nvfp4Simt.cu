// SIMT (FFMA) NVFP4 linear: any M/N, K % 16 == 0, any alignment, every architecture from sm_75.
// The portable fallback and the only exact path for float32 w4a16 (an fp32 x times ŵ is not exact
// in any 16-bit tensor-core format, but FFMA forms each product exactly before its one rounding).
// Also the split-K reduction kernel.
#include "nvfp4Launch.cuh"
#include "nvfp4Numerics.cuh"
#include "nvfp4Ptx.cuh"

namespace nvfp4
{
namespace detail
{
namespace
{

constexpr int kTile = 64;   // outputs per CTA along M and N
constexpr int kBK = 16;     // one scale block per step
constexpr int kPad = 4;     // keeps the transposed smem stores off a single bank

template <typename T, typename AT>
__global__ void __launch_bounds__(256) simtLinearKernel(AT const* __restrict__ a, uint8_t const* __restrict__ w,
    uint8_t const* __restrict__ ws, float const* __restrict__ wgs, int32_t wgsLen, bool w4a4, float igs,
    T const* __restrict__ bias, T* __restrict__ y, int64_t M, int64_t N, int64_t K)
{
    __shared__ float as[kBK][kTile + kPad];
    __shared__ float bs[kBK][kTile + kPad];
    int const tid = threadIdx.x;
    int const tx = tid % 16; // n direction
    int const ty = tid / 16; // m direction
    int64_t const m0 = static_cast<int64_t>(blockIdx.y) * kTile;
    int64_t const n0 = static_cast<int64_t>(blockIdx.x) * kTile;
    // Loader roles: row r = tid / 4 of the tile, 4 consecutive k at (tid % 4) * 4.
    int const lr = tid / 4;
    int const lk = (tid % 4) * 4;

    float acc[4][4] = {};
    for (int64_t k0 = 0; k0 < K; k0 += kBK)
    {
        {
            int64_t const m = m0 + lr;
#pragma unroll
            for (int i = 0; i < 4; ++i)
            {
                as[lk + i][lr] = m < M ? toFloat<AT>(a[m * K + k0 + lk + i]) : 0.0f;
            }
            int64_t const n = n0 + lr;
            if (n < N)
            {
                float const s = math::fp8e4m3ToFloat(ws[n * (K / 16) + k0 / 16]);
                uint8_t const b0 = w[n * (K / 2) + (k0 + lk) / 2];
                uint8_t const b1 = w[n * (K / 2) + (k0 + lk) / 2 + 1];
                bs[lk + 0][lr] = math::mulRn(math::e2m1ToFloat(b0 & 0xF), s);
                bs[lk + 1][lr] = math::mulRn(math::e2m1ToFloat(b0 >> 4), s);
                bs[lk + 2][lr] = math::mulRn(math::e2m1ToFloat(b1 & 0xF), s);
                bs[lk + 3][lr] = math::mulRn(math::e2m1ToFloat(b1 >> 4), s);
            }
            else
            {
#pragma unroll
                for (int i = 0; i < 4; ++i)
                {
                    bs[lk + i][lr] = 0.0f;
                }
            }
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < kBK; ++kk)
        {
            float av[4], bv[4];
#pragma unroll
            for (int i = 0; i < 4; ++i)
            {
                av[i] = as[kk][ty + 16 * i];
                bv[i] = bs[kk][tx + 16 * i];
            }
#pragma unroll
            for (int i = 0; i < 4; ++i)
            {
#pragma unroll
                for (int j = 0; j < 4; ++j)
                {
                    acc[i][j] = __fmaf_rn(av[i], bv[j], acc[i][j]);
                }
            }
        }
        __syncthreads();
    }
#pragma unroll
    for (int j = 0; j < 4; ++j)
    {
        int64_t const n = n0 + tx + 16 * j;
        if (n >= N)
        {
            continue;
        }
        float const alpha = epilogueAlpha(wgs, wgsLen, n, w4a4, igs, 1.0f);
#pragma unroll
        for (int i = 0; i < 4; ++i)
        {
            int64_t const m = m0 + ty + 16 * i;
            if (m < M)
            {
                storeOutput<T>(y, m * N + n, acc[i][j], alpha, bias, n);
            }
        }
    }
}

template <typename T>
__global__ void reduceSplitsKernel(float const* __restrict__ partial, int splits, float const* __restrict__ wgs,
    int32_t wgsLen, bool w4a4, float igs, T const* __restrict__ bias, T* __restrict__ y, int64_t M, int64_t N)
{
    waitPrimaryGrid();
    int64_t const idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (idx >= M * N)
    {
        return;
    }
    int64_t const n = idx % N;
    float acc = 0.0f;
    for (int s = 0; s < splits; ++s) // fixed order: deterministic
    {
        acc += partial[s * M * N + idx];
    }
    storeOutput<T>(y, idx, acc, epilogueAlpha(wgs, wgsLen, n, w4a4, igs, kWeightOperandScale), bias, n);
}

template <typename T>
cudaError_t launchSimtTyped(LinearParams const& p, void const* a, bool aIsXhat, cudaStream_t stream)
{
    dim3 const grid(static_cast<unsigned>((p.N + kTile - 1) / kTile), static_cast<unsigned>((p.M + kTile - 1) / kTile));
    auto const* w = reinterpret_cast<uint8_t const*>(p.weight);
    auto const* ws = reinterpret_cast<uint8_t const*>(p.weightScale);
    if (aIsXhat)
    {
        simtLinearKernel<T, __half><<<grid, 256, 0, stream>>>(static_cast<__half const*>(a), w, ws,
            p.weightGlobalScale, p.weightGlobalScaleLen, p.w4a4, p.inputGlobalScale, static_cast<T const*>(p.bias),
            static_cast<T*>(p.y), p.M, p.N, p.K);
    }
    else
    {
        simtLinearKernel<T, T><<<grid, 256, 0, stream>>>(static_cast<T const*>(a), w, ws, p.weightGlobalScale,
            p.weightGlobalScaleLen, p.w4a4, p.inputGlobalScale, static_cast<T const*>(p.bias), static_cast<T*>(p.y),
            p.M, p.N, p.K);
    }
    return cudaGetLastError();
}

template <typename T>
cudaError_t launchReduceTyped(LinearParams const& p, float const* partial, int splits, cudaStream_t stream, bool pdl)
{
    int64_t const total = p.M * p.N;
    int const threads = 256;
    return launchKernel(pdl, reduceSplitsKernel<T>, dim3(static_cast<unsigned>((total + threads - 1) / threads)),
        dim3(threads), 0, stream, partial, splits, p.weightGlobalScale, p.weightGlobalScaleLen, p.w4a4,
        p.inputGlobalScale, static_cast<T const*>(p.bias), static_cast<T*>(p.y), p.M, p.N);
}

} // namespace

cudaError_t launchSimt(LinearParams const& p, void const* a, bool aIsXhat, cudaStream_t stream)
{
    switch (p.actType)
    {
    case ActType::kFLOAT: return launchSimtTyped<float>(p, a, aIsXhat, stream);
    case ActType::kHALF: return launchSimtTyped<__half>(p, a, aIsXhat, stream);
    case ActType::kBF16: return launchSimtTyped<__nv_bfloat16>(p, a, aIsXhat, stream);
    }
    return cudaErrorInvalidValue;
}

cudaError_t launchReduceSplits(LinearParams const& p, float const* partial, int splits, cudaStream_t stream, bool pdl)
{
    switch (p.actType)
    {
    case ActType::kFLOAT: return launchReduceTyped<float>(p, partial, splits, stream, pdl);
    case ActType::kHALF: return launchReduceTyped<__half>(p, partial, splits, stream, pdl);
    case ActType::kBF16: return launchReduceTyped<__nv_bfloat16>(p, partial, splits, stream, pdl);
    }
    return cudaErrorInvalidValue;
}

} // namespace detail
} // namespace nvfp4
