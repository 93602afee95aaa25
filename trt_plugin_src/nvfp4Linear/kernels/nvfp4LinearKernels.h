// CUDA kernels of the NVFP4Linear op (docs/op-contract.md): dynamic NVFP4 quantization of the
// activation and the GEMM with FP4 weights, FP8 block scales and global scales.
// Used by the TensorRT plugin (NVFP4LinearPlugin.cpp) and, through the C API in
// nvfp4KernelsCApi.h, by Python tests and benchmarks. Depends on the CUDA runtime only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cuda_runtime_api.h>

namespace nvfp4
{

enum class ActType : int32_t
{
    kFLOAT = 0,
    kHALF = 1,
    kBF16 = 2,
};

// Whether an act_type of the C APIs (an int) names an ActType.
constexpr bool isActType(int32_t value)
{
    return value >= static_cast<int32_t>(ActType::kFLOAT) && value <= static_cast<int32_t>(ActType::kBF16);
}

struct LinearParams
{
    void const* x = nullptr;            // [M, K] activation, ActType
    int8_t const* weight = nullptr;     // [N, K/2] packed E2M1, element 2j in the low nibble
    int8_t const* weightScale = nullptr; // [N, K/16] float8_e4m3fn bits
    float const* weightGlobalScale = nullptr; // [1] or [N], dequant direction (device memory)
    int32_t weightGlobalScaleLen = 1;   // 1 or N
    void const* bias = nullptr;         // [N] ActType, or nullptr
    void* y = nullptr;                  // [M, N] ActType
    int64_t M = 0, N = 0, K = 0;        // K % 16 == 0
    bool w4a4 = true;                   // false: W4A16 (weight-only)
    float inputGlobalScale = 1.f;       // dequant direction (alpha = this * weightGlobalScale)
    float inputGlobalScaleInv = 1.f;    // G, quant direction
    ActType actType = ActType::kHALF;
    void* workspace = nullptr;          // at least workspaceSize(M, N, K, w4a4, actType) bytes, 256-byte aligned
    int32_t smVersion = 0;              // e.g. 90; 0 = query the current device
};

// Bytes of scratch memory launchLinear needs for this problem (0 allowed). Covers any smaller M (and
// the family a test pinned with nvfp4_force_kernel, so ask after pinning).
size_t workspaceSize(int64_t M, int64_t N, int64_t K, bool w4a4, ActType actType);

// y = NVFP4Linear(x) as docs/op-contract.md defines it. Picks the kernel by compute capability and M.
// Returns cudaErrorInvalidValue on a bad argument, else the launch status.
cudaError_t launchLinear(LinearParams const& p, cudaStream_t stream);

// Why the native block-scaled FP4 path (Blackwell, cuBLASLt) could not run the first time it was
// tried and launchLinear fell back to the 16-bit tensor-core kernels; nullptr if it never failed.
char const* nativeFp4Status();

// The same for the dequantize-then-GEMM path (large M on sm >= 80, cuBLASLt), after which
// launchLinear fell back to the fused-decode kernels; nullptr if it never failed.
char const* dequantGemmStatus();

} // namespace nvfp4
