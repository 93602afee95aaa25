// Hopper (sm_90a) GEMV for small M: the wide GEMV's MMA step (nvfp4MmaChunk.cuh: weights as the
// m16n8k16 A operand, 32 weight rows per warp, the strided fp16 decode) fed by a CTA-wide TMA ring
// instead of per-warp register rings. Why: a register ring at 16 warps per SM keeps ~48 KB of
// weights in flight per SM and its 64-byte row visits read at <= 79 % of copy bandwidth, where a
// TMA ring holding ~180 KB per SM reads at 95-99 % (docs/kernels.md, "Streaming patterns").
//
// CTA (one per SM, persistent) = 16 warps, 128 weight rows per tile, no producer warp (a 17th
// warp would cap the registers at 96 and the compiler then recomputes every per-thread offset in
// each stage):
//   * the ring holds 512-deep K stages of the CTA's tiles, one after the other (two 128-byte-
//     swizzled boxes of 128 rows x 256 weights and a box of their 32 scale bytes per row, 36 KB),
//     each with a "full" mbarrier (bytes landed) and a counter of the warps done with it; the
//     last warp out refills the stage kStages ahead, so the stream never waits for an epilogue;
//   * warp (rg, kq) owns rows 32rg..32rg+31 and a quarter of every stage's K: box kq / 2,
//     32-element units 2t + kq % 2 for quad lane t (in the swizzled box, the 8 lanes of a shared
//     load phase then hit 8 different bank groups); the activation words of the same K positions
//     come from global memory (L1-resident at these M), loaded before the stage's barrier wait;
//   * per tile, the 4 warps of a row group sum their accumulators in shared memory in a fixed
//     order (named barrier per row group) and store, or write a split's partial sums.
// Tiles are (row block, K split) pairs of equal length, visited round-robin by the resident CTAs;
// the split count balances the rounds (chooseSplits). Numerics as the wide GEMV (exact products, fp32 sums).
// Requires K % 256 == 0 (16-byte TMA rows of the scales), 16-byte aligned operands, the sm_90a image
// (elsewhere the kernel traps; launchGemv never picks it there).
#include "nvfp4Launch.cuh"
#include "nvfp4MmaChunk.cuh"
#include "nvfp4Numerics.cuh"
#include "nvfp4Ptx.cuh"
#include "nvfp4Sm90.cuh"
#include "nvfp4Tuning.h"

#include <algorithm>
#include <type_traits>

