// The tensor-core step (and the in-CTA reduction) of the two streaming GEMVs whose weights are the
// MMA's A operand: the dense wide GEMV (nvfp4Gemv.cu, gemvWideKernel) and the experts' linears
// (nvfp4MoE/kernels/nvfp4MoEGemm.cu). Both read a K chunk of 128 elements per step; thread t of a
// quad owns elements [32t, 32t + 32): two FP8 blocks, 16 weight bytes per weight row, 64 activation
// bytes per activation row. MMA step s = 2q + e (q = word of the 16 weight bytes, e = its half)
// pairs logical k (2t, 2t+1) with physical 32t + 4s + {0,1} and (2t+8, 2t+9) with 32t + 4s + {2,3},
// for both operands alike, so the dot product is unchanged.
#pragma once

#include "nvfp4Numerics.cuh"

#include <cuda_fp16.h>

#include <cstdint>

namespace nvfp4
{
namespace detail
{

// Weight decode of one word (8 E2M1 nibbles e0..e7, even element = low nibble) into the pairs
// (e0, e2), (e4, e6), (e1, e3), (e5, e7), times the block scale pair: the operand's strided pairs
// (nvfp4Numerics.cuh; fp16: 11 integer ops + 4 HMUL2 per 8 weights, the natural decode 18 + 4;
// bf16: one byte permute per pair from the word's two byte words).
template <typename Op>
__device__ __forceinline__ void decodeWordStrided(uint32_t w, uint32_t scale, uint32_t (&b)[4])
{
    b[0] = Op::template stridedPair<0, 1, false>(w, scale);
    b[1] = Op::template stridedPair<2, 3, false>(w, scale);
    b[2] = Op::template stridedPair<0, 1, true>(w, scale);
    b[3] = Op::template stridedPair<2, 3, true>(w, scale);
}

// The MMAs of one 128-element chunk: `wv` holds the 16 weight bytes of the thread's MT x 2 weight
// rows (m16 tiles of rows g and g + 8), `sc` their two decoded block-scale pairs, `aCur` the
// activation words of the NT n8 tiles. With kPerWord the activation words are loaded here, word q
// of each row from aRow[j] + aWord + q, just before its MMAs (fewer registers at large NT); else
// `aCur` holds all four already. kStrided: the strided decode (decodeWordStrided), which pairs
// weight elements (4e, 4e+2) and (4e+1, 4e+3) of each word and permutes the activation pairs alike
// (two byte permutes per activation word), unless kActPairs: the activation is stored in that
// pair order already (gemvPairPos). Else the natural decode (decodeWeightWord), weight bytes 2e
// (k, k+1) and 2e+1 (k+8, k+9).
template <typename Op, int MT, int NT, bool kPerWord, bool kStrided, bool kActPairs, typename Offset>
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
                    decodeWordStrided<Op>(word, sc[mt][h][q >> 1], b[mt][h]);
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
                static_assert(kStrided || !kActPairs, "the pair order serves the strided decode");
                if constexpr (kStrided && !kActPairs)
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

} // namespace detail
} // namespace nvfp4
