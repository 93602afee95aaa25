// NVFP4 GEMM on Hopper tensor cores (sm_90a), swap-AB and warp-specialized: the kernel computes
// D^T[n, m] = sum_k w'[n, k] * a[m, k] with wgmma m64nBNk16, the decoded WEIGHTS as the A operand
// in registers and the 16-bit ACTIVATION (x-hat for w4a4, x for fp16/bf16 w4a16) as the B operand
// in shared memory. The activation needs no decoding, so the tensor cores read it straight from
// the TMA's 128-byte-swizzled tile, and wgmma's N (the activation rows of a tile) can be as small
// as 16: small M wastes little.
//
// CTA = 1 + kWgs warpgroups, 64 * kWgs weight rows (128 or 256) x BN activation rows:
//   * producer warpgroup (24-40 registers): one thread streams each 64-deep K stage with TMA copies
//     (activation tile, packed FP4 weights; the FP8 scales of 4 stages with the first of them, as
//     one 16-byte row per weight row) into a ring of stages, each with a "full" (TMA bytes landed)
//     and an "empty" (consumers done) mbarrier;
//   * kWgs consumer warpgroups (2, or 4 at BN <= 96: each activation tile read from L2 then serves
//     twice the weights), 64 weight rows each: per stage every thread reads its
//     rows' packed bytes and scales from shared memory, decodes them in registers to the m64k16 A
//     fragments (w' = ŵ * 2^-14 in fp16, ŵ * 2^-7 in bf16, exact; nvfp4Numerics.cuh's bit decode)
//     and issues 4 asynchronous wgmmas; the decode of stage s+1 runs while stage s's wgmmas run.
// Numerics as every tensor-core path: exact 16-bit products, fp32 accumulation, alpha times the
// operand's power of two (2^14 fp16, 2^7 bf16: RsScales) last.
// Small grids split K across CTAs (fp32 partials + the deterministic reduceSplitsKernel).
// Requires K % 256 == 0 (the scale tensor's 16-byte TMA rows and box starts) and 16-byte aligned operands; the
// body exists only in the sm_90a image (elsewhere the kernel traps; launchLinear never picks it).
#include "nvfp4Launch.cuh"
#include "nvfp4Numerics.cuh"
#include "nvfp4Ptx.cuh"
#include "nvfp4Tuning.h"
#include "nvfp4Sm90.cuh"
#include "nvfp4WgmmaRs.cuh"

#include <algorithm>
#include <cudaTypedefs.h>

#include <type_traits>

