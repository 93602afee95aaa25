// Entry points of the NVFP4Linear kernels: argument checks, workspace layout and dispatch by
// compute capability and M (rules and measurements: docs/kernels.md).
#include "nvfp4DequantLayout.h"
#include "nvfp4Launch.cuh"
#include "nvfp4Tuning.h"

#include <algorithm>
#include <cmath>

namespace nvfp4
{
namespace detail
{

KernelPath& forcedPath()
{
    static KernelPath path = KernelPath::kAuto;
    return path;
}

size_t actOperandBytes(int64_t M, int64_t N, int64_t K, bool w4a4, ActType actType)
{
    // w4a4: x-hat for every path. w4a16: fp32 x runs on SIMT straight from x; fp16/bf16 x is moved
    // only for the wgmma kernel.
    int64_t const rows = w4a4 ? M : (actType == ActType::kFLOAT ? 0 : wgmmaPermutedW4a16Rows(M, N, K));
    return alignUp(static_cast<size_t>(rows) * static_cast<size_t>(K) * sizeof(__half), 256);
}

size_t partialBytes(int64_t M, int64_t N)
{
    // Largest splits * M' over every M' <= M (GEMV: M' <= 64; tiled: M' <= kMaxSplitM).
    int64_t const gemvRows = kMaxSplitsGemv * std::min<int64_t>(M, 64);
    int64_t const tiledRows = M > 16 ? kMaxSplitsTiled * std::min<int64_t>(M, kMaxSplitM) : 0;
    return alignUp(static_cast<size_t>(std::max(gemvRows, tiledRows)) * static_cast<size_t>(N) * sizeof(float), 256);
}

namespace
{

struct DeviceInfo
{
    int sm = 0;
    int smCount = 0;
};

cudaError_t queryDevice(DeviceInfo& info)
{
    int dev = 0;
    cudaError_t err = cudaGetDevice(&dev);
    int major = 0, minor = 0;
    if (err == cudaSuccess)
        err = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev);
    if (err == cudaSuccess)
        err = cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, dev);
    if (err == cudaSuccess)
        err = cudaDeviceGetAttribute(&info.smCount, cudaDevAttrMultiProcessorCount, dev);
    info.sm = major * 10 + minor;
    return err;
}

bool aligned(void const* p, size_t a)
{
    return reinterpret_cast<uintptr_t>(p) % a == 0;
}

bool positiveFinite(float v)
{
    return std::isfinite(v) && v > 0.0f;
}

// The cuBLASLt paths' workspaces are reserved only where they can run (the current device's sm).
int currentSm()
{
    DeviceInfo dev;
    return queryDevice(dev) == cudaSuccess ? dev.sm : 0;
}

// Whether the automatic dispatch wants the dequantize-then-GEMM path: large M, and weight slices wide
// enough for each slice's GEMM to fill the GPU (nvfp4Tuning.h).
bool dequantGemmWanted(int64_t M, int64_t N, int64_t K)
{
    int64_t const sliceRows = layout::dequantWorkspace(N, K, 0, tuning::kDequantSliceBytes, 0).sliceRows;
    return M >= tuning::kDequantGemmMinM && sliceRows >= std::min(N, tuning::kDequantMinSliceRows);
}

// Whether launchLinear may take the dequantize-then-GEMM path for some M' <= M.
bool dequantGemmMayRun(int64_t M, int64_t N, int64_t K, bool w4a4, ActType actType, int sm)
{
    bool const exactOperands = w4a4 || actType != ActType::kFLOAT;
    bool const wanted = forcedPath() == KernelPath::kDequantGemm
        || (forcedPath() == KernelPath::kAuto && dequantGemmWanted(M, N, K));
    return wanted && exactOperands && sm >= 80;
}

} // namespace
} // namespace detail

size_t workspaceSize(int64_t M, int64_t N, int64_t K, bool w4a4, ActType actType)
{
    if (M <= 0 || N <= 0 || K <= 0)
    {
        return 0;
    }
    size_t bytes = detail::actOperandBytes(M, N, K, w4a4, actType) + detail::partialBytes(M, N);
    // The cuBLASLt paths (or the kernels after a fallback) use the workspace from its start.
    int const sm = detail::currentSm();
    if (w4a4 && K % 64 == 0 && sm >= 100)
    {
        bytes = std::max(bytes, detail::nativeFp4WorkspaceBytes(M, N, K));
    }
    if (detail::dequantGemmMayRun(M, N, K, w4a4, actType, sm))
    {
        bytes = std::max(bytes, detail::dequantGemmWorkspaceBytes(M, N, K, w4a4));
    }
    return bytes;
}

