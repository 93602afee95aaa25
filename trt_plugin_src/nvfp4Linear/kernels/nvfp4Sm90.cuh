// Hopper (sm_90) building blocks of the warp-specialized wgmma kernel: shared-memory mbarriers,
// the TMA tile copy (cp.async.bulk.tensor) that completes on an mbarrier, warpgroup register
// reallocation and the wgmma ordering instructions. Compiled to nothing below sm_90 (the kernel
// that uses them only has a body in the sm_90a image).
#pragma once

#include <cuda.h>

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

// The same on 32-bit shared-memory addresses (smemAddr), for loops that keep them in registers.
__device__ __forceinline__ void mbarArriveAt(uint32_t bar)
{
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(bar) : "memory");
}

__device__ __forceinline__ void mbarWaitAt(uint32_t bar, uint32_t parity)
{
    uint32_t done = 0;
    do
    {
        asm volatile(
            "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
            : "=r"(done)
            : "r"(bar), "r"(parity)
            : "memory");
    } while (!done);
}

// Shared-memory loads at 32-bit addresses. Volatile: they stay after the barrier wait that makes
// the TMA's bytes visible (the wait is a volatile asm too).
__device__ __forceinline__ uint2 ldShared64(uint32_t addr)
{
    uint2 v;
    asm volatile("ld.shared.v2.u32 {%0, %1}, [%2];\n" : "=r"(v.x), "=r"(v.y) : "r"(addr));
    return v;
}

__device__ __forceinline__ uint4 ldShared128(uint32_t addr)
{
    uint4 v;
    asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];\n" : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w) : "r"(addr));
    return v;
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

// A loop-invariant value the compiler must keep in a register: it cannot see through the empty asm,
// so it neither recomputes the value inside the loop (it does for shared-memory addresses and
// thread-index arithmetic, at every stage) nor folds it into other expressions.
__device__ __forceinline__ uint32_t keepInRegister(uint32_t v)
{
    asm volatile("" : "+r"(v));
    return v;
}

__device__ __forceinline__ uint64_t keepInRegister(uint64_t v)
{
    asm volatile("" : "+l"(v));
    return v;
}

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
} // namespace detail
} // namespace nvfp4