namespace nvfp4
{
namespace detail
{
namespace
{

constexpr int kBK = 64;         // K per stage (one 128-byte swizzle row of 16-bit activations)

// BN activation rows per tile; kCtasPerSm CTAs share an SM (the launch bounds, the ring depth and
// the register split follow from it); kWgs consumer warpgroups of 64 weight rows each share the
// activation tile (with 4, each activation byte read from L2 serves twice the weights).
template <int BN, int kCtas, int kWgs>
struct RsConfig
{
    static constexpr int kCtasPerSm = kCtas;
    static constexpr int kRows = 64 * kWgs; // weight rows per CTA
    static constexpr int kThreads = 128 * (1 + kWgs);
    static constexpr int kActBytes = BN * 128;          // BN rows x 64 elements, 128B-swizzled
    static constexpr int kWBytes = kRows * 32;           // 64 FP4 per row
    static constexpr int kSBytes = kRows * 16;           // 16-byte aligned TMA rows: scales of 4 stages
    static constexpr int kStageBytes = kActBytes + kWBytes + kSBytes; // a multiple of 1024
    // The ring fills the SM's shared memory (227 KB, less 1 KB reserved per CTA), at most
    // tuning::kWgmmaMaxStages deep.
    static constexpr int kRingBudget = (kCtasPerSm == 1 ? 200 : 110) * 1024;
    static constexpr int kStages = std::min(kRingBudget / kStageBytes, tuning::kWgmmaMaxStages);
    static constexpr int kSmemBytes = kStages * kStageBytes + 2 * kStages * 8 + 1024; // +barriers, alignment
    // Registers: the producer warpgroup gives its share to the consumers (setmaxnreg). The launch
    // gives every thread the launch bounds' share (in units of 8: 168, 80 with two CTAs, 96 with 4
    // consumer warpgroups), and the consumers can only take what the producer gave back (a larger
    // request waits forever): 232, 104 and 112.
    static constexpr int kLaunchRegs = 65536 / (kThreads * kCtasPerSm) / 8 * 8;
    static constexpr int kProducerRegs = kCtasPerSm == 1 && kWgs == 2 ? 40 : 24;
    static constexpr int kConsumerRegs = (kLaunchRegs + (kLaunchRegs - kProducerRegs) / kWgs) / 8 * 8;
    static_assert(kConsumerRegs <= 256, "setmaxnreg takes at most 256 registers");
};

// Device helpers of the kernel body, which exists only in the sm_90a image.
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)

// The 4 per-block scale pairs of a stage (bytes of s4) as 16-bit operand multipliers, and the
// power of two the epilogue multiplies alpha by.
template <typename Op>
struct RsScales;

// fp16: the bit decode gives e2m1 * 2^-14, times s_w itself is w' = ŵ * 2^-14, exact in fp16
// (a multiple of 2^-24 with at most 6 significant bits, below 6 * 448 * 2^-14); the hardware
// converts two FP8 scales per instruction (exact, NaN kept).
template <>
struct RsScales<HalfOperand>
{
    static constexpr float kOperandScale = 16384.0f;
    static __device__ __forceinline__ void pairs(uint32_t s4, uint32_t (&p)[4])
    {
        __half2_raw const lo = __nv_cvt_fp8x2_to_halfraw2(static_cast<__nv_fp8x2_storage_t>(s4 & 0xFFFFu), __NV_E4M3);
        __half2_raw const hi = __nv_cvt_fp8x2_to_halfraw2(static_cast<__nv_fp8x2_storage_t>(s4 >> 16), __NV_E4M3);
        uint32_t const l = *reinterpret_cast<uint32_t const*>(&lo);
        uint32_t const h = *reinterpret_cast<uint32_t const*>(&hi);
        p[0] = __byte_perm(l, 0, 0x1010);
        p[1] = __byte_perm(l, 0, 0x3232);
        p[2] = __byte_perm(h, 0, 0x1010);
        p[3] = __byte_perm(h, 0, 0x3232);
    }
};

// bf16: Bf16Operand's decode (e2m1 * 2^-126) times s_w * 2^119 = ŵ * 2^-7.
template <>
struct RsScales<Bf16Operand>
{
    static constexpr float kOperandScale = kWeightOperandScale;
    static __device__ __forceinline__ void pairs(uint32_t s4, uint32_t (&p)[4])
    {
#pragma unroll
        for (int i = 0; i < 4; ++i)
        {
            p[i] = Bf16Operand::scalePair(s4 >> (8 * i));
        }
    }
};

// Whether the stage of K chunk `chunk`, the split's `it`-th, brings the scales: a TMA box's innermost
// start must be 16-byte aligned, so the 16 scale bytes of chunks 4(c/4)..+3 come with the first of
// them (or with the split's first stage), and the consumers keep them in registers for the others.
template <typename Index>
__device__ __forceinline__ bool stageCarriesScales(Index chunk, Index it)
{
    return chunk % 4 == 0 || it == 0;
}

// w[j] for a j known only at run time, by selects: indexing would put w in local memory.
__device__ __forceinline__ uint32_t wordAt(uint32_t const (&w)[4], uint32_t j)
{
    return j & 2 ? (j & 1 ? w[3] : w[2]) : (j & 1 ? w[1] : w[0]);
}

// Byte `t` (0..3) of each of the 4 words of v, gathered into one word (byte i from word i).
__device__ __forceinline__ uint32_t gatherByte(uint4 v, uint32_t sel)
{
    uint32_t const lo = __byte_perm(v.x, v.y, sel);
    uint32_t const hi = __byte_perm(v.z, v.w, sel);
    return __byte_perm(lo, hi, 0x5410);
}

// A fragments of step Kk of a 64-deep stage for the thread's two weight rows (row r and r + 8 of
// its warp's 16), m64k16 layout (nvfp4OperandBits.h): frag[0] / frag[1] rows r / r + 8 at
// k = 2t.., frag[2] / frag[3] at k = 2t + 8..; wa (row r) / wb (row r + 8) hold the stage's 16
// nibbles of the thread; scA / scB: the rows' scale pairs.
// Permuted K order: the 16 elements of FP8 block t in order, pair h of step Kk the strided pair
// wgmmaBlockElement(Kk, h, 0..1) (11 integer ops per word instead of 18).
template <typename Op, bool kPermutedK, int Kk>
__device__ __forceinline__ void decodeStep(uint32_t const (&wa)[2], uint32_t const (&wb)[2],
    uint32_t const (&scA)[4], uint32_t const (&scB)[4], uint32_t (&frag)[4][4])
{
    if constexpr (kPermutedK)
    {
        constexpr int kE0 = wgmmaBlockElement(Kk, 0, 0);
        constexpr int kE1 = wgmmaBlockElement(Kk, 1, 0);
        constexpr bool kHigh = Kk % 2 == 1; // odd elements: the high nibbles
        static_assert(kE0 % 8 / 2 == 0 && kE1 % 8 / 2 == 2 && wgmmaBlockElement(Kk, 0, 1) == kE0 + 2
                && kE1 / 8 == Kk / 2,
            "pair h of the step: the same nibble of bytes 2h, 2h + 1 of word Kk / 2");
        frag[Kk][0] = Op::template stridedPair<0, 1, kHigh>(wa[Kk / 2], scA[Kk]);
        frag[Kk][1] = Op::template stridedPair<0, 1, kHigh>(wb[Kk / 2], scB[Kk]);
        frag[Kk][2] = Op::template stridedPair<2, 3, kHigh>(wa[Kk / 2], scA[Kk]);
        frag[Kk][3] = Op::template stridedPair<2, 3, kHigh>(wb[Kk / 2], scB[Kk]);
    }
    else
    {
        // natural pairs: byte (Kk % 2) * 2 + h of word Kk / 2 (decodeStage gathers them so)
        uint32_t uA, u4A, uB, u4B;
        Op::prepareWord(wa[Kk / 2], uA, u4A);
        Op::prepareWord(wb[Kk / 2], uB, u4B);
        frag[Kk][0] = Op::template weightPair<Kk % 2 * 2>(uA, u4A, scA[Kk]);
        frag[Kk][1] = Op::template weightPair<Kk % 2 * 2>(uB, u4B, scB[Kk]);
        frag[Kk][2] = Op::template weightPair<Kk % 2 * 2 + 1>(uA, u4A, scA[Kk]);
        frag[Kk][3] = Op::template weightPair<Kk % 2 * 2 + 1>(uB, u4B, scB[Kk]);
    }
}

template <typename Op, bool kPermutedK>
__device__ __forceinline__ void decodeWords(uint32_t const (&wa)[2], uint32_t const (&wb)[2],
    uint32_t const (&scA)[4], uint32_t const (&scB)[4], uint32_t (&frag)[4][4])
{
    decodeStep<Op, kPermutedK, 0>(wa, wb, scA, scB, frag);
    decodeStep<Op, kPermutedK, 1>(wa, wb, scA, scB, frag);
    decodeStep<Op, kPermutedK, 2>(wa, wb, scA, scB, frag);
    decodeStep<Op, kPermutedK, 3>(wa, wb, scA, scB, frag);
}

// The stage's fragments from shared memory: wA / wB the shared addresses of rows r / r + 8's packed
// bytes in the stage (permuted: the thread's 8; natural: all 32), sa / sb their 4 scale bytes of
// this stage. sel = t | (t + 4) << 4 picks byte t of a word pair.
// Natural K order (kPermutedK false; w4a16 where the permute pass does not pay): step kk is FP8
// block kk, its k 2t.. pair byte t of the row's word 2kk and its k 2t+8.. pair byte t of word
// 2kk+1: a byte gather over the whole row, 4 scales.
// Permuted K order (true; the activation written by the quantize or permute pass in permutedKPos's
// order, the same permutation on both operands leaves the sums exact): lane t's weights of the
// stage are elements 16t..16t+15, i.e. bytes 8t..8t+7 of the row, all in FP8 block t: one 8-byte
// load and one scale per row.
template <typename Op, bool kPermutedK>
__device__ __forceinline__ void decodeStage(
    uint32_t wA, uint32_t wB, uint32_t sa, uint32_t sb, uint32_t sel, uint32_t (&frag)[4][4])
{
    uint32_t wa[2], wb[2], scA[4], scB[4];
    if constexpr (kPermutedK)
    {
        uint2 const a = sm90::ldShared64(wA);
        uint2 const b = sm90::ldShared64(wB);
        wa[0] = a.x;
        wa[1] = a.y;
        wb[0] = b.x;
        wb[1] = b.y;
        uint32_t p[4]; // p[0], p[1]: the scale pairs of block t of row r, r + 8 (one conversion)
        RsScales<Op>::pairs(__byte_perm(sa, sb, sel), p);
#pragma unroll
        for (int kk = 0; kk < 4; ++kk)
        {
            scA[kk] = p[0];
            scB[kk] = p[1];
        }
    }
    else
    {
        wa[0] = gatherByte(sm90::ldShared128(wA), sel);
        wa[1] = gatherByte(sm90::ldShared128(wA + 16), sel);
        wb[0] = gatherByte(sm90::ldShared128(wB), sel);
        wb[1] = gatherByte(sm90::ldShared128(wB + 16), sel);
        RsScales<Op>::pairs(sa, scA);
        RsScales<Op>::pairs(sb, scB);
    }
    decodeWords<Op, kPermutedK>(wa, wb, scA, scB, frag);
}

#endif

template <typename Op, typename T, int BN, int kCtas, int kWgs, bool kPermutedK>
__global__ void __launch_bounds__(RsConfig<BN, kCtas, kWgs>::kThreads, kCtas) wgmmaRsKernel(
    __grid_constant__ CUtensorMap const mapA, __grid_constant__ CUtensorMap const mapW,
    __grid_constant__ CUtensorMap const mapS, float const* __restrict__ wgs, int32_t wgsLen, bool w4a4, float igs,
    T const* __restrict__ bias, T* __restrict__ y, float* __restrict__ partial, int64_t M, int64_t N, int numChunks,
    int chunksPerSplit)
{
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
    using Cfg = RsConfig<BN, kCtas, kWgs>;
    using E = typename Op::Elem;
    constexpr int S = Cfg::kStages;
    constexpr int kProducerRegs = Cfg::kProducerRegs;
    constexpr int kConsumerRegs = Cfg::kConsumerRegs; // BN / 2 accumulators + 2 x 16 fragments + addressing
    extern __shared__ uint8_t smemRaw[];
    // 1024-byte aligned (128B swizzle atoms) by pointer arithmetic on the shared array, so that the
    // compiler keeps the shared address space (LDS, not generic loads).
    uint8_t* const smem = smemRaw + ((1024u - (sm90::smemAddr(smemRaw) & 1023u)) & 1023u);
    uint64_t* const full = reinterpret_cast<uint64_t*>(smem + S * Cfg::kStageBytes);
    uint64_t* const empty = full + S;

    int const n0 = blockIdx.x * Cfg::kRows;
    int const m0 = blockIdx.y * BN;
    int const cBeg = blockIdx.z * chunksPerSplit;
    int const nLocal = numChunks - cBeg < chunksPerSplit ? numChunks - cBeg : chunksPerSplit;
    int const wg = threadIdx.x / 128;

    if (threadIdx.x == 0)
    {
        for (int s = 0; s < S; ++s)
        {
            sm90::mbarInit(&full[s], 1);
            sm90::mbarInit(&empty[s], 4 * kWgs); // one arrival per consumer warp
        }
        sm90::mbarInitFence();
    }
    __syncthreads();

    if (wg == 0)
    {
        sm90::regDealloc<kProducerRegs>();
        if (threadIdx.x == 0)
        {
            auto loadWeights = [&](int it) {
                int const s = it % S;
                uint8_t* const st = smem + s * Cfg::kStageBytes;
                int const c = cBeg + it;
                bool const scales = stageCarriesScales(c, it);
                sm90::mbarArriveExpectTx(&full[s], Cfg::kStageBytes - (scales ? 0 : Cfg::kSBytes));
                sm90::tmaLoad2d(st + Cfg::kActBytes, &mapW, c * (kBK / 2), n0, &full[s]);
                if (scales)
                {
                    sm90::tmaLoad2d(st + Cfg::kActBytes + Cfg::kWBytes, &mapS, (c / 4) * 16, n0, &full[s]);
                }
            };
            auto loadActivation = [&](int it) {
                int const s = it % S;
                sm90::tmaLoad2d(smem + s * Cfg::kStageBytes, &mapA, (cBeg + it) * kBK, m0, &full[s]);
            };
            // The first ring of weights streams in while the quantization kernel before may still
            // be writing x-hat (programmatic dependent launch); the activation only after it is done.
            int const first = nLocal < S ? nLocal : S;
            for (int it = 0; it < first; ++it)
            {
                loadWeights(it);
            }
            waitPrimaryGrid();
            for (int it = 0; it < first; ++it)
            {
                loadActivation(it);
            }
            for (int it = first; it < nLocal; ++it)
            {
                sm90::mbarWait(&empty[it % S], ((it / S) & 1) ^ 1);
                loadWeights(it);
                loadActivation(it);
            }
        }
        return;
    }

    sm90::regAlloc<kConsumerRegs>();
    int const lane = threadIdx.x % 32;
    int const warp = (threadIdx.x / 32) % 4;
    int const g = lane / 4;
    int const t = lane % 4;
    int const row = (wg - 1) * 64 + warp * 16 + g; // and row + 8
    uint32_t const sel = sm90::keepInRegister(static_cast<uint32_t>(t | ((t + 4) << 4)));

    float acc[BN / 2]; // m64nBN fp32 accumulators
#pragma unroll
    for (int i = 0; i < BN / 2; ++i)
    {
        acc[i] = 0.0f;
    }
    uint32_t fragA[4][4];
    uint32_t fragB[4][4];

    // Shared addresses, computed once: the loop only adds the stage's offset. The activation tile's
    // descriptor differs between stages and k16 steps only in its start address field (address / 16,
    // 14 bits, no carry: shared addresses stay below 256 KB).
    uint32_t const ring = sm90::keepInRegister(sm90::smemAddr(smem));
    uint32_t const fullBar = ring + S * Cfg::kStageBytes;
    uint32_t const emptyBar = fullBar + S * 8;
    uint32_t const wRowA = sm90::keepInRegister(static_cast<uint32_t>(Cfg::kActBytes + row * 32 + (kPermutedK ? 8 * t : 0)));
    uint32_t const wRowB = wRowA + 8 * 32;
    uint32_t const sRowA = sm90::keepInRegister(static_cast<uint32_t>(Cfg::kActBytes + Cfg::kWBytes + row * 16));
    uint32_t const sRowB = sRowA + 8 * 16;
    uint64_t const desc0 = sm90::keepInRegister(sm90::smemDescSw128(ring));

    // Stage `it` sits in slot it % S; its scales are bytes 4 * ((cBeg + it) % 4).. of each row's 16.
    uint32_t const stages = sm90::keepInRegister(static_cast<uint32_t>(nLocal));
    uint32_t const firstChunk = sm90::keepInRegister(static_cast<uint32_t>(cBeg));
    // The scale bytes of 4 stages (one 16-byte TMA row each for rows r and r + 8), read once from
    // the first stage of each group of 4 (and the first stage of the split).
    uint32_t scalesA[4], scalesB[4];
    auto decode = [&](uint32_t it, uint32_t(&frag)[4][4]) {
        uint32_t const stage = ring + it % S * Cfg::kStageBytes;
        uint32_t const j = (firstChunk + it) % 4;
        if (stageCarriesScales(firstChunk + it, it))
        {
            uint4 const a = sm90::ldShared128(stage + sRowA);
            uint4 const b = sm90::ldShared128(stage + sRowB);
            scalesA[0] = a.x, scalesA[1] = a.y, scalesA[2] = a.z, scalesA[3] = a.w;
            scalesB[0] = b.x, scalesB[1] = b.y, scalesB[2] = b.z, scalesB[3] = b.w;
        }
        decodeStage<Op, kPermutedK>(stage + wRowA, stage + wRowB, wordAt(scalesA, j), wordAt(scalesB, j), sel, frag);
    };
    // wgmmas of stage `it` from `cur`; then (wait_group 1: stage it-1's wgmmas, the readers of
    // `next`, are done; they were issued a whole stage earlier, so this rarely waits) frees stage
    // it-1 and decodes stage it+1 straight into `next` while stage it's wgmmas run. The fence on
    // `next` keeps its old values, and so its registers, alive until that wait; `cur` stays alive
    // until the next step's fence, so the new fragments cannot land in registers a wgmma still reads.
    auto step = [&](uint32_t it, uint32_t(&cur)[4][4], uint32_t(&next)[4][4]) {
        uint64_t const desc = desc0 + it % S * (Cfg::kStageBytes / 16);
        sm90::fenceRegs(acc);
        sm90::fenceRegs(cur);
        sm90::wgmmaFence();
#pragma unroll
        for (int kk = 0; kk < 4; ++kk)
        {
            WgmmaRs<BN, E>::run(acc, cur[kk], desc + kk * 2); // + 32 bytes per k16 step
        }
        sm90::wgmmaCommit();
        sm90::fenceRegs(acc);
        sm90::wgmmaWait<1>();
        sm90::fenceRegs(next);
        if (it > 0)
        {
            __syncwarp();
            if (lane == 0)
            {
                sm90::mbarArriveAt(emptyBar + (it - 1) % S * 8);
            }
        }
        if (it + 1 < stages)
        {
            sm90::mbarWaitAt(fullBar + (it + 1) % S * 8, (it + 1) / S & 1);
            decode(it + 1, next);
        }
    };

    if (stages > 0)
    {
        sm90::mbarWaitAt(fullBar, 0);
        decode(0, fragA);
    }
    for (uint32_t it = 0; it < stages; it += 2)
    {
        step(it, fragA, fragB);
        if (it + 1 < stages)
        {
            step(it + 1, fragB, fragA);
        }
    }
    sm90::wgmmaWait<0>();
    sm90::fenceRegs(acc);

    // acc[4j + 2h + c] = D^T[row + 8h][8j + 2t + c] = y[m0 + 8j + 2t + c][n0 + row + 8h].
    int64_t const nRow[2] = {n0 + row, n0 + row + 8};
    bool const split = gridDim.z > 1;
    float alpha[2] = {0.0f, 0.0f};
    float bval[2] = {0.0f, 0.0f};
#pragma unroll
    for (int h = 0; h < 2; ++h)
    {
        if (!split && nRow[h] < N)
        {
            alpha[h] = epilogueAlpha(wgs, wgsLen, nRow[h], w4a4, igs, RsScales<Op>::kOperandScale);
            bval[h] = bias != nullptr ? toFloat<T>(bias[nRow[h]]) : 0.0f;
        }
    }
#pragma unroll
    for (int j = 0; j < BN / 8; ++j)
    {
#pragma unroll
        for (int c = 0; c < 2; ++c)
        {
            int64_t const m = m0 + 8 * j + 2 * t + c;
            if (m >= M)
            {
                continue;
            }
#pragma unroll
            for (int h = 0; h < 2; ++h)
            {
                if (nRow[h] >= N)
                {
                    continue;
                }
                float const v = acc[4 * j + 2 * h + c];
                if (split)
                {
                    // reduceSplitsKernel expects sums of ŵ * 2^-7 products (exact power-of-two rescale).
                    partial[(static_cast<int64_t>(blockIdx.z) * M + m) * N + nRow[h]]
                        = v * (RsScales<Op>::kOperandScale / kWeightOperandScale);
                }
                else
                {
                    float r = __fmul_rn(v, alpha[h]);
                    if (bias != nullptr)
                    {
                        r = __fadd_rn(r, bval[h]);
                    }
                    y[m * N + nRow[h]] = fromFloat<T>(r);
                }
            }
        }
    }
#else
    __trap(); // no wgmma in this image: launchLinear never selects it here
#endif
}

// cuTensorMapEncodeTiled through the runtime's driver entry point (the library does not link libcuda).
PFN_cuTensorMapEncodeTiled_v12000 tensorMapEncoder()
{
    static PFN_cuTensorMapEncodeTiled_v12000 const fn = [] {
        void* p = nullptr;
        cudaDriverEntryPointQueryResult q = cudaDriverEntryPointSymbolNotFound;
        if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &p, 12000, cudaEnableDefault, &q) != cudaSuccess
            || q != cudaDriverEntryPointSuccess)
        {
            return static_cast<PFN_cuTensorMapEncodeTiled_v12000>(nullptr);
        }
        return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(p);
    }();
    return fn;
}