cudaError_t launchLinear(LinearParams const& p, cudaStream_t stream)
{
    using namespace detail;
    if (p.M < 0 || p.N <= 0 || p.K <= 0 || p.K % 16 != 0)
    {
        return cudaErrorInvalidValue;
    }
    if (p.actType != ActType::kFLOAT && p.actType != ActType::kHALF && p.actType != ActType::kBF16)
    {
        return cudaErrorInvalidValue;
    }
    if (p.weightGlobalScaleLen != 1 && p.weightGlobalScaleLen != p.N)
    {
        return cudaErrorInvalidValue;
    }
    if (p.w4a4 && !(positiveFinite(p.inputGlobalScale) && positiveFinite(p.inputGlobalScaleInv)))
    {
        return cudaErrorInvalidValue;
    }
    if (p.M == 0)
    {
        return cudaSuccess;
    }
    if (p.x == nullptr || p.weight == nullptr || p.weightScale == nullptr || p.weightGlobalScale == nullptr
        || p.y == nullptr)
    {
        return cudaErrorInvalidValue;
    }
    if (p.workspace == nullptr || !aligned(p.workspace, 256))
    {
        return cudaErrorInvalidValue;
    }

    DeviceInfo dev;
    cudaError_t err = queryDevice(dev);
    if (err != cudaSuccess)
    {
        return err;
    }
    int const sm = p.smVersion > 0 ? p.smVersion : dev.sm;
    bool const gemvRange = p.M <= 16 || (p.M <= tuning::kDispatchNoWgmma.gemvMaxM && p.M <= gemvMaxM(p.K));

    // Blackwell w4a4 above the GEMV range (decode stays memory-bound): the native block-scaled FP4
    // GEMM, which quantizes the activation itself. If it cannot run (no cuBLASLt, no algorithm),
    // the automatic dispatch continues with the 16-bit kernels (nativeFp4Status() says why).
    KernelPath const forced = forcedPath();
    bool const nativeAuto = forced == KernelPath::kAuto && p.w4a4 && sm >= 100 && !gemvRange;
    if (forced == KernelPath::kNativeFp4 || nativeAuto)
    {
        err = launchNativeFp4(p, sm, stream);
        if (!(nativeAuto && err == cudaErrorNotSupported))
        {
            return err;
        }
    }

    // Large M: the weights decoded once per call into 16-bit slices, multiplied by cuBLASLt (which
    // outruns the fused-decode kernels there). If it cannot run, the automatic dispatch continues
    // with those kernels (dequantGemmStatus() says why).
    bool const dequantAuto = forced == KernelPath::kAuto && dequantGemmMayRun(p.M, p.N, p.K, p.w4a4, p.actType, sm);
    if (forced == KernelPath::kDequantGemm || dequantAuto)
    {
        err = launchDequantGemm(p, sm, stream);
        if (!(dequantAuto && err == cudaErrorNotSupported))
        {
            return err;
        }
    }

    // The 16-bit activation operand: x-hat (w4a4, quantized below into the workspace), x, or for the
    // wgmma kernel at w4a16 x moved into that kernel's K order in the workspace (below).
    void const* a = p.w4a4 ? p.workspace : p.x;

    // Tensor-core paths: exact 16-bit operands (x-hat, or fp16/bf16 x), whole 64-element K chunks,
    // 16-byte aligned rows (K % 64 == 0 makes every weight/scale/activation row aligned).
    bool const exactOperands = p.w4a4 || p.actType != ActType::kFLOAT;
    bool const mmaOk = sm >= 80 && exactOperands && p.K % 64 == 0 && aligned(a, 16) && aligned(p.weight, 16)
        && aligned(p.weightScale, 16);
    bool const bf16Operand = !p.w4a4 && p.actType == ActType::kBF16;

    // wgmma needs the sm_90a image (built by default); Blackwell and Ada/Ampere use mma.sync.
    bool const wgmmaOk = mmaOk && sm == 90 && wgmmaSupports(p);
    bool const gemvOk = mmaOk && p.M <= gemvMaxM(p.K);
    KernelPath path = forced;
    if (path == KernelPath::kAuto)
    {
        // On Hopper the wgmma kernel takes over from an M that falls with the weight's size.
        bool const gemv = gemvRange && (!wgmmaOk || p.M < tuning::hopperWgmmaFromM(p.N, p.K));
        path = !mmaOk ? KernelPath::kSimt
                      : (gemv ? KernelPath::kGemv : (wgmmaOk ? KernelPath::kWgmma : KernelPath::kTiled));
    }
    // The path is fixed before quantizing: the wgmma kernel and the wide GEMV take x-hat in their orders.
    bool const runnable = path == KernelPath::kSimt || (path == KernelPath::kGemv && gemvOk)
        || (path == KernelPath::kTiled && mmaOk) || (path == KernelPath::kWgmma && wgmmaOk);
    if (!runnable)
    {
        return cudaErrorNotSupported;
    }
    // w4a16 on the wgmma kernel: x moved into its K order where that pays, which gives each lane one
    // FP8 block's contiguous weight bytes (fewer consumer instructions than gathering them).
    bool const permuteW4a16 = !p.w4a4 && path == KernelPath::kWgmma && wgmmaPermutesW4a16(p);
    if (p.w4a4 || permuteW4a16)
    {
        ActOrder const order = path == KernelPath::kWgmma
            ? ActOrder::kWgmma
            : (path == KernelPath::kGemv && gemvReadsActivationPairs(p) ? ActOrder::kGemvPairs : ActOrder::kNatural);
        err = p.w4a4 ? launchQuantizeActivation(p.x, p.actType, p.M, p.K, p.inputGlobalScaleInv,
                  static_cast<__half*>(p.workspace), nullptr, order, stream)
                     : launchPermuteActivation(p.x, p.actType, p.M, p.K, p.workspace, stream);
        if (err != cudaSuccess)
        {
            return err;
        }
        a = p.workspace;
    }
    switch (path)
    {
    case KernelPath::kSimt: return launchSimt(p, a, p.w4a4, stream);
    // On sm_90+ the GEMV starts streaming weights while the quantization kernel still runs.
    case KernelPath::kGemv: return launchGemv(p, a, bf16Operand, dev.smCount, p.w4a4 && sm >= 90, stream);
    case KernelPath::kTiled: return launchTiled(p, a, bf16Operand, dev.smCount, stream);
    case KernelPath::kWgmma:
        return launchWgmma(p, a, bf16Operand, p.w4a4 || permuteW4a16, dev.smCount, p.w4a4 || permuteW4a16, stream);
    default: return cudaErrorInvalidValue;
    }
}

} // namespace nvfp4
