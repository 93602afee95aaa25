// Launch side of the NVFP4Linear CUDA kernels (not part of the public API): the kernel families,
// the workspace layout, split-K planning and the launchers that nvfp4LinearKernels.cu dispatches to.
#pragma once

#include "nvfp4LinearKernels.h"

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <utility>

namespace nvfp4
{
namespace detail
{

// Kernel families that launchLinear can pick (also the values of nvfp4_force_kernel in the C API).
enum class KernelPath : int32_t
{
    kAuto = 0,
    kSimt = 1,  // FFMA, any shape/alignment/arch; the only path for fp32 w4a16 and for sm < 80
    kGemv = 2,  // M <= 16 (M <= 64 when K % 128 == 0): mma.sync, weights streamed into registers, split-K
    kTiled = 3, // mma.sync tiled GEMM with cp.async pipeline, optional split-K
    kWgmma = 4, // sm_90a, K % 256 == 0: warp-specialized wgmma, decoded weights as the register operand
    kNativeFp4 = 5, // sm >= 100, w4a4: cuBLASLt block-scaled FP4 GEMM (nvfp4CublasLt.cu), compile-checked only
    kDequantGemm = 6, // sm >= 80: weights decoded to 16 bits per call, then a cuBLASLt GEMM (large M)
};

// Process-wide override used by tests/benchmarks (C API); kAuto = normal dispatch.
KernelPath& forcedPath();

// Activation operand buffer at the start of the workspace, sized for every M' <= M: fp16 x-hat [M, K]
// (w4a4), or, for fp16/bf16 w4a16, x in the wgmma kernel's K order where that kernel runs with it
// (wgmmaPermutedW4a16Rows: other shapes reserve nothing).
size_t actOperandBytes(int64_t M, int64_t N, int64_t K, bool w4a4, ActType actType);
// Split-K partial sums: float [splits, M, N], after the activation operand.
size_t partialBytes(int64_t M, int64_t N);
constexpr int kMaxSplitsGemv = 8;
constexpr int kMaxSplitsTiled = 4;
constexpr int64_t kMaxSplitM = 256; // split-K only for M <= this

inline size_t alignUp(size_t v, size_t a)
{
    return (v + a - 1) / a * a;
}

// Launch with the programmatic-stream-serialization attribute when `pdl` (the kernel must call
// waitPrimaryGrid() before touching what the preceding kernel writes or reads).
template <typename... Params, typename... Args>
cudaError_t launchKernel(bool pdl, void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem, cudaStream_t stream,
    Args&&... args)
{
    cudaLaunchAttribute attr;
    attr.id = cudaLaunchAttributeProgrammaticStreamSerialization;
    attr.val.programmaticStreamSerializationAllowed = 1;
    cudaLaunchConfig_t cfg = {};
    cfg.gridDim = grid;
    cfg.blockDim = block;
    cfg.dynamicSmemBytes = smem;
    cfg.stream = stream;
    cfg.attrs = pdl ? &attr : nullptr;
    cfg.numAttrs = pdl ? 1 : 0;
    return cudaLaunchKernelEx(&cfg, kernel, std::forward<Args>(args)...);
}

// Split-K count for a tiled kernel: fill whole waves of resident CTAs; each split costs its
// partial sums (written + read) and the reduction launch.
inline int64_t chooseTileSplits(int64_t tilesN, int64_t tilesM, int ctasPerSm, int smCount, int64_t M, int64_t N,
    int64_t K, int maxSplits)
{
    int64_t const numChunks = K / 64;
    int64_t const ctas = tilesN * tilesM;
    double const resident = static_cast<double>(ctasPerSm) * smCount;
    double const work = static_cast<double>(N) * K * 0.5625 + static_cast<double>(tilesN) * M * K * 2.0;
    int64_t best = 1;
    double bestCost = 0;
    int64_t const maxS = std::min<int64_t>(maxSplits, std::max<int64_t>(1, numChunks / 4));
    for (int64_t s = 1; s <= maxS; ++s)
    {
        double const total = static_cast<double>(ctas * s);
        double const eff = total / (std::ceil(total / resident) * resident);
        double const cost = work / eff + (s > 1 ? 8.0 * s * M * N + 2.5e6 : 0.0);
        if (s == 1 || cost < bestCost)
        {
            best = s;
            bestCost = cost;
        }
    }
    return best;
}


// ---------------------------------------------------------------------------------------------
// Launchers (each returns the launch status).

// The order in which the activation pass writes x-hat (nvfp4OperandBits.h), for the kernel reading it.
enum class ActOrder
{
    kNatural,   // as x: SIMT, tiled, the 64-chunk GEMV, the C API
    kGemvPairs, // gemvPairPos: the wide GEMV at w4a4 (gemvReadsActivationPairs)
    kWgmma,     // permutedKPos within each 64-element chunk (K % 64 == 0): the wgmma kernel
};

// x [M, K] (T) -> x-hat fp16 [M, K] in `order` (and, if scaleOut != nullptr, the FP8 block scales
// [M, K/16], natural order).
cudaError_t launchQuantizeActivation(void const* x, ActType actType, int64_t M, int64_t K, float inputGlobalScaleInv,
    __half* xhat, uint8_t* scaleOut, ActOrder order, cudaStream_t stream);
// The same at ActOrder::kNatural with x-hat as bf16 (exact as well), no scales: the activation
// operand of the dequantize-then-GEMM path when the output is bf16 (cuBLASLt's operand and output
// types go together).
cudaError_t launchQuantizeActivationBf16(
    void const* x, ActType actType, int64_t M, int64_t K, float inputGlobalScaleInv, __nv_bfloat16* xhat, cudaStream_t stream);
// x [M, K] (fp16 or bf16, K % 64 == 0) -> out [M, K] of the same type in the wgmma kernel's K order
// (permutedKPos), for w4a16 on that kernel.
cudaError_t launchPermuteActivation(void const* x, ActType actType, int64_t M, int64_t K, void* out, cudaStream_t stream);

// The three GEMM families. `a` is the 16-bit activation operand (x-hat, or x for fp16/bf16 w4a16)
// or, for the SIMT kernel, either x-hat (fp16, w4a4) or x (actType).
cudaError_t launchSimt(LinearParams const& p, void const* a, bool aIsXhat, cudaStream_t stream);
// pdl: the activation operand is written by the kernel just before (w4a4 quantization, sm_90+).
cudaError_t launchGemv(
    LinearParams const& p, void const* a, bool bf16Operand, int smCount, bool pdl, cudaStream_t stream);
// Largest M the GEMV kernels take for this K: 8 * the wide kernel's tiles when K % 128 == 0, else 16.
int64_t gemvMaxM(int64_t K);
// Whether the GEMV reads its activation in ActOrder::kGemvPairs (else natural).
bool gemvReadsActivationPairs(LinearParams const& p);
cudaError_t launchTiled(LinearParams const& p, void const* a, bool bf16Operand, int smCount, cudaStream_t stream);
// wgmma (sm_90a): needs K % 256 == 0 (wgmmaSupports), else returns cudaErrorNotSupported.
// permutedK: `a` is in the kernel's K order (always for w4a4: x-hat from launchQuantizeActivation
// in ActOrder::kWgmma; for w4a16 where wgmmaPermutesW4a16: x from launchPermuteActivation), else x as
// given. pdl: as for launchGemv.
bool wgmmaSupports(LinearParams const& p);
// The most w4a16 activation rows the wgmma kernel moves for any M' <= M (its rule, also the
// workspace's: actOperandBytes), and whether it moves this call's.
int64_t wgmmaPermutedW4a16Rows(int64_t M, int64_t N, int64_t K);
bool wgmmaPermutesW4a16(LinearParams const& p);
// The wgmma kernel's tile and K splits for a problem on smCount SMs (its planner's cost model,
// the tuning table's kWgmmaTiles), the same as launchWgmma picks.
struct WgmmaPlan
{
    int tile = 0; // index into the tuning table's kWgmmaTiles (its BN, CTAs per SM, weight rows)
    int splits = 1;
};
WgmmaPlan planWgmma(int64_t M, int64_t N, int64_t K, int smCount);
cudaError_t launchWgmma(LinearParams const& p, void const* a, bool bf16Operand, bool permutedK, int smCount, bool pdl,
    cudaStream_t stream);

// Native block-scaled FP4 path (nvfp4CublasLt.cu, operands from nvfp4Fp4Pack.cu). Returns
// cudaErrorNotSupported, before launching anything, when it cannot run the problem (no cuBLASLt,
// no algorithm, sm < 100, w4a16, alignment); nativeFp4Status() then says why.
cudaError_t launchNativeFp4(LinearParams const& p, int sm, cudaStream_t stream);
// The same checks and planning (library, descriptors, algorithm) without the sm test and without
// launching: lets a test on any GPU exercise the cuBLASLt plumbing.
cudaError_t probeNativeFp4(LinearParams const& p);
// Workspace bytes of that path (every M' <= M), 0 where it is not compiled in.
size_t nativeFp4WorkspaceBytes(int64_t M, int64_t N, int64_t K);

// Dequantize-then-GEMM path (nvfp4CublasLt.cu, the weight decode in nvfp4Dequant.cu): the activation
// operand (w4a4: quantized here), the weights decoded slice by slice into 16-bit operands, each slice
// multiplied by cuBLASLt with fp32 accumulation and alpha/bias in its epilogue. Returns
// cudaErrorNotSupported before launching anything when it cannot run the problem (sm < 80, fp32
// w4a16, N % 8 != 0, alignment, no cuBLASLt or no algorithm); dequantGemmStatus() then says why.
cudaError_t launchDequantGemm(LinearParams const& p, int sm, cudaStream_t stream);
// Workspace bytes of that path for every M' <= M (nvfp4DequantLayout.h), 0 where it is not compiled in.
size_t dequantGemmWorkspaceBytes(int64_t M, int64_t N, int64_t K, bool w4a4);
// Rows n0 .. n0 + rows - 1 of the weight -> out [rows, K] 16-bit (bf16Operand: bf16, else fp16),
// w' = ŵ * 2^-7, natural K order; alpha != nullptr: also alpha[n] (the epilogue's, times 2^7) for
// n < weightGlobalScaleLen and alpha[weightGlobalScaleLen] = 0. weight 4-byte, out 16-byte aligned.
cudaError_t launchDequantizeWeight(LinearParams const& p, bool bf16Operand, int64_t n0, int64_t rows, void* out,
    float* alpha, cudaStream_t stream);
// x [M, K] -> packed E2M1 [M, K/2] (element 2j in the low nibble) and the block scales in cuBLASLt's
// tiled layout (nvfp4ScaleLayout.h, rows padded to 128 with zero scales). K % 64 == 0.
cudaError_t launchQuantizeActivationFp4(void const* x, ActType actType, int64_t M, int64_t K,
    float inputGlobalScaleInv, uint8_t* packed, uint8_t* scales, cudaStream_t stream);
// Weight block scales [N, K/16] -> tiled layout (as UE4M3), and alpha[0 .. wgsLen-1] = fp32(inputGlobalScale *
// weightGlobalScale[n]), alpha[wgsLen] = 0 (beta). K % 64 == 0, weightScale 4-byte aligned.
cudaError_t launchPrepareWeightFp4(int8_t const* weightScale, int64_t N, int64_t K, float const* weightGlobalScale,
    int32_t weightGlobalScaleLen, float inputGlobalScale, uint8_t* scalesOut, float* alpha, cudaStream_t stream);

// Sum of split-K partials [splits, M, N] + epilogue.
// pdl: may start while the split kernel before it drains (sm_90+).
cudaError_t launchReduceSplits(LinearParams const& p, float const* partial, int splits, cudaStream_t stream,
    bool pdl = false);

// The K ranges of a split-K grid: `wanted` splits evened out so that none is empty, and where the
// splits leave their fp32 partial sums (after the activation operand in the workspace).
struct SplitK
{
    int splits = 1;
    int chunksPerSplit = 0;
    float* partial = nullptr; // nullptr when not split
};

inline SplitK planSplitK(LinearParams const& p, int64_t numChunks, int64_t wanted)
{
    SplitK s;
    int64_t const perSplit = (numChunks + wanted - 1) / wanted;
    s.chunksPerSplit = static_cast<int>(perSplit);
    s.splits = static_cast<int>((numChunks + perSplit - 1) / perSplit);
    if (s.splits > 1)
    {
        s.partial = reinterpret_cast<float*>(
            static_cast<uint8_t*>(p.workspace) + actOperandBytes(p.M, p.N, p.K, p.w4a4, p.actType));
    }
    return s;
}

// After the split kernel's launch: the deterministic reduction of its partials when split.
inline cudaError_t reduceSplitK(
    LinearParams const& p, SplitK const& s, cudaError_t launched, cudaStream_t stream, bool pdl = false)
{
    if (launched != cudaSuccess || s.splits == 1)
    {
        return launched;
    }
    return launchReduceSplits(p, s.partial, s.splits, stream, pdl);
}

} // namespace detail
} // namespace nvfp4