// Row-major [rows, cols] matrix, box of boxRows x boxCols elements; out-of-bounds reads give zeros.
bool encode2d(CUtensorMap& map, CUtensorMapDataType type, int elemBytes, void const* base, int64_t rows, int64_t cols,
    uint32_t boxCols, uint32_t boxRows, CUtensorMapSwizzle swizzle)
{
    auto const encode = tensorMapEncoder();
    if (encode == nullptr)
    {
        return false;
    }
    cuuint64_t const dims[2] = {static_cast<cuuint64_t>(cols), static_cast<cuuint64_t>(rows)};
    cuuint64_t const strides[1] = {static_cast<cuuint64_t>(cols) * elemBytes};
    cuuint32_t const box[2] = {boxCols, boxRows};
    cuuint32_t const elemStrides[2] = {1, 1};
    return encode(&map, type, 2, const_cast<void*>(base), dims, strides, box, elemStrides,
               CU_TENSOR_MAP_INTERLEAVE_NONE, swizzle, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
               CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE)
        == CUDA_SUCCESS;
}

template <typename Op, typename T, int BN, int kCtas, int kWgs, bool kPermutedK>
cudaError_t runRs(LinearParams const& p, void const* a, int splits, bool pdl, cudaStream_t stream)
{
    using Cfg = RsConfig<BN, kCtas, kWgs>;
    CUtensorMap mapA, mapW, mapS;
    CUtensorMapDataType const aType = std::is_same<typename Op::Elem, __half>::value
        ? CU_TENSOR_MAP_DATA_TYPE_FLOAT16
        : CU_TENSOR_MAP_DATA_TYPE_BFLOAT16;
    if (!encode2d(mapA, aType, 2, a, p.M, p.K, kBK, BN, CU_TENSOR_MAP_SWIZZLE_128B)
        || !encode2d(mapW, CU_TENSOR_MAP_DATA_TYPE_UINT8, 1, p.weight, p.N, p.K / 2, kBK / 2, Cfg::kRows,
            CU_TENSOR_MAP_SWIZZLE_NONE)
        || !encode2d(mapS, CU_TENSOR_MAP_DATA_TYPE_UINT8, 1, p.weightScale, p.N, p.K / 16, 16, Cfg::kRows,
            CU_TENSOR_MAP_SWIZZLE_NONE))
    {
        return cudaErrorNotSupported;
    }
    auto kernel = wgmmaRsKernel<Op, T, BN, kCtas, kWgs, kPermutedK>;
    cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Cfg::kSmemBytes);
    if (err != cudaSuccess)
    {
        return err;
    }
    int const numChunks = static_cast<int>(p.K / kBK);
    SplitK const sk = planSplitK(p, numChunks, splits);
    dim3 const grid(static_cast<unsigned>((p.N + Cfg::kRows - 1) / Cfg::kRows),
        static_cast<unsigned>((p.M + BN - 1) / BN), static_cast<unsigned>(sk.splits));
    err = launchKernel(pdl, kernel, grid, dim3(Cfg::kThreads), Cfg::kSmemBytes, stream, mapA, mapW, mapS,
        p.weightGlobalScale, p.weightGlobalScaleLen, p.w4a4, p.inputGlobalScale, static_cast<T const*>(p.bias),
        static_cast<T*>(p.y), sk.partial, p.M, p.N, numChunks, sk.chunksPerSplit);
    return reduceSplitK(p, sk, err, stream, pdl);
}

} // namespace

