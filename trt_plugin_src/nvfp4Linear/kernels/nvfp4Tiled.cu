// Tiled NVFP4 GEMM for M > 16 (prefill): mma.sync m16n8k16 (fp16 or bf16 operands, fp32
// accumulation) fed by a cp.async multi-stage pipeline. Per stage (64 along K) the CTA copies the
// 16-bit activation tile, the packed FP4 weight tile (0.5 B/weight) and the FP8 scales into shared
// memory; each warp then decodes its weight fragments from the packed bytes with bit operations
// (no dequantized copy of the weight anywhere). The thread mapping (nvfp4Numerics.cuh,
// decodeWeightWord) lets every thread read its A fragment with 16-byte shared loads; the A rows
// are padded to 144 bytes so that these loads are free of bank conflicts.
// Optional split-K (grid z) with partials reduced in a fixed order, for small grids.
#include "nvfp4Launch.cuh"
#include "nvfp4Numerics.cuh"
#include "nvfp4Ptx.cuh"
#include "nvfp4Tuning.h"

#include <algorithm>
#include <cmath>

namespace nvfp4
{
namespace detail
{
namespace
{

constexpr int kBK = 64;
constexpr int kARowBytes = kBK * 2 + 16; // padded row of the A tile

// CTAs per SM the launch bounds ask for: small tiles fit two.
constexpr int kCtasPerSmFor(int bm)
{
    return bm <= 64 ? 2 : 1;
}

template <int BM, int BN, int WM, int WN, int STAGES>
struct TileConfig
{
    static constexpr int kThreads = WM * WN * 32;
    static constexpr int kMT = BM / WM / 16; // m16 tiles per warp
    static constexpr int kNT = BN / WN / 8;  // n8 tiles per warp
    static constexpr int kABytes = BM * kARowBytes;
    static constexpr int kWBytes = BN * kBK / 2;
    static constexpr int kSBytes = BN * kBK / 16;
    static constexpr int kStageBytes = kABytes + kWBytes + kSBytes;
    static constexpr int kSmemBytes = kStageBytes * STAGES;
    static_assert(kMT >= 1 && kNT >= 1, "tile too small for the warp grid");
};

template <typename Op, typename T, int BM, int BN, int WM, int WN, int STAGES>
__global__ void __launch_bounds__(WM* WN * 32, kCtasPerSmFor(BM)) tiledMmaKernel(typename Op::Elem const* __restrict__ a,
    uint8_t const* __restrict__ w, uint8_t const* __restrict__ ws, float const* __restrict__ wgs, int32_t wgsLen,
    bool w4a4, float igs, T const* __restrict__ bias, T* __restrict__ y, float* __restrict__ partial, int64_t M,
    int64_t N, int64_t K, int chunksPerSplit)
{
    using Cfg = TileConfig<BM, BN, WM, WN, STAGES>;
    extern __shared__ __align__(128) uint8_t smem[];

    int const tid = threadIdx.x;
    int const warp = tid / 32;
    int const lane = tid % 32;
    int const g = lane / 4;
    int const t = lane % 4;
    int const wm = warp / WN;
    int const wn = warp % WN;
    int64_t const bn = static_cast<int64_t>(blockIdx.x) * BN;
    int64_t const bm = static_cast<int64_t>(blockIdx.y) * BM;
    int64_t const numChunks = K / kBK;
    int64_t const cBeg = static_cast<int64_t>(blockIdx.z) * chunksPerSplit;
    int64_t const cEnd = numChunks < cBeg + chunksPerSplit ? numChunks : cBeg + chunksPerSplit;
    int const nLocal = cEnd > cBeg ? static_cast<int>(cEnd - cBeg) : 0;

    auto loadStage = [&](int stage, int64_t chunk) {
        uint8_t* sA = smem + stage * Cfg::kStageBytes;
        uint8_t* sW = sA + Cfg::kABytes;
        uint8_t* sS = sW + Cfg::kWBytes;
        for (int i = tid; i < BM * 8; i += Cfg::kThreads)
        {
            int const r = i / 8;
            int const ch = i % 8;
            int64_t const m = bm + r;
            bool const ok = m < M;
            cpAsync16(sA + r * kARowBytes + ch * 16, ok ? static_cast<void const*>(a + m * K + chunk * kBK + ch * 8) : a, ok);
        }
        for (int i = tid; i < BN * 2; i += Cfg::kThreads)
        {
            int const r = i / 2;
            int const ch = i % 2;
            int64_t const n = bn + r;
            bool const ok = n < N;
            cpAsync16(sW + r * 32 + ch * 16, ok ? static_cast<void const*>(w + n * (K / 2) + chunk * 32 + ch * 16) : w, ok);
        }
        for (int i = tid; i < BN; i += Cfg::kThreads)
        {
            int64_t const n = bn + i;
            bool const ok = n < N;
            cpAsync4(sS + i * 4, ok ? static_cast<void const*>(ws + n * (K / 16) + chunk * 4) : ws, ok);
        }
    };

    float acc[Cfg::kMT][Cfg::kNT][4] = {};

#pragma unroll
    for (int st = 0; st < STAGES - 1; ++st)
    {
        if (st < nLocal)
        {
            loadStage(st, cBeg + st);
        }
        cpAsyncCommit();
    }

    for (int it = 0; it < nLocal; ++it)
    {
        cpAsyncWait<STAGES - 2>();
        __syncthreads(); // stage `it` is visible to all; stage `it-1` is no longer read by anyone
        {
            int const next = it + STAGES - 1;
            if (next < nLocal)
            {
                loadStage(next % STAGES, cBeg + next);
            }
            cpAsyncCommit();
        }
        uint8_t const* sA = smem + (it % STAGES) * Cfg::kStageBytes;
        uint8_t const* sW = sA + Cfg::kABytes;
        uint8_t const* sS = sW + Cfg::kWBytes;

        uint2 wv[Cfg::kNT];
        uint32_t sc[Cfg::kNT];
#pragma unroll
        for (int j = 0; j < Cfg::kNT; ++j)
        {
            int const nr = wn * (BN / WN) + j * 8 + g;
            wv[j] = *reinterpret_cast<uint2 const*>(sW + nr * 32 + t * 8);
            sc[j] = Op::scalePair(sS[nr * 4 + t]);
        }
#pragma unroll
        for (int h = 0; h < 2; ++h)
        {
            uint4 aq[Cfg::kMT][2];
#pragma unroll
            for (int i = 0; i < Cfg::kMT; ++i)
            {
                int const mr = wm * (BM / WM) + i * 16 + g;
                aq[i][0] = *reinterpret_cast<uint4 const*>(sA + mr * kARowBytes + t * 32 + h * 16);
                aq[i][1] = *reinterpret_cast<uint4 const*>(sA + (mr + 8) * kARowBytes + t * 32 + h * 16);
            }
#pragma unroll
            for (int j = 0; j < Cfg::kNT; ++j)
            {
                // Word h of the thread's 8 weight bytes: steps 2h (bytes 0,1) and 2h+1 (bytes 2,3).
                uint32_t b[4];
                decodeWeightWord<Op>(h ? wv[j].y : wv[j].x, sc[j], b);
                // Independent MMAs back to back (the two steps of one tile depend on each other).
#pragma unroll
                for (int i = 0; i < Cfg::kMT; ++i)
                {
                    uint32_t const a0[4] = {aq[i][0].x, aq[i][1].x, aq[i][0].y, aq[i][1].y};
                    Op::mma(acc[i][j], a0, b[0], b[1]);
                }
#pragma unroll
                for (int i = 0; i < Cfg::kMT; ++i)
                {
                    uint32_t const a1[4] = {aq[i][0].z, aq[i][1].z, aq[i][0].w, aq[i][1].w};
                    Op::mma(acc[i][j], a1, b[2], b[3]);
                }
            }
        }
    }
    cpAsyncWait<0>();

#pragma unroll
    for (int j = 0; j < Cfg::kNT; ++j)
    {
#pragma unroll
        for (int c = 0; c < 2; ++c)
        {
            int64_t const n = bn + wn * (BN / WN) + j * 8 + 2 * t + c;
            if (n >= N)
            {
                continue;
            }
            float const alpha
                = gridDim.z == 1 ? epilogueAlpha(wgs, wgsLen, n, w4a4, igs, kWeightOperandScale) : 0.0f;
#pragma unroll
            for (int i = 0; i < Cfg::kMT; ++i)
            {
#pragma unroll
                for (int hh = 0; hh < 2; ++hh)
                {
                    int64_t const m = bm + wm * (BM / WM) + i * 16 + g + hh * 8;
                    if (m >= M)
                    {
                        continue;
                    }
                    float const v = acc[i][j][hh * 2 + c];
                    if (gridDim.z == 1)
                    {
                        storeOutput<T>(y, m * N + n, v, alpha, bias, n);
                    }
                    else
                    {
                        partial[(static_cast<int64_t>(blockIdx.z) * M + m) * N + n] = v;
                    }
                }
            }
        }
    }
}

template <typename Op, typename T, int BM, int BN, int WM, int WN, int STAGES>
cudaError_t runTiled(LinearParams const& p, void const* a, int smCount, int maxSplits, cudaStream_t stream)
{
    using Cfg = TileConfig<BM, BN, WM, WN, STAGES>;
    auto kernel = tiledMmaKernel<Op, T, BM, BN, WM, WN, STAGES>;
    cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Cfg::kSmemBytes);
    if (err != cudaSuccess)
    {
        return err;
    }
    int64_t const tilesN = (p.N + BN - 1) / BN;
    int64_t const tilesM = (p.M + BM - 1) / BM;
    int64_t splits = 1;
    if (p.M <= kMaxSplitM && maxSplits > 1)
    {
        splits = chooseTileSplits(tilesN, tilesM, kCtasPerSmFor(BM), smCount, p.M, p.N, p.K, maxSplits);
    }
    SplitK const sk = planSplitK(p, p.K / kBK, splits);
    dim3 const grid(static_cast<unsigned>(tilesN), static_cast<unsigned>(tilesM), static_cast<unsigned>(sk.splits));
    kernel<<<grid, Cfg::kThreads, Cfg::kSmemBytes, stream>>>(static_cast<typename Op::Elem const*>(a),
        reinterpret_cast<uint8_t const*>(p.weight), reinterpret_cast<uint8_t const*>(p.weightScale),
        p.weightGlobalScale, p.weightGlobalScaleLen, p.w4a4, p.inputGlobalScale, static_cast<T const*>(p.bias),
        static_cast<T*>(p.y), sk.partial, p.M, p.N, p.K, sk.chunksPerSplit);
    return reduceSplitK(p, sk, cudaGetLastError(), stream);
}

template <typename Op, typename T>
cudaError_t launchTiledTyped(LinearParams const& p, void const* a, int smCount, cudaStream_t stream)
{
    // The tile shapes from the tuning table (template arguments need them one field at a time).
    constexpr tuning::TiledShape kS = tuning::kTiledSmallM;
    constexpr tuning::TiledShape kL = tuning::kTiledLargeM;
    if (p.M <= kS.bm)
    {
        return runTiled<Op, T, kS.bm, kS.bn, kS.wm, kS.wn, kS.stages>(p, a, smCount, kMaxSplitsTiled, stream);
    }
    return runTiled<Op, T, kL.bm, kL.bn, kL.wm, kL.wn, kL.stages>(p, a, smCount, kMaxSplitsTiled, stream);
}

} // namespace

cudaError_t launchTiled(LinearParams const& p, void const* a, bool bf16Operand, int smCount, cudaStream_t stream)
{
    if (bf16Operand)
    {
        return launchTiledTyped<Bf16Operand, __nv_bfloat16>(p, a, smCount, stream);
    }
    switch (p.actType)
    {
    case ActType::kFLOAT: return launchTiledTyped<HalfOperand, float>(p, a, smCount, stream);
    case ActType::kHALF: return launchTiledTyped<HalfOperand, __half>(p, a, smCount, stream);
    case ActType::kBF16: return launchTiledTyped<HalfOperand, __nv_bfloat16>(p, a, smCount, stream);
    }
    return cudaErrorInvalidValue;
}

} // namespace detail
} // namespace nvfp4
