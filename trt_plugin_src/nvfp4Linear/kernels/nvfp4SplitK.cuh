// Device side of split-K (not part of the public API): the fixed-order sum of the fp32 partials
// [splits, M, N] and the arrival counter that lets the last CTA of an output tile do that sum
// inside the split kernel itself (no second launch).
//
// Ordering: every thread stores its partials, fences (__threadfence: its stores are visible
// device-wide before anything it does later), the CTA meets at a barrier, then one thread counts
// the CTA in with an atomic. The CTA that brings the count to `splits` saw every other split's
// fenced stores before their arrivals; it reads the partials from L2 (ld.cg: never a stale L1
// line) and sets the counter back to zero, so the buffer is zero again after every launch that
// completes and the caller never clears it per call.
#pragma once

#include <cstdint>

namespace nvfp4
{
namespace detail
{

// partial[0][idx] + partial[1][idx] + ... in split order, from 0.0f: the same bits whichever
// kernel sums (the reduction kernel or the last-arriving CTA).
__device__ __forceinline__ float sumSplitPartials(float const* partial, int splits, int64_t splitStride, int64_t idx)
{
    float acc = 0.0f;
    for (int s = 0; s < splits; ++s) // fixed order: deterministic
    {
        acc += __ldcg(partial + s * splitStride + idx);
    }
    return acc;
}

// Called by every thread of the CTA after its partial stores; true in the CTA whose arrival
// completes `counter` (all `splits` CTAs of this output tile have stored their partials), which
// then resets it. Contains __syncthreads: call it from uniform control flow.
__device__ __forceinline__ bool arriveLastSplit(uint32_t* counter, uint32_t splits)
{
    __shared__ bool last;
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0)
    {
        uint32_t const before = atomicAdd(counter, 1u);
        last = before == splits - 1;
        if (last)
        {
            __threadfence(); // the other splits' partials are read after their arrivals
            *counter = 0;    // every split has arrived: ready for the next launch
        }
    }
    __syncthreads();
    return last;
}

} // namespace detail
} // namespace nvfp4