// The tile (BN activation rows, CTAs per SM, weight rows) and K splits: the estimated time of the
// grid in waves of the resident CTAs, each 64-deep stage costing the tuning table's cycles (tensor
// time plus the decode and barrier latency it does not hide), plus for split-K the partials'
// traffic and one reduction launch; the workspace bounds splits * M (partialBytes). Near-ties go
// to the earlier table entry, and to fewer splits.
WgmmaPlan planWgmma(int64_t M, int64_t N, int64_t K, int smCount)
{
    int64_t const numChunks = K / kBK;
    int64_t const partialRows = static_cast<int64_t>(partialBytes(M, N) / (static_cast<size_t>(N) * sizeof(float)));
    WgmmaPlan best;
    double bestUs = 0.0;
    for (int index = 0; index < tuning::kWgmmaTileCount; ++index)
    {
        tuning::WgmmaTile const& tile = tuning::kWgmmaTiles[index];
        int64_t const tiles = (N + tile.weightRows - 1) / tile.weightRows * ((M + tile.bn - 1) / tile.bn);
        double const resident = static_cast<double>(tile.ctasPerSm) * smCount;
        // Split K only to fill SMs that a grid of less than one wave leaves idle: above that it
        // adds waves, each with its ring's start-up, which the model does not count.
        int const maxSplits = static_cast<double>(tiles) < resident ? tuning::kWgmmaMaxSplits : 1;
        for (int s = 1; s <= maxSplits; ++s)
        {
            if (s > 1 && (s * M > partialRows || numChunks / s < tuning::kWgmmaMinChunksPerSplit))
            {
                break;
            }
            double const waves = std::ceil(static_cast<double>(tiles * s) / resident);
            double us = waves * std::ceil(static_cast<double>(numChunks) / s) * tile.stageCycles / tuning::kWgmmaClockMHz;
            if (s > 1)
            {
                us += static_cast<double>(s) * M * N * 8.0 / 2.5e6 + 3.0;
            }
            if (bestUs == 0.0 || us < tuning::kWgmmaTieFactor * bestUs)
            {
                best = {index, s};
                bestUs = us;
            }
        }
    }
    return best;
}

