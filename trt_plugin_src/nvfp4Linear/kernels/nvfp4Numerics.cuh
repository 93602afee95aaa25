// Numerics shared by the NVFP4Linear CUDA kernels (not part of the public API): conversions, the
// activation block loader, the epilogue, and the exact decoding of packed E2M1 weights into the
// 16-bit operands of the tensor cores.
//
// Every tensor-core path multiplies 16-bit operands whose products are exact in float32 and
// accumulates in float32 (docs/op-contract.md):
//   * activation operand: x-hat = q * s_B (w4a4, <= 6 significant bits, |x-hat| in [2^-10, 2688]:
//     exact in fp16), or x itself (w4a16, fp16 or bf16);
//   * weight operand: w' = e2m1 * s_w * 2^-7 (<= 6 significant bits, |w'| in [2^-17, 21]: exact in
//     fp16 and bf16). The 2^-7 keeps s_w * 2^7 (the multiplier of the bit-decoded nibble) below the
//     fp16 maximum; the epilogue multiplies by alpha * 2^7 instead of alpha (exact power of two).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp8.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "../../common/nvfp4Math.h"
#include "nvfp4OperandBits.h"

namespace nvfp4
{
namespace detail
{

constexpr float kWeightOperandScale = 128.0f; // w' = ŵ / 2^7, undone in the epilogue

// ---------------------------------------------------------------------------------------------
// Conversions, loads and the epilogue.

template <typename T>
__device__ __forceinline__ float toFloat(T v);
template <>
__device__ __forceinline__ float toFloat<float>(float v)
{
    return v;
}
template <>
__device__ __forceinline__ float toFloat<__half>(__half v)
{
    return __half2float(v);
}
template <>
__device__ __forceinline__ float toFloat<__nv_bfloat16>(__nv_bfloat16 v)
{
    return __bfloat162float(v);
}

template <typename T>
__device__ __forceinline__ T fromFloat(float v);
template <>
__device__ __forceinline__ float fromFloat<float>(float v)
{
    return v;
}
template <>
__device__ __forceinline__ __half fromFloat<__half>(float v)
{
    return __float2half_rn(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 fromFloat<__nv_bfloat16>(float v)
{
    return __float2bfloat16_rn(v);
}

// The 16 elements of one activation block (16 contiguous values of a row) as float. Vec: the block
// is 16-byte aligned, read with 16-byte loads through the read-only cache; else element by element.
template <typename T, bool Vec>
__device__ __forceinline__ void loadBlock(T const* src, float (&v)[16])
{
    if constexpr (Vec)
    {
        constexpr int kPerVec = 16 / sizeof(T);
#pragma unroll
        for (int j = 0; j < 16 / kPerVec; ++j)
        {
            uint4 const u = __ldg(reinterpret_cast<uint4 const*>(src) + j);
            T const* e = reinterpret_cast<T const*>(&u);
#pragma unroll
            for (int i = 0; i < kPerVec; ++i)
            {
                v[j * kPerVec + i] = toFloat<T>(e[i]);
            }
        }
    }
    else
    {
#pragma unroll
        for (int i = 0; i < 16; ++i)
        {
            v[i] = toFloat<T>(src[i]);
        }
    }
}

// alpha[n] * 2^scaleShift as the epilogue multiplier (float32, as the contract forms alpha).
__device__ __forceinline__ float epilogueAlpha(
    float const* wgs, int32_t wgsLen, int64_t n, bool w4a4, float inputGlobalScale, float extra)
{
    float const w = wgs[wgsLen == 1 ? 0 : n];
    float const alpha = w4a4 ? __fmul_rn(inputGlobalScale, w) : w;
    return __fmul_rn(alpha, extra);
}

// y = acc * alphaX + bias, rounded to T.
template <typename T>
__device__ __forceinline__ void storeOutput(T* y, int64_t idx, float acc, float alphaX, T const* bias, int64_t n)
{
    float v = __fmul_rn(acc, alphaX);
    if (bias != nullptr)
    {
        v = __fadd_rn(v, toFloat<T>(bias[n]));
    }
    y[idx] = fromFloat<T>(v);
}

// 16-bit operand traits: fp16 (w4a4 x-hat and fp16 w4a16) or bf16 (bf16 w4a16). weightPair decodes
// one byte (two E2M1 nibbles) with nvfp4OperandBits.h's bit decode, then multiplies by the block
// scale pair (HMUL2).
struct HalfOperand
{
    using Elem = __half;
    // s_w * 2^7 as a broadcast fp16 pair (exact: s_w <= 448 -> <= 57344).
    static __device__ __forceinline__ uint32_t scalePair(uint32_t scaleBits)
    {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
        // Hardware FP8x2 -> f16x2 conversion (exact, NaN kept), then the power-of-two factor.
        __half2_raw const raw = __nv_cvt_fp8x2_to_halfraw2(
            static_cast<__nv_fp8x2_storage_t>((scaleBits & 0xFFu) * 0x101u), __NV_E4M3);
        __half2 const h = __hmul2(__half2(raw), __float2half2_rn(128.0f));
#else
        __half2 const h = __float2half2_rn(math::fp8e4m3ToFloat(static_cast<uint8_t>(scaleBits)) * 128.0f);
#endif
        return *reinterpret_cast<uint32_t const*>(&h);
    }
    // Per-word preparation for weightPair.
    static __device__ __forceinline__ void prepareWord(uint32_t w, uint32_t& u, uint32_t& u4)
    {
        u = w << 1;
        u4 = w >> 3;
    }
    template <int ByteIdx>
    static __device__ __forceinline__ uint32_t weightPair(uint32_t u, uint32_t u4, uint32_t scale)
    {
        return scaled(fp4PairToHalfBits<ByteIdx>(u, u4), scale);
    }
    // The strided pair {element of byte Lo, of byte Hi} of word w (low nibbles, or High ones).
    template <int Lo, int Hi, bool High>
    static __device__ __forceinline__ uint32_t stridedPair(uint32_t w, uint32_t scale)
    {
        uint32_t const bytes = High ? fp4HighNibblesToHalfHighBytes(w) : fp4LowNibblesToHalfHighBytes(w);
        return scaled(fp16StridedPair<Lo, Hi>(bytes), scale);
    }
    static __device__ __forceinline__ uint32_t scaled(uint32_t raw, uint32_t scale)
    {
        __half2 const r = __hmul2(*reinterpret_cast<__half2 const*>(&raw), *reinterpret_cast<__half2 const*>(&scale));
        return *reinterpret_cast<uint32_t const*>(&r);
    }
    static __device__ __forceinline__ void mma(float (&c)[4], uint32_t const (&a)[4], uint32_t b0, uint32_t b1)
    {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
        asm(
            "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
            "{%0,%1,%2,%3};\n"
            : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#endif
    }
};

struct Bf16Operand
{
    using Elem = __nv_bfloat16;
    // s_w * 2^119 (bf16 holds it: <= 448 * 2^119 < 2^128); times e2m1 * 2^-126 gives ŵ * 2^-7.
    static __device__ __forceinline__ uint32_t scalePair(uint32_t scaleBits)
    {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 890
        // Hardware FP8 -> f16 (exact, NaN kept) -> f32 (exact); times 2^119 and to bf16, both exact.
        __half_raw const raw = __nv_cvt_fp8_to_halfraw(static_cast<__nv_fp8_storage_t>(scaleBits & 0xFFu), __NV_E4M3);
        float const s = __half2float(__half(raw)) * 6.64613997892457936e35f; // 2^119
#else
        float const s = math::fp8e4m3ToFloat(static_cast<uint8_t>(scaleBits)) * 6.64613997892457936e35f; // 2^119
#endif
        __nv_bfloat162 const h = __float2bfloat162_rn(s);
        return *reinterpret_cast<uint32_t const*>(&h);
    }
    static __device__ __forceinline__ void prepareWord(uint32_t w, uint32_t& w0, uint32_t& w4)
    {
        w0 = w;
        w4 = w >> 4;
    }
    template <int ByteIdx>
    static __device__ __forceinline__ uint32_t weightPair(uint32_t w, uint32_t w4, uint32_t scale)
    {
        return scaled(fp4PairToBf16Bits<ByteIdx>(w, w4), scale);
    }
    template <int Lo, int Hi, bool High>
    static __device__ __forceinline__ uint32_t stridedPair(uint32_t w, uint32_t scale)
    {
        Bf16Bytes const bytes = High ? fp4HighNibblesToBf16Bytes(w) : fp4LowNibblesToBf16Bytes(w);
        return scaled(bf16StridedPair<Lo, Hi>(bytes), scale);
    }
    static __device__ __forceinline__ uint32_t scaled(uint32_t raw, uint32_t scale)
    {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
        __nv_bfloat162 const r = __hmul2(
            *reinterpret_cast<__nv_bfloat162 const*>(&raw), *reinterpret_cast<__nv_bfloat162 const*>(&scale));
        return *reinterpret_cast<uint32_t const*>(&r);
#else
        return raw;
#endif
    }
    static __device__ __forceinline__ void mma(float (&c)[4], uint32_t const (&a)[4], uint32_t b0, uint32_t b1)
    {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
        asm(
            "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
            "{%0,%1,%2,%3};\n"
            : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
#endif
    }
};

// One k-chunk of 64 elements for one n8 tile and one m16 tile, with the thread mapping shared by
// the GEMV and tiled kernels (decodeWeightWord). Lane = 4*g + t. Thread t of a quad owns the 16 contiguous K elements
// [16t, 16t+16) of the chunk: one block (one scale) and 8 weight bytes. MMA step s (0..3) pairs
// logical k (2t, 2t+1) with physical 16t+4s+{0,1} and logical (2t+8, 2t+9) with 16t+4s+{2,3};
// A and B agree, so the dot product is unchanged. Consequences:
//   A regs for step s, row r: {x[r][16t+4s], x[r][16t+4s+1]} and {x[r][16t+4s+2], x[r][16t+4s+3]}
//     = words (2s) and (2s+1) of the thread's 32 contiguous bytes of row r;
//   B regs for step s: bytes 2s and 2s+1 of the thread's 8 weight bytes, each decoded to a pair.
template <typename Op>
__device__ __forceinline__ void decodeWeightWord(uint32_t w, uint32_t scale, uint32_t (&b)[4])
{
    uint32_t u, u4;
    Op::prepareWord(w, u, u4);
    b[0] = Op::template weightPair<0>(u, u4, scale);
    b[1] = Op::template weightPair<1>(u, u4, scale);
    b[2] = Op::template weightPair<2>(u, u4, scale);
    b[3] = Op::template weightPair<3>(u, u4, scale);
}

} // namespace detail
} // namespace nvfp4
