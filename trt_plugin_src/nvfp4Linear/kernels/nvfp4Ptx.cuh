// PTX primitives of the NVFP4Linear CUDA kernels below Hopper's own (those are in nvfp4Sm90.cuh):
// cp.async copies (sm_80+) and the device side of programmatic dependent launch (sm_90+). Each
// compiles to a plain fallback or to nothing where the instruction does not exist.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace nvfp4
{
namespace detail
{

// ---------------------------------------------------------------------------------------------
// cp.async (sm_80+): 16- and 4-byte copies global -> shared; `valid` false zero-fills.

// Below sm_80 (where these kernels are never dispatched) plain copies keep the code compiling.
__device__ __forceinline__ void cpAsync16(void* smem, void const* gmem, bool valid)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    uint32_t const s = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
    int const n = valid ? 16 : 0; // 0: zero-fill
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(s), "l"(gmem), "r"(n));
#else
    *static_cast<uint4*>(smem) = valid ? *static_cast<uint4 const*>(gmem) : make_uint4(0, 0, 0, 0);
#endif
}

__device__ __forceinline__ void cpAsync4(void* smem, void const* gmem, bool valid)
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    uint32_t const s = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
    int const n = valid ? 4 : 0;
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(s), "l"(gmem), "r"(n));
#else
    *static_cast<uint32_t*>(smem) = valid ? *static_cast<uint32_t const*>(gmem) : 0u;
#endif
}

__device__ __forceinline__ void cpAsyncCommit()
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("cp.async.commit_group;\n" ::);
#endif
}

template <int N>
__device__ __forceinline__ void cpAsyncWait()
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
#endif
}

// Programmatic dependent launch (sm_90+): wait until the preceding kernel in the stream (launched
// with the PDL attribute on this one) has finished and its writes are visible. A no-op otherwise.
__device__ __forceinline__ void waitPrimaryGrid()
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
}

// waitPrimaryGrid() that stays after the loads issued before it. ptxas (CUDA 13) schedules a bare
// griddepcontrol.wait ahead of independent loads in its basic block, so a kernel's weight prefetch
// would wait for the preceding kernel. It does not move the wait out of a loop; this one runs
// gridDim.z times, once for the 2-D grids that use it (a repeated wait returns at once).
__device__ __forceinline__ void waitPrimaryGridAfterIssuedLoads()
{
#pragma unroll 1
    for (unsigned r = 0; r < gridDim.z; ++r)
    {
        waitPrimaryGrid();
    }
}

// Let the next kernel (if launched with the PDL attribute) start now; it still waits in
// waitPrimaryGrid() for this grid to complete.
__device__ __forceinline__ void allowDependentLaunch()
{
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
#endif
}


} // namespace detail
} // namespace nvfp4