namespace
{

// The kernel instance of table entry I, reached by the planner's index: every entry of kWgmmaTiles
// gets its instance, so the table and the launch cannot drift apart.
template <typename Op, typename T, bool kPermutedK, int I = 0>
cudaError_t runTile(WgmmaPlan const& plan, LinearParams const& p, void const* a, bool pdl, cudaStream_t stream)
{
    if constexpr (I < tuning::kWgmmaTileCount)
    {
        constexpr tuning::WgmmaTile kTile = tuning::kWgmmaTiles[I];
        static_assert(kTile.weightRows % 64 == 0 && kTile.bn % 16 == 0,
            "64 weight rows per consumer warpgroup; BN a multiple of wgmma's N step and the epilogue's rows");
        if (plan.tile == I)
        {
            return runRs<Op, T, kTile.bn, kTile.ctasPerSm, kTile.weightRows / 64, kPermutedK>(
                p, a, plan.splits, pdl, stream);
        }
        return runTile<Op, T, kPermutedK, I + 1>(plan, p, a, pdl, stream);
    }
    else
    {
        return cudaErrorInvalidValue;
    }
}

template <typename Op, typename T, bool kPermutedK>
cudaError_t launchRsTyped(LinearParams const& p, void const* a, int smCount, bool pdl, cudaStream_t stream)
{
    return runTile<Op, T, kPermutedK>(planWgmma(p.M, p.N, p.K, smCount), p, a, pdl, stream);
}

} // namespace

