// Hopper (sm_90) building blocks of the TMA-fed kernels (wgmma, GEMV): shared-memory mbarriers,
// the TMA tile copy (cp.async.bulk.tensor) that completes on an mbarrier, warpgroup register
// reallocation and the wgmma ordering instructions. Compiled to nothing below sm_90 (the kernel
// that uses them only has a body in the sm_90a image).
#pragma once

#include <cuda.h>
#include <cudaTypedefs.h>
#include <cuda_runtime.h>

#include <cstdint>

namespace nvfp4
{
namespace detail
{
namespace sm90
{

__device__ __forceinline__ uint32_t smemAddr(void const* p)
{
    return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900

__device__ __forceinline__ void mbarInit(uint64_t* bar, uint32_t count)
{
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smemAddr(bar)), "r"(count) : "memory");
}

// Makes the initialized barriers visible to the async proxy (TMA) before first use.
__device__ __forceinline__ void mbarInitFence()
{
    asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
}

__device__ __forceinline__ void mbarArrive(uint64_t* bar)
{
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(smemAddr(bar)) : "memory");
}

// Adds one to a shared counter and returns its previous value (acquire-release in the CTA: what
// the arriving threads read before is ordered before what the last one does after).
__device__ __forceinline__ uint32_t arriveCount(uint32_t* counter)
{
    uint32_t old;
    asm volatile("atom.acq_rel.cta.shared::cta.add.u32 %0, [%1], 1;\n" : "=r"(old) : "r"(smemAddr(counter)) : "memory");
    return old;
}

// Orders this thread's (and what it acquired of other threads') shared-memory accesses before
// later TMA (async proxy) accesses, e.g. before a TMA overwrites a buffer that was just read.
__device__ __forceinline__ void fenceProxyAsync()
{
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}

// One arrival that also announces `bytes` of TMA data to come on this barrier's phase.
__device__ __forceinline__ void mbarArriveExpectTx(uint64_t* bar, uint32_t bytes)
{
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(smemAddr(bar)), "r"(bytes)
                 : "memory");
}

// Spins until the phase with this parity has completed.
__device__ __forceinline__ void mbarWait(uint64_t* bar, uint32_t parity)
{
    uint32_t done = 0;
    do
    {
        asm volatile(
            "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
            : "=r"(done)
            : "r"(smemAddr(bar)), "r"(parity)
            : "memory");
    } while (!done);
}

// 2-D tile (box of the tensor map) at element coordinates (c0 innermost, c1) into shared memory;
// out-of-bounds elements are zero-filled and still count toward the barrier's byte total.
__device__ __forceinline__ void tmaLoad2d(void* dst, CUtensorMap const* map, int32_t c0, int32_t c1, uint64_t* bar)
{
    asm volatile(
        "cp.async.bulk.tensor.2d.shared::cluster.global.tile.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];\n" ::"r"(
            smemAddr(dst)),
        "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(smemAddr(bar))
        : "memory");
}

template <int Regs>
__device__ __forceinline__ void regAlloc()
{
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(Regs));
}

template <int Regs>
__device__ __forceinline__ void regDealloc()
{
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(Regs));
}

__device__ __forceinline__ void wgmmaFence()
{
    asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
}

__device__ __forceinline__ void wgmmaCommit()
{
    asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
}

template <int N>
__device__ __forceinline__ void wgmmaWait()
{
    asm volatile("wgmma.wait_group.sync.aligned %0;\n" ::"n"(N) : "memory");
}

#endif

// Pins registers that an in-flight wgmma reads or writes: the compiler may neither move their
// values across this point nor reuse them before it.
template <int R>
__device__ __forceinline__ void fenceRegs(float (&d)[R])
{
#pragma unroll
    for (int i = 0; i < R; ++i)
    {
        asm volatile("" : "+f"(d[i])::"memory");
    }
}

template <int R>
__device__ __forceinline__ void fenceRegs(uint32_t (&d)[R][4])
{
#pragma unroll
    for (int i = 0; i < R; ++i)
    {
#pragma unroll
        for (int j = 0; j < 4; ++j)
        {
            asm volatile("" : "+r"(d[i][j])::"memory");
        }
    }
}

// Shared-memory matrix descriptor of a K-major operand with the 128-byte swizzle (rows of 64
// 16-bit elements, 8-row groups 1024 bytes apart); the tile base must be 1024-byte aligned, a
// k16 step inside the row adds 32 bytes to the start address.
__device__ __forceinline__ uint64_t smemDescSw128(uint32_t addr)
{
    uint64_t d = static_cast<uint64_t>((addr & 0x3FFFFu) >> 4);
    d |= static_cast<uint64_t>(1024 >> 4) << 32; // stride byte offset (leading offset unused here)
    d |= static_cast<uint64_t>(1) << 62;         // 128-byte swizzle
    return d;
}

} // namespace sm90

// Host side: tensor maps of the TMA copies above.

// cuTensorMapEncodeTiled through the runtime's driver entry point (the library does not link libcuda).
inline PFN_cuTensorMapEncodeTiled_v12000 tensorMapEncoder()
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
inline bool encode2d(CUtensorMap& map, CUtensorMapDataType type, int elemBytes, void const* base, int64_t rows, int64_t cols,
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

} // namespace detail
} // namespace nvfp4