namespace nvfp4
{
namespace detail
{
namespace
{

constexpr int kMT = 2;                              // m16 weight tiles per warp (32 rows)
constexpr int kRowGroups = 4;                       // warps along N
constexpr int kKWarps = 4;                          // warps along K (a quarter of each stage)
constexpr int kWarps = kRowGroups * kKWarps;
constexpr int kThreads = kWarps * 32;
constexpr int kTileRows = 32 * kRowGroups;          // 128
constexpr int kStageK = 512;                        // K elements per stage
constexpr int kBoxBytes = kTileRows * 128;          // 128 rows x 256 weights, 128-byte swizzle
constexpr int kStageWBytes = 2 * kBoxBytes;
constexpr int kStageSBytes = kTileRows * kStageK / 16; // 32 scale bytes per row
constexpr int kStageBytes = kStageWBytes + kStageSBytes;
constexpr int kStages = tuning::kGemvTma.stages;
static_assert(kStageBytes % 1024 == 0, "stages keep the 1024-byte alignment of the swizzled boxes");

template <int NT>
struct TmaGemvSmem
{
    static constexpr int kRedEntries = kMT * NT * 4;
    static constexpr int kRedBytes = kRowGroups * kKWarps * kRedEntries * 32 * 4;
    static constexpr int kBytes = kStages * kStageBytes + kStages * (8 + 4) + kRedBytes + 1024; // + alignment
};

// The refill of ring iteration j of this CTA (its tiles' stages in order, `per` stages per tile)
// into `slot`, by one thread.
__device__ __forceinline__ void loadStage(uint8_t* stage, uint64_t* full, CUtensorMap const* mapW,
    CUtensorMap const* mapS, int j, int per, int rowBlocks)
{
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
    int const tile = blockIdx.x + (j / per) * gridDim.x;
    int const row = (tile % rowBlocks) * kTileRows;
    int const st = (tile / rowBlocks) * per + j % per;
    sm90::mbarArriveExpectTx(full, kStageBytes);
    // Past K (K % 512 == 256, last stage) the second box is zero-filled, and skipped.
    sm90::tmaLoad2d(stage, mapW, st * (kStageK / 2), row, full);
    sm90::tmaLoad2d(stage + kBoxBytes, mapW, st * (kStageK / 2) + 128, row, full);
    sm90::tmaLoad2d(stage + kStageWBytes, mapS, st * (kStageK / 16), row, full);
#endif
}

template <typename Op, typename T, int NT>
__global__ void __launch_bounds__(kThreads, 1) gemvTmaKernel(__grid_constant__ CUtensorMap const mapW,
    __grid_constant__ CUtensorMap const mapS, typename Op::Elem const* __restrict__ a, float const* __restrict__ wgs,
    int32_t wgsLen, bool w4a4, float igs, T const* __restrict__ bias, T* __restrict__ y, float* __restrict__ partial,
    int M, int64_t N, int64_t K, int rowBlocks, int splits, int per)
{
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
    constexpr int kE = TmaGemvSmem<NT>::kRedEntries;
    constexpr bool kFast = std::is_same<Op, HalfOperand>::value;
    constexpr float kOperandScale = kFast ? kWeightOperandScale * kWeightOperandScale : kWeightOperandScale;
    constexpr bool kPerWord = NT > 2; // activation loaded per word group (registers), as the wide GEMV
    extern __shared__ uint8_t smemRaw[];
    uint8_t* const smem = smemRaw + ((1024u - (sm90::smemAddr(smemRaw) & 1023u)) & 1023u);
    uint64_t* const full = reinterpret_cast<uint64_t*>(smem + kStages * kStageBytes);
    uint32_t* const done = reinterpret_cast<uint32_t*>(full + kStages);
    auto* const red = reinterpret_cast<float(*)[kKWarps][kE][32]>(done + kStages);

    int const warp = threadIdx.x / 32;
    int const lane = threadIdx.x % 32;
    int const tiles = rowBlocks * splits;
    int const myTiles = (tiles - static_cast<int>(blockIdx.x) + static_cast<int>(gridDim.x) - 1) / gridDim.x;
    int const iters = myTiles * per;

    if (threadIdx.x == 0)
    {
        for (int s = 0; s < kStages; ++s)
        {
            sm90::mbarInit(&full[s], 1);
            done[s] = 0;
        }
        sm90::mbarInitFence();
        // The weights do not depend on the kernel before (PDL): the ring fills at once.
        for (int j = 0; j < kStages && j < iters; ++j)
        {
            loadStage(smem + j * kStageBytes, &full[j], &mapW, &mapS, j, per, rowBlocks);
        }
    }
    __syncthreads();

    int const rg = warp / kKWarps;
    int const kq = warp % kKWarps;
    int const g = lane / 4;
    int const t = lane % 4;
    int const box = kq / 2;
    int const unit = 2 * t + kq % 2;        // 32-element unit of the thread in its box
    int const kOff = box * 256 + unit * 32; // its K offset in the stage
    // Shared offsets in a stage: rows rg*32 + mt*16 + h*8 + g (r % 8 == g: the swizzle XOR).
    int const r0 = rg * 32 + g;
    uint32_t const wOff = box * kBoxBytes + r0 * 128 + ((unit ^ g) * 16);
    uint32_t const sOff = kStageWBytes + r0 * (kStageK / 16) + box * 16 + unit * 2;
    // Activation rows >= M read row M - 1 (valid memory; their results are never stored).
    uint4 const* aRow[NT];
#pragma unroll
    for (int j = 0; j < NT; ++j)
    {
        int const m = min(j * 8 + g, M - 1);
        aRow[j] = reinterpret_cast<uint4 const*>(a + static_cast<int64_t>(m) * K + kOff);
    }
    waitPrimaryGrid(); // x-hat written by the quantization kernel (PDL), else a no-op

    int slot = 0;
    uint32_t phase = 0;
    int it = 0;
    for (int tile = blockIdx.x; tile < tiles; tile += gridDim.x)
    {
        int64_t const nBase = static_cast<int64_t>(tile % rowBlocks) * kTileRows;
        int const split = tile / rowBlocks;
        float acc[kMT][NT][4] = {};
        for (int p = 0; p < per; ++p, ++it)
        {
            int64_t const st = static_cast<int64_t>(split) * per + p;
            bool const inK = st * kStageK + box * 256 < K; // uniform across the warp
            int64_t const aWord = st * (kStageK / 8);       // uint4 (8 elements) offset of the stage
            uint4 aCur[NT][kPerWord ? 1 : 4];
            if constexpr (!kPerWord)
            {
                if (inK)
                {
#pragma unroll
                    for (int j = 0; j < NT; ++j)
                    {
#pragma unroll
                        for (int q = 0; q < 4; ++q)
                        {
                            aCur[j][q] = __ldg(aRow[j] + aWord + q);
                        }
                    }
                }
            }
            uint8_t* const stage = smem + slot * kStageBytes;
            sm90::mbarWait(&full[slot], phase);
            if (inK)
            {
                uint4 wv[kMT][2];
                uint32_t sc[kMT][2][2];
#pragma unroll
                for (int mt = 0; mt < kMT; ++mt)
                {
#pragma unroll
                    for (int h = 0; h < 2; ++h)
                    {
                        int const dr = mt * 16 + h * 8;
                        wv[mt][h] = *reinterpret_cast<uint4 const*>(stage + wOff + dr * 128);
                        decodeScaleWord<Op, kFast>(
                            *reinterpret_cast<uint16_t const*>(stage + sOff + dr * (kStageK / 16)), sc[mt][h]);
                    }
                }
                mmaChunk128<Op, kMT, NT, kPerWord, kFast>(wv, sc, aCur, aRow, aWord, acc);
            }
            // Done with the stage; the last warp out refills it with the stage kStages ahead.
            __syncwarp();
            if (lane == 0 && sm90::arriveCount(&done[slot]) == kWarps - 1)
            {
                done[slot] = 0;
                if (it + kStages < iters)
                {
                    sm90::fenceProxyAsync(); // the warps' shared reads before the TMA's writes
                    loadStage(stage, &full[slot], &mapW, &mapS, it + kStages, per, rowBlocks);
                }
            }
            if (++slot == kStages)
            {
                slot = 0;
                phase ^= 1;
            }
        }
        if (tile + static_cast<int>(gridDim.x) >= tiles)
        {
            allowDependentLaunch(); // the split-K reduction may launch (it waits for this grid to end)
        }
        // The row group's 4 warps: accumulators to shared memory, one barrier, the sums, one more
        // barrier before the next tile overwrites them.
        storeAccumulators(red[rg], acc, kq, lane);
        namedBarrierSync(1 + rg, kKWarps * 32);
        writeGemvTile<T, kMT, NT>(red[rg], kq * 32 + lane, kKWarps * 32, nBase + rg * 32, M, N, split, splits > 1,
            kOperandScale, wgs, wgsLen, w4a4, igs, bias, y, partial);
        namedBarrierSync(1 + rg, kKWarps * 32);
    }
#else
    __trap(); // no TMA in this image: launchGemv never selects this kernel here
#endif
}

// K splits, a divisor of the stage count (every tile has as many stages): the fewest that
// minimise the busiest CTA's stages (ceil(tiles / CTAs) rounds of stages / splits), each further
// split costing about one stage (the partial sums and the reduction launch).
int chooseSplits(int64_t rowBlocks, int64_t numStages, int ctas)
{
    int best = 1;
    double bestCost = 0;
    int64_t const maxSplits = std::min<int64_t>(kMaxSplitsGemv, numStages);
    for (int64_t s = 1; s <= maxSplits; ++s)
    {
        if (numStages % s != 0)
        {
            continue;
        }
        int64_t const rounds = (rowBlocks * s + ctas - 1) / ctas;
        double const cost = static_cast<double>(rounds * (numStages / s)) + (s > 1 ? tuning::kGemvTma.splitCostStages : 0.0);
        if (s == 1 || cost < bestCost)
        {
            best = static_cast<int>(s);
            bestCost = cost;
        }
    }
    return best;
}

template <typename Op, typename T, int NT>
cudaError_t launchGemvTmaNT(LinearParams const& p, void const* a, int smCount, bool pdl, cudaStream_t stream)
{
    CUtensorMap mapW, mapS;
    if (!encode2d(mapW, CU_TENSOR_MAP_DATA_TYPE_UINT8, 1, p.weight, p.N, p.K / 2, 128, kTileRows,
            CU_TENSOR_MAP_SWIZZLE_128B)
        || !encode2d(mapS, CU_TENSOR_MAP_DATA_TYPE_UINT8, 1, p.weightScale, p.N, p.K / 16, kStageK / 16, kTileRows,
            CU_TENSOR_MAP_SWIZZLE_NONE))
    {
        return cudaErrorNotSupported;
    }
    auto kernel = gemvTmaKernel<Op, T, NT>;
    constexpr int kSmem = TmaGemvSmem<NT>::kBytes;
    cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem);
    if (err != cudaSuccess)
    {
        return err;
    }
    int64_t const rowBlocks = (p.N + kTileRows - 1) / kTileRows;
    int64_t const numStages = (p.K + kStageK - 1) / kStageK;
    SplitK const sk = planSplitK(p, numStages, chooseSplits(rowBlocks, numStages, smCount));
    int64_t const tiles = rowBlocks * sk.splits;
    dim3 const grid(static_cast<unsigned>(std::min<int64_t>(tiles, smCount)));
    err = launchKernel(pdl, kernel, grid, dim3(kThreads), kSmem, stream, mapW, mapS,
        static_cast<typename Op::Elem const*>(a), p.weightGlobalScale, p.weightGlobalScaleLen, p.w4a4,
        p.inputGlobalScale, static_cast<T const*>(p.bias), static_cast<T*>(p.y), sk.partial, static_cast<int>(p.M),
        p.N, p.K, static_cast<int>(rowBlocks), sk.splits, sk.chunksPerSplit);
    return reduceSplitK(p, sk, err, stream, pdl);
}

template <typename Op, typename T, int NT = 1>
cudaError_t launchGemvTmaForM(LinearParams const& p, void const* a, int smCount, bool pdl, cudaStream_t stream)
{
    if constexpr (NT <= tuning::kGemvTma.maxNt)
    {
        return (p.M + 7) / 8 == NT ? launchGemvTmaNT<Op, T, NT>(p, a, smCount, pdl, stream)
                                   : launchGemvTmaForM<Op, T, NT + 1>(p, a, smCount, pdl, stream);
    }
    else
    {
        return cudaErrorInvalidValue;
    }
}

} // namespace

bool gemvTmaSupports(LinearParams const& p)
{
    int64_t const maxDim = (int64_t{1} << 31) - 1024; // TMA coordinates are int32
    return p.K % 256 == 0 && p.M <= 8 * tuning::kGemvTma.maxNt && p.N <= maxDim && p.K <= maxDim;
}

cudaError_t launchGemvTma(
    LinearParams const& p, void const* a, bool bf16Operand, int smCount, bool pdl, cudaStream_t stream)
{
    if (!gemvTmaSupports(p))
    {
        return cudaErrorNotSupported;
    }
    if (bf16Operand)
    {
        return launchGemvTmaForM<Bf16Operand, __nv_bfloat16>(p, a, smCount, pdl, stream);
    }
    switch (p.actType)
    {
    case ActType::kFLOAT: return launchGemvTmaForM<HalfOperand, float>(p, a, smCount, pdl, stream);
    case ActType::kHALF: return launchGemvTmaForM<HalfOperand, __half>(p, a, smCount, pdl, stream);
    case ActType::kBF16: return launchGemvTmaForM<HalfOperand, __nv_bfloat16>(p, a, smCount, pdl, stream);
    }
    return cudaErrorInvalidValue;
}

} // namespace detail
} // namespace nvfp4