bool wgmmaSupports(LinearParams const& p)
{
    int64_t const maxDim = (int64_t{1} << 31) - 256; // TMA coordinates and tile origins are int32
    return p.K % 256 == 0 && p.M <= maxDim && p.N <= maxDim;
}

int64_t wgmmaPermutedW4a16Rows(int64_t M, int64_t N, int64_t K)
{
    if (K % 256 != 0)
    {
        return 0; // no wgmma kernel (wgmmaSupports)
    }
    // The pass costs one read and one write of x; what it saves grows with N (measured, H200).
    return N >= tuning::kWgmmaPermuteW4a16.minN ? M : std::min<int64_t>(M, tuning::kWgmmaPermuteW4a16.orMaxM);
}

bool wgmmaPermutesW4a16(LinearParams const& p)
{
    return p.M <= wgmmaPermutedW4a16Rows(p.M, p.N, p.K);
}

cudaError_t launchWgmma(LinearParams const& p, void const* a, bool bf16Operand, bool permutedK, int smCount, bool pdl,
    cudaStream_t stream)
{
    if (!wgmmaSupports(p))
    {
        return cudaErrorNotSupported;
    }
    if (p.w4a4)
    {
        // a = x-hat in the permuted K order (launchLinear quantized it for this kernel).
        switch (p.actType)
        {
        case ActType::kFLOAT: return launchRsTyped<HalfOperand, float, true>(p, a, smCount, pdl, stream);
        case ActType::kHALF: return launchRsTyped<HalfOperand, __half, true>(p, a, smCount, pdl, stream);
        case ActType::kBF16: return launchRsTyped<HalfOperand, __nv_bfloat16, true>(p, a, smCount, pdl, stream);
        }
        return cudaErrorInvalidValue;
    }
    // W4A16, fp16 or bf16: a = x as given (natural K order) or moved into the permuted order.
    if (bf16Operand)
    {
        return permutedK ? launchRsTyped<Bf16Operand, __nv_bfloat16, true>(p, a, smCount, pdl, stream)
                         : launchRsTyped<Bf16Operand, __nv_bfloat16, false>(p, a, smCount, pdl, stream);
    }
    if (p.actType == ActType::kHALF)
    {
        return permutedK ? launchRsTyped<HalfOperand, __half, true>(p, a, smCount, pdl, stream)
                         : launchRsTyped<HalfOperand, __half, false>(p, a, smCount, pdl, stream);
    }
    return cudaErrorInvalidValue;
}

} // namespace detail
} // namespace nvfp4
