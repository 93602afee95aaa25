// Tuning table of the NVFP4Linear kernels: tile shapes, pipeline depths, CTAs per SM and the
// dispatch thresholds, frozen at the values measured on Hopper (docs/kernels.md gives the numbers
// behind each). Product code has no build switches; an experiment builds a copy of the kernels
// with this file edited (scripts/dev/build_variant.sh).
#pragma once

#include <cstddef>
#include <cstdint>

namespace nvfp4
{
namespace detail
{
namespace tuning
{

// ---------------------------------------------------------------------------------------------
// Dispatch by architecture (nvfp4LinearKernels.cu).
struct Dispatch
{
    // The GEMV family takes M up to this (when K % 128 == 0; K % 128 == 64 caps it at 16).
    int64_t gemvMaxM;
};

// Where the wgmma kernel cannot run (other architectures, K % 256 != 0 on Hopper): the GEMV beat
// the tiled mma.sync kernel at every M up to 64 (H100, 1.4-4.7x).
constexpr Dispatch kDispatchNoWgmma{64};

// Hopper (sm_90a image) where the wgmma kernel runs: the wgmma kernel from M = fromM on, the GEMV
// below, by the weight's size N * K (the first entry it reaches). The wgmma kernel streams the
// weights through one TMA ring per SM and decodes each weight once for all M; the GEMV's time
// grows with ceil(M / 8) but it starts faster, which small weights need. H100, W4A4 (W4A16
// alike), wgmma (BN = 16 / 32 tiles) against the GEMV: 8192->57344 M = 16 -15 %, 24 -22 %, 32
// -29 %, M = 8 +9 %; 28672->8192 M = 16 -11 %, 32 -18 %; 4096->28672 M = 16 -7 %, 24 -13 %;
// 14336->4096 and 4096->14336 M = 24 -2 % / +11 %, M = 32 -11 % / -6 %; 4096->6144 M = 32 -7 %;
// 4096->4096 M = 32 +5 %, M = 40 -6 % (W4A16 +9 %); at M = 40 the GEMV lost by 30-45 % on the
// five larger shapes.
struct WgmmaFrom
{
    int64_t minWeights; // N * K
    int64_t fromM;
};
constexpr WgmmaFrom kHopperWgmmaFrom[] = {{int64_t{128} << 20, 9}, {int64_t{96} << 20, 17},
    {int64_t{20} << 20, 25}, {0, 41}};
constexpr int64_t hopperWgmmaFromM(int64_t N, int64_t K)
{
    for (WgmmaFrom const& w : kHopperWgmmaFrom)
    {
        if (N * K >= w.minWeights)
        {
            return w.fromM;
        }
    }
    return kDispatchNoWgmma.gemvMaxM + 1;
}

// ---------------------------------------------------------------------------------------------
// Wide GEMV (nvfp4Gemv.cu, K % 128 == 0), per NT = ceil(M / 8) activation n8 tiles per warp.
struct GemvWide
{
    int maxNt;         // largest NT instantiated: the wide GEMV covers M <= 8 * maxNt
    int maxSplits;     // CTA splits of K (<= kMaxSplitsGemv: the workspace holds that many partials)
    int64_t l2HintChunks; // per-warp stream length (128-chunks) from which M <= 8 uses .L2::256B
};
constexpr GemvWide kGemvWide{8, 8, 16};

// bf16 activations take the strided decode (one byte permute per weight pair from two byte words,
// and two per activation word to meet its pairs) up to this NT; above it the activation permutes
// outweigh the decode's savings and the registers spill (sm_90a SASS: loop -17 % at NT = 1, -10 %
// at NT = 3, +5 % at NT = 8; 164 bytes spilled at NT = 4 with four m16 tiles). H100, bf16 W4A16:
// NT = 1 -1..-5 % on every shape; NT = 2-3 -5..+4 % (no gain), hence NT = 1.
constexpr int kGemvBf16StridedMaxNt = 1;

// m16 weight tiles per warp (16 weight rows each). Every warp reads its activation rows through L1
// once per group of weight tiles, so from NT = 2 the L1 is the busiest unit (H200, 8192->57344,
// M = 16: L1/TEX 87 %, DRAM 42 %); four tiles (64 rows) halve those reads per weight (L1/TEX 61 %)
// at twice the ring's registers, so 2 CTAs per SM instead of 4 (then latency-bound: 2 warps per
// scheduler). H200, four tiles against two: M = 24-32 -11..-25 % from 58 M weights, -4..+19 % on
// 4096->4096 and 4096->6144 (4 K splits of 2-4 chunks per warp: the ring's start-up dominates);
// M = 9-16 (NT = 2) -9..+8 % (W4A4), +3..+15 % (bf16 W4A16); NT = 5 spills. Hence NT = 3..4 on
// weights of at least kGemvFourTilesMinWeights.
constexpr int kGemvFourTilesMinNt = 3;
constexpr int kGemvFourTilesMaxNt = 4;
constexpr int64_t kGemvFourTilesMinWeights = int64_t{32} << 20;

// Register ring depth (chunks of 128 in flight per warp) and the CTAs per SM the launch bounds
// ask for, by NT and m16 tiles per warp. With two tiles, NT = 1, 2 fit 128 registers (4 CTAs per
// SM); NT = 3 fits 168 (3 CTAs) but ran 18 % slower on 4096->14336 than at 2 CTAs; NT >= 4 needs
// 170-254 registers. Four tiles need more than 128 from NT = 1; one tile at NT = 1 fits 64 (8
// CTAs).
constexpr int gemvRingDepth(int /*nt*/)
{
    return 2; // a third chunk in flight gained nothing (H100, M <= 16)
}
constexpr int gemvMinCtasPerSm(int nt, int mTiles)
{
    return mTiles == 1 ? 8 : (nt <= 2 && mTiles <= 2 ? 4 : 2);
}

// One m16 tile per warp at NT = 1 (M <= 8) below this many weights: half the per-chunk chain per
// warp and, within 64 registers, 8 CTAs per SM instead of 4, for short streams that are latency
// chains. H100 against two tiles, M = 1-8: 4096->6144 -2..-19 %, 2048->4096 and 4096->2048
// -1..-21 %, 4096->4096 -6..+4 % (worst at M = 8), 4096->14336 and 14336->4096 -6..0 %; above
// 64 M weights one tile lost (28672->8192 and 8192->57344: +1..+15 %).
constexpr int64_t kGemvOneTileMaxWeights = int64_t{64} << 20;

// ---------------------------------------------------------------------------------------------
// Tiled mma.sync GEMM (nvfp4Tiled.cu): CTA tile BM x BN (activation rows x weight rows) on a
// WM x WN warp grid, STAGES cp.async stages.
struct TiledShape
{
    int bm, bn, wm, wn, stages;
};
constexpr TiledShape kTiledSmallM{64, 128, 2, 4, 4}; // M <= 64
constexpr TiledShape kTiledLargeM{128, 256, 2, 4, 4};

// ---------------------------------------------------------------------------------------------
// wgmma kernel (nvfp4Wgmma.cu): 128 or 256 weight rows per CTA, BN activation rows.
// The tiles the planner chooses from (BN activation rows by weightRows, CTAs per SM) and its cost
// of one 64-deep stage of one CTA in cycles at kWgmmaClockMHz: the tensor time 4 * BN plus the
// decode and barrier latency it does not hide (fitted to H100 and H200 timings). At BN = 64 two
// CTAs can share an SM (consumers within 104 registers): each stage then takes ~1400 cycles per
// CTA, only ~10 % more SM throughput than one CTA (H200, 8192->57344, M = 64: twice the warps
// raised the issue utilisation from 44 % to 51 %). Or one CTA of 256 weight rows (4 consumer
// warpgroups within 112 registers) puts those warps on one activation tile, read from L2 once
// for twice the weights: 1330 cycles per stage (H100, M = 41-64: 8192->57344 and 28672->8192
// -8...-13 %, 4096->28672 -5...-8 %; 1290 would fit those, but then the planner also takes
// 14336->4096 at M <= 48 as 8 splits of 256 rows, measured +2...+4 %). The same 256 rows at other
// BN (the consumers' 112 registers hold up to 48 accumulators): against the BN = 64 tile on the
// same splits (H100), BN = 48 at M = 33-48 0.95-0.98 of its time, BN = 32 at M = 17-32 0.90-0.94,
// BN = 16 at M <= 16 0.81-0.90; BN = 96 at M = 65-96 against BN = 128 x 128 rows -11...-31 % on
// the three largest shapes (1520-1600 cycles fit; at 1520 the planner also takes 14336->4096 at
// M = 65-73 as 7 splits, not measured).
// Plans within kWgmmaTieFactor of the best go to the earlier entry of the table.
struct WgmmaTile
{
    int bn;
    int ctasPerSm;
    int weightRows;
    double stageCycles;
};
constexpr WgmmaTile kWgmmaTiles[] = {{256, 1, 128, 4.0 * 256 + 500}, {128, 1, 128, 4.0 * 128 + 500},
    {64, 1, 128, 4.0 * 64 + 500}, {64, 2, 128, 1400.0}, {64, 1, 256, 1330.0}, {32, 1, 256, 1230.0},
    {16, 1, 256, 1150.0}, {48, 1, 256, 1280.0}, {96, 1, 256, 1600.0}};
constexpr int kWgmmaTileCount = static_cast<int>(sizeof(kWgmmaTiles) / sizeof(kWgmmaTiles[0]));
constexpr double kWgmmaClockMHz = 1700.0;
constexpr double kWgmmaTieFactor = 0.97;
constexpr int kWgmmaMaxSplits = 8;
// Stages in the wgmma kernel's ring where shared memory holds more: a power of two keeps a stage's
// slot and barrier phase a mask and a shift. At 256 weight rows the 200 KB would hold 10-14, but
// a cap of 16 ran 1-10 % slower at M = 16-128 (H100).
constexpr int kWgmmaMaxStages = 8;
constexpr int kWgmmaMinChunksPerSplit = 4;

// W4A16 moves x into the wgmma kernel's K order first (launchPermuteActivation) where N >= minN or
// M <= orMaxM: the pass reads and writes x once, the consumers save ~10 % of their instructions,
// so it pays with N. H200, bf16, against the natural order: -26..0 % at N >= 6144 (M = 64-4096; one
// row +1 %), -15..+1 % at N = 4096 up to M = 256, -6..+8 % at N = 4096 from M = 512.
struct WgmmaPermuteW4a16
{
    int64_t minN;
    int64_t orMaxM;
};
constexpr WgmmaPermuteW4a16 kWgmmaPermuteW4a16{6144, 256};

// ---------------------------------------------------------------------------------------------
// Dequantize-then-GEMM (nvfp4CublasLt.cu), sm >= 80, from kDequantGemmMinM activation rows on:
// decoding the weights once per call moves N * K * 2.56 bytes, while the GEMM does 2 * M * N * K
// FLOPs, so at M = 2048 the decode costs ~6-12 % of a cuBLAS 16-bit GEMM on A100/H100/H200-class
// bandwidth-to-compute ratios (more on GDDR cards), which the fused-decode kernels lose to cuBLAS
// at large M (wgmma: 61-89 % of cuBLAS's rate on H200). Slices of at most kDequantSliceBytes of
// decoded weight bound the extra workspace. The automatic dispatch takes the path only where a slice
// holds at least kDequantMinSliceRows weight rows (or all of N), so that each slice's GEMM fills
// the GPU at M = 2048: H200, M = 2048-4096, against the wgmma kernel, the path gained 5-14 % at
// w4a16 and 0-4 % at w4a4 on one-slice shapes (4096->4096, 4096->6144), tied on 8192->57344 (4096-row
// slices), and lost 2-20 % on 28672->8192 (1152-row slices).
constexpr int64_t kDequantGemmMinM = 2048;
constexpr size_t kDequantSliceBytes = size_t{64} << 20;
constexpr int64_t kDequantMinSliceRows = 4096;

} // namespace tuning
} // namespace detail
} // namespace nvfp4
