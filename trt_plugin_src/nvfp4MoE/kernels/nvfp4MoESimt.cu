// The experts' NVFP4 linears with FFMA (SIMT): every architecture from sm_75, any K % 16 == 0 and
// alignment, and the only exact path for float32 w4a16 (an fp32 x times ŵ is not exact in a 16-bit
// tensor-core format; FFMA forms each product exactly before its one rounding). Same grid, work
// items and epilogue as the mma.sync kernel (nvfp4MoEGemm.cu); one K step is one FP8 block.
#include "nvfp4MoEInternal.cuh"

namespace nvfp4
{
namespace moe
{
namespace
{

constexpr int kThreads = 128;

// AT: the operand's element type (fp16 x-hat for w4a4, T for w4a16); R: rows per work item.
template <typename AT, typename T, int R>
__global__ void __launch_bounds__(kThreads) expertSimtKernel(ExpertLinearArgs const a)
{
    constexpr int kPerThread = R * 32 / kThreads; // outputs per thread
    __shared__ float as[16][R + 1];               // [k][pair row]
    __shared__ float bs[16][32 + 1];              // [k][weight row]
    __shared__ float out[32][R + 1];

    detail::allowDependentLaunch();
    detail::waitPrimaryGrid();
    ItemRows r;
    if (!itemRows(a, blockIdx.x, r))
    {
        return;
    }
    int64_t const tile = blockIdx.y;
    int64_t const K = a.K;
    int64_t const e = r.expert;
    int const tid = threadIdx.x;
    // Weight loader: row tid / 4 of the tile, elements 4 * (tid % 4) .. +3 of the block.
    int const lr = tid / 4;
    int const part = tid % 4;
    int64_t const n = min(weightRow(a, tile, lr), a.N - 1);
    uint8_t const* wRow = a.w + (e * a.N + n) * (K / 2);
    uint8_t const* sRow = a.ws + (e * a.N + n) * (K / 16);
    // Compute role: weight row tid % 32, pair rows tid / 32 + 4 i.
    int const cw = tid % 32;
    int const cm = tid / 32;

    float acc[kPerThread] = {};
    for (int64_t k0 = 0; k0 < K; k0 += 16)
    {
        for (int idx = tid; idx < R * 16; idx += kThreads)
        {
            int const m = idx / 16;
            int const kk = idx % 16;
            int64_t const row = operandRow(a, r.posBase + min(m, r.rows - 1));
            as[kk][m] = detail::toFloat<AT>(static_cast<AT const*>(a.a)[row * K + k0 + kk]);
        }
        float const s = math::fp8e4m3ToFloat(sRow[k0 / 16]);
        uint8_t const b0 = wRow[(k0 + 4 * part) / 2];
        uint8_t const b1 = wRow[(k0 + 4 * part) / 2 + 1];
        bs[4 * part + 0][lr] = math::mulRn(math::e2m1ToFloat(b0 & 0xF), s);
        bs[4 * part + 1][lr] = math::mulRn(math::e2m1ToFloat(b0 >> 4), s);
        bs[4 * part + 2][lr] = math::mulRn(math::e2m1ToFloat(b1 & 0xF), s);
        bs[4 * part + 3][lr] = math::mulRn(math::e2m1ToFloat(b1 >> 4), s);
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < 16; ++kk)
        {
            float const wv = bs[kk][cw];
#pragma unroll
            for (int i = 0; i < kPerThread; ++i)
            {
                acc[i] = __fmaf_rn(as[kk][cm + 4 * i], wv, acc[i]);
            }
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < kPerThread; ++i)
    {
        out[cw][cm + 4 * i] = acc[i];
    }
    __syncthreads();
    expertEpilogue<T>(a, r, tile, 1.0f, [&](int32_t row, int32_t m) { return out[row][m]; });
}

template <typename AT, typename T, int R>
cudaError_t launchTyped(ExpertLinearArgs const& a, cudaStream_t stream)
{
    int64_t const tiles = a.gated ? a.I / 16 : (a.N + 31) / 32;
    return detail::launchKernel(a.pdl, expertSimtKernel<AT, T, R>,
        dim3(static_cast<unsigned>(a.maxItems), static_cast<unsigned>(tiles)), dim3(kThreads), 0, stream, a);
}

template <typename AT, typename T>
cudaError_t launchForRows(ExpertLinearArgs const& a, cudaStream_t stream)
{
    return withRowsPerItem(
        a.rowsPerItem, [&](auto rows) { return launchTyped<AT, T, decltype(rows)::value>(a, stream); });
}

template <typename T>
cudaError_t launchForOperand(ExpertLinearArgs const& a, cudaStream_t stream)
{
    return a.w4a4 ? launchForRows<__half, T>(a, stream) : launchForRows<T, T>(a, stream);
}

} // namespace

cudaError_t launchExpertLinearSimt(ExpertLinearArgs const& a, cudaStream_t stream)
{
    switch (a.actType)
    {
    case ActType::kFLOAT: return launchForOperand<float>(a, stream);
    case ActType::kHALF: return launchForOperand<__half>(a, stream);
    case ActType::kBF16: return launchForOperand<__nv_bfloat16>(a, stream);
    }
    return cudaErrorInvalidValue;
}

} // namespace moe
} // namespace nvfp4
