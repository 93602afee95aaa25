// The tensor-core step (and the in-CTA reduction) of the two streaming GEMVs whose weights are the MMA's A operand: the dense
// wide GEMV (nvfp4Gemv.cu, gemvWideKernel) and the experts' linears (nvfp4MoE/kernels/
// nvfp4MoEGemm.cu). Both read a K chunk of 128 elements per step; thread t of a quad owns elements
// [32t, 32t + 32): two FP8 blocks, 16 weight bytes per weight row, 64 activation bytes per
// activation row. MMA step s = 2q + e (q = word of the 16 weight bytes, e = its half) pairs logical
// k (2t, 2t+1) with physical 32t + 4s + {0,1} and (2t+8, 2t+9) with 32t + 4s + {2,3}, for both
// operands alike, so the dot product is unchanged.
#pragma once

#include "nvfp4Numerics.cuh"

#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

namespace nvfp4
{
namespace detail
{

// fp16 weight decode of one word (8 E2M1 nibbles e0..e7, even element = low nibble) into the pairs
// (e0, e2), (e4, e6), (e1, e3), (e5, e7), times the block scale pair: each nibble is first formatted
// as the high byte of an fp16 (sign -> bit 7, magnitude -> bits 1..3: e2m1 * 2^-14 exactly, as
// fp4PairToHalfBits), low nibbles in L, high nibbles in H; one byte permute with a zero register
// then builds each pair (11 integer ops + 4 HMUL2 per 8 weights; the natural decode: 18 + 4).
__device__ __forceinline__ void decodeWordStrided(uint32_t w, uint32_t scale, uint32_t (&b)[4])
{
    uint32_t const l = ((w << 1) & 0x0E0E0E0Eu) | ((w << 4) & 0x80808080u);
    uint32_t const h = ((w >> 3) & 0x0E0E0E0Eu) | (w & 0x80808080u);
    uint32_t const raw[4] = {__byte_perm(l, 0u, 0x1404), __byte_perm(l, 0u, 0x3424), __byte_perm(h, 0u, 0x1404),
        __byte_perm(h, 0u, 0x3424)};
#pragma unroll
    for (int i = 0; i < 4; ++i)
    {
        __half2 const r
            = __hmul2(*reinterpret_cast<__half2 const*>(&raw[i]), *reinterpret_cast<__half2 const*>(&scale));
        b[i] = *reinterpret_cast<uint32_t const*>(&r);
    }
}

// The two FP8 block scales of a 16-bit scale word (bytes 0, 1: the thread's two blocks of a chunk)
// as the 16-bit pairs the weight decode multiplies by. kFast (fp16 with the strided decode): the
// scale itself (w' = ŵ * 2^-14); else Op::scalePair's ŵ * 2^-7 scaling.
template <typename Op, bool kFast>
__device__ __forceinline__ void decodeScaleWord(uint32_t s2, uint32_t (&sc)[2])
{
    if constexpr (kFast)
    {
        // Both block scales in one FP8x2 -> f16x2 conversion (exact, NaN kept).
        __half2_raw const raw = __nv_cvt_fp8x2_to_halfraw2(static_cast<__nv_fp8x2_storage_t>(s2), __NV_E4M3);
        uint32_t const both = static_cast<uint32_t>(raw.x) | (static_cast<uint32_t>(raw.y) << 16);
        sc[0] = __byte_perm(both, 0u, 0x1010);
        sc[1] = __byte_perm(both, 0u, 0x3232);
    }
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
    else if constexpr (std::is_same<Op, Bf16Operand>::value)
    {
        // s_w * 2^119 as bf16 pairs (Bf16Operand::scalePair without its software FP8 decode):
        // FP8x2 -> f16x2 -> f32 (exact), x 2^119 (exact), -> bf16 (exact).
        __half2_raw const raw = __nv_cvt_fp8x2_to_halfraw2(static_cast<__nv_fp8x2_storage_t>(s2), __NV_E4M3);
        float2 const f = __half22float2(__half2(raw));
        __nv_bfloat162 const s0 = __float2bfloat162_rn(__fmul_rn(f.x, 6.64613997892457936e35f));
        __nv_bfloat162 const s1 = __float2bfloat162_rn(__fmul_rn(f.y, 6.64613997892457936e35f));
        sc[0] = *reinterpret_cast<uint32_t const*>(&s0);
        sc[1] = *reinterpret_cast<uint32_t const*>(&s1);
    }
#endif
    else
    {
        sc[0] = Op::scalePair(s2 & 0xFFu);
        sc[1] = Op::scalePair(s2 >> 8);
    }
}

// The MMAs of one 128-element chunk: `wv` holds the 16 weight bytes of the thread's MT x 2 weight
// rows (m16 tiles of rows g and g + 8), `sc` their two decoded block-scale pairs, `aCur` the
// activation words of the NT n8 tiles. With kPerWord the activation words are loaded here, word q
// of each row from aRow[j] + aWord + q, just before its MMAs (fewer registers at large NT); else
// `aCur` holds all four already. kStrided: the strided fp16 decode (decodeWordStrided), which pairs
// weight bytes (4e, 4e+2) and (4e+1, 4e+3) and permutes the activation pairs alike; else the
// natural decode (decodeWeightWord), weight bytes 2e (k, k+1) and 2e+1 (k+8, k+9).
template <typename Op, int MT, int NT, bool kPerWord, bool kStrided, typename Offset>
__device__ __forceinline__ void mmaChunk128(uint4 const (&wv)[MT][2], uint32_t const (&sc)[MT][2][2],
    uint4 (&aCur)[NT][kPerWord ? 1 : 4], uint4 const* const* aRow, Offset aWord, float (&acc)[MT][NT][4])
{
#pragma unroll
    for (int q = 0; q < 4; ++q) // word q of each row's 16 bytes: MMA steps 2q, 2q+1
    {
        if constexpr (kPerWord)
        {
#pragma unroll
            for (int j = 0; j < NT; ++j)
            {
                aCur[j][0] = __ldg(aRow[j] + aWord + q);
            }
        }
        uint32_t b[MT][2][4];
#pragma unroll
        for (int mt = 0; mt < MT; ++mt)
        {
#pragma unroll
            for (int h = 0; h < 2; ++h)
            {
                uint4 const& v = wv[mt][h];
                uint32_t const word = q == 0 ? v.x : (q == 1 ? v.y : (q == 2 ? v.z : v.w));
                if constexpr (kStrided)
                {
                    decodeWordStrided(word, sc[mt][h][q >> 1], b[mt][h]);
                }
                else
                {
                    decodeWeightWord<Op>(word, sc[mt][h][q >> 1], b[mt][h]);
                }
            }
        }
#pragma unroll
        for (int e = 0; e < 2; ++e)
        {
            // Step s = 2q+e covers the word's elements 4e..4e+3 (activation words 2s, 2s+1).
#pragma unroll
            for (int j = 0; j < NT; ++j)
            {
                uint4 const& av = aCur[j][kPerWord ? 0 : q];
                uint32_t b0 = e ? av.z : av.x;
                uint32_t b1 = e ? av.w : av.y;
                if constexpr (kStrided)
                {
                    uint32_t const lo = b0;
                    b0 = __byte_perm(lo, b1, 0x5410);
                    b1 = __byte_perm(lo, b1, 0x7632);
                }
#pragma unroll
                for (int mt = 0; mt < MT; ++mt)
                {
                    uint32_t const af[4] = {b[mt][0][kStrided ? e : 2 * e], b[mt][1][kStrided ? e : 2 * e],
                        b[mt][0][kStrided ? 2 + e : 2 * e + 1], b[mt][1][kStrided ? 2 + e : 2 * e + 1]};
                    Op::mma(acc[mt][j], af, b0, b1);
                }
            }
        }
    }
}

// The in-CTA K split's reduction: each of the CTA's W warps stores its m16n8 accumulators into
// red[warp] (entry (mt * NT + j) * 4 + r, column lane); after a barrier, sumOverWarps gives one
// entry summed over the warps in a fixed order (deterministic).
template <int W, int MT, int NT>
__device__ __forceinline__ void storeAccumulators(
    float (&red)[W][MT * NT * 4][32], float const (&acc)[MT][NT][4], int warp, int lane)
{
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
    {
#pragma unroll
        for (int j = 0; j < NT; ++j)
        {
#pragma unroll
            for (int r = 0; r < 4; ++r)
            {
                red[warp][(mt * NT + j) * 4 + r][lane] = acc[mt][j][r];
            }
        }
    }
}

template <int W, int E>
__device__ __forceinline__ float sumOverWarps(float const (&red)[W][E][32], int idx, int lane)
{
    float v = red[0][idx][lane];
#pragma unroll
    for (int w = 1; w < W; ++w)
    {
        v += red[w][idx][lane];
    }
    return v;
}

// The results of a GEMV tile of MT m16 weight tiles x NT n8 activation tiles whose K range W warps
// shared (their accumulators in red, storeAccumulators): `threads` threads from `tid` on sum each
// entry over the warps and store it with the epilogue, or, for split `split` of a split-K grid,
// as its fp32 partial at the reduction's operand scale 2^-7 (kOperandScale is the kernel's).
template <typename T, int MT, int NT, int W>
__device__ __forceinline__ void writeGemvTile(float const (&red)[W][MT * NT * 4][32], int tid, int threads,
    int64_t nBase, int M, int64_t N, int split, bool isSplit, float kernelOperandScale, float const* wgs,
    int32_t wgsLen, bool w4a4, float igs, T const* bias, T* y, float* partial)
{
    // Accumulator layout (m16n8): c0,c1 = weight row g, activation rows 2t, 2t+1; c2,c3 = row g+8.
    for (int e = tid; e < MT * NT * 4 * 32; e += threads)
    {
        int const idx = e / 32;
        int const l = e % 32;
        int const r = idx % 4;
        int const j = (idx / 4) % NT;
        int const mt = idx / (4 * NT);
        int const m = j * 8 + 2 * (l % 4) + (r & 1);
        int64_t const n = nBase + mt * 16 + l / 4 + (r >= 2 ? 8 : 0);
        if (m >= M || n >= N)
        {
            continue;
        }
        float const v = sumOverWarps(red, idx, l);
        if (!isSplit)
        {
            storeOutput<T>(y, m * N + n, v, epilogueAlpha(wgs, wgsLen, n, w4a4, igs, kernelOperandScale), bias, n);
        }
        else
        {
            // The reduction applies alpha * 2^7: bring a 2^-14 operand scale to 2^-7 (exact).
            float const toReduction = kernelOperandScale / kWeightOperandScale;
            partial[(static_cast<int64_t>(split) * M + m) * N + n] = toReduction == 1.0f ? v : __fmul_rn(v, toReduction);
        }
    }
}

} // namespace detail
} // namespace nvfp4
