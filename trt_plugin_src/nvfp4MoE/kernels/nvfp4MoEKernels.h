// CUDA kernels of the NVFP4MoE op (docs/op-contract-moe.md): routing, grouping of the (token, slot)
// pairs by expert, the experts' NVFP4 linears (W4A4 activation quantization bit-exact to the
// contract) and the weighted combine. Used by the TensorRT plugin (NVFP4MoEPlugin.cpp) and, through
// the C API in nvfp4MoECApi.h, by Python tests and benchmarks. Depends on the CUDA runtime only.
//
// launchMoE never synchronises with the host and allocates nothing (how many tokens each expert
// gets is known only on the device), so it can be captured in a CUDA graph.
#pragma once

#include "nvfp4LinearKernels.h"

#include <cstddef>
#include <cstdint>
#include <cuda_runtime_api.h>

namespace nvfp4
{

// Limits of the CUDA kernels (the contract has none): launchMoE returns cudaErrorNotSupported
// beyond them, and the plugin refuses such a node when it is built.
constexpr int32_t kMoEMaxExperts = 4096; // the grouping keeps per-expert counts in shared memory
constexpr int32_t kMoEMaxTopK = 32;      // the routing keeps the selection in registers

struct MoEParams
{
    void const* x = nullptr;                  // [M, H] activation, ActType
    void const* routerLogits = nullptr;       // [M, E], ActType
    int8_t const* w13Weight = nullptr;        // [E, 2I, H/2] packed E2M1: gate rows, then up rows
    int8_t const* w13Scale = nullptr;         // [E, 2I, H/16] float8_e4m3fn bits
    float const* w13GlobalScale = nullptr;    // [E, 2I] dequant direction (device memory)
    int8_t const* w2Weight = nullptr;         // [E, H, I/2]
    int8_t const* w2Scale = nullptr;          // [E, H, I/16]
    float const* w2GlobalScale = nullptr;     // [E, H]
    void* y = nullptr;                        // [M, H], ActType
    int64_t M = 0;
    int32_t numExperts = 0, topK = 0;
    int64_t hiddenSize = 0, intermediateSize = 0; // H, I: multiples of 16
    bool w4a4 = true;
    bool normalizeTopk = true;
    // Per expert, in HOST memory (E values each; the attributes): s_in and G of the activation
    // entering gate/up (w13) and down (w2). Ignored for w4a16.
    float const* w13InputScale = nullptr;
    float const* w13InputScaleInv = nullptr;
    float const* w2InputScale = nullptr;
    float const* w2InputScaleInv = nullptr;
    ActType actType = ActType::kHALF;
    void* workspace = nullptr;                // moeWorkspaceSize(...) bytes, 256-byte aligned
    int32_t smVersion = 0;                    // e.g. 90; 0 = query the current device
};

// Bytes of scratch memory launchMoE needs for M tokens (covers any smaller M; 0 for M <= 0).
size_t moeWorkspaceSize(int64_t M, int32_t numExperts, int32_t topK, int64_t hiddenSize, int64_t intermediateSize,
    bool w4a4, ActType actType);

// y = NVFP4MoE(x, router_logits) as docs/op-contract-moe.md defines it. Returns
// cudaErrorInvalidValue on a bad argument, cudaErrorNotSupported beyond the limits above, else the
// status of the launches.
cudaError_t launchMoE(MoEParams const& p, cudaStream_t stream);

} // namespace nvfp4
