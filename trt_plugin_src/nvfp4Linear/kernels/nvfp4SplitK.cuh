// Device side of split-K (not part of the public API): the fixed-order sum of the fp32 partials
// [splits, M, N] and the arrival counter that lets the last CTA of an output tile do that sum
// inside the split kernel itself (no second launch).
//
// Ordering (the release/acquire pattern of CUTLASS's split-K semaphores): every thread stores its
// partials, the CTA meets at a barrier, then one thread fences at GPU scope and counts the CTA in
// with an atomic. The CTA that brings the count to `splits` fences again (acquire), meets its CTA
// at a barrier and reads the partials from L2 (ld.cg: never a stale L1 line); it also sets the
// counter back to zero, so the buffer is zero again after every launch that completes and the
// caller never clears it per call.
#pragma once

#include <cstdint>

namespace nvfp4
{
namespace detail
{

constexpr int kMaxSplitsSummed = 8; // >= every family's largest split count (static_asserts at the launchers)

// partial[0][idx] + partial[1][idx] + ... in split order, from 0.0f: the same bits whichever
// kernel sums (the reduction kernel or the last-arriving CTA). Every load is issued before the
// first add (one L2 round trip, not `splits`).
__device__ __forceinline__ float sumSplitPartials(float const* partial, int splits, int64_t splitStride, int64_t idx)
{
    float v[kMaxSplitsSummed];
#pragma unroll
    for (int s = 0; s < kMaxSplitsSummed; ++s)
    {
        v[s] = s < splits ? __ldcg(partial + s * splitStride + idx) : 0.0f;
    }
    float acc = 0.0f;
#pragma unroll
    for (int s = 0; s < kMaxSplitsSummed; ++s) // fixed order: deterministic
    {
        if (s < splits)
        {
            acc += v[s];
        }
    }
    return acc;
}

// Called by every thread of the CTA after its partial stores; true in the CTA whose arrival
// completes `counter` (all `splits` CTAs of this output tile have stored their partials), which
// then resets it. Contains __syncthreads: call it from uniform control flow.
__device__ __forceinline__ bool arriveLastSplit(uint32_t* counter, uint32_t splits)
{
    __shared__ bool last;
    __syncthreads();
    if (threadIdx.x == 0)
    {
        __threadfence(); // release: the CTA's partial stores (ordered by the barrier) before the arrival
        uint32_t const before = atomicAdd(counter, 1u);
        last = before == splits - 1;
        if (last)
        {
            __threadfence(); // acquire: the other splits' partials are read after their arrivals
            *counter = 0;    // every split has arrived: ready for the next launch
        }
    }
    __syncthreads();
    return last;
}

} // namespace detail
} // namespace nvfp4
