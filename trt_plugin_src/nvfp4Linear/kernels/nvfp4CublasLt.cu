// The GEMMs delegated to cuBLASLt, both computing
//   y^T[N, M] = alpha[n] * (W[N, K] . A[M, K]^T) (+ bias[n]),  both operands K-major ("TN");
// in cuBLASLt's column-major terms A = W (K x N, op T), B = the activation (K x M, op N), D = y (N x M, ld N).
//  * Native block-scaled FP4 for Blackwell (sm_100 / sm_120), w4a4 only: W = the contract's packed
//    E2M1 weight as is, the activation quantized by quantizeActivationFp4Kernel, block scales in
//    cuBLASLt's tiled UE4M3 layout (nvfp4Fp4Pack.cu). COMPILE-CHECKED ONLY: no Blackwell GPU was
//    available (docs/kernels.md).
//  * Dequantize-then-GEMM (sm >= 80, large M): W = w' = ŵ * 2^-7 decoded per call into 16-bit slices
//    (nvfp4Dequant.cu, layout nvfp4DequantLayout.h), the activation x-hat (w4a4) or x (w4a16) in the
//    same 16-bit type, fp32 accumulation: the exact products of the other tensor-core paths, summed
//    in cuBLAS's order; alpha carries the 2^7 back.
//
// libcublasLt.so.13 is opened with dlopen at first use (the kernels library and the plugin have no
// link dependency on cuBLAS); the header only supplies the types. Built only where CMake found
// cublasLt.h (NVFP4_HAVE_CUBLASLT); otherwise both paths report themselves unavailable.
#include "nvfp4DequantLayout.h"
#include "nvfp4Launch.cuh"
#include "nvfp4Numerics.cuh"
#include "nvfp4Tuning.h"
#include "nvfp4ScaleLayout.h"

#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>

#if defined(NVFP4_HAVE_CUBLASLT)
#include <cublasLt.h>
#include <dlfcn.h>

#include <map>
#include <tuple>
#endif

namespace nvfp4
{
namespace detail
{
namespace
{

#if defined(NVFP4_HAVE_CUBLASLT)
// cuBLASLt's own scratch space (split-K etc.); the cuBLAS documentation recommends 32 MiB on Hopper and newer.
constexpr size_t kLtWorkspaceBytes = size_t{32} << 20;

// Workspace layout of the path, every region 256-byte aligned.
struct Fp4Workspace
{
    size_t packedX, scalesX, scalesW, alpha, lt, total;
};

Fp4Workspace fp4WorkspaceLayout(int64_t M, int64_t N, int64_t K)
{
    Fp4Workspace w;
    int64_t const kBlocks = K / 16;
    w.packedX = 0;
    w.scalesX = w.packedX + alignUp(static_cast<size_t>(M) * static_cast<size_t>(K / 2), 256);
    w.scalesW = w.scalesX + alignUp(static_cast<size_t>(layout::swizzledScaleBytes(M, kBlocks)), 256);
    w.alpha = w.scalesW + alignUp(static_cast<size_t>(layout::swizzledScaleBytes(N, kBlocks)), 256);
    w.lt = w.alpha + alignUp(static_cast<size_t>(N + 1) * sizeof(float), 256);
    w.total = w.lt + kLtWorkspaceBytes;
    return w;
}
#endif

// First reason a path could not run (nativeFp4Status() / dequantGemmStatus()). The dequantize path
// records only what it should have run and could not (library, device, cuBLASLt's algorithms), not
// problems outside its rules, so that the plugin's one warning names a real cause.
struct PathStatus
{
    std::mutex mutex;
    std::string why;

    cudaError_t unavailable(std::string const& reason)
    {
        std::lock_guard<std::mutex> lock(mutex);
        if (why.empty())
        {
            why = reason; // set once, so that the pointer get() hands out stays valid
        }
        return cudaErrorNotSupported;
    }
    char const* get()
    {
        std::lock_guard<std::mutex> lock(mutex);
        return why.empty() ? nullptr : why.c_str();
    }
};
PathStatus gNativeStatus;
PathStatus gDequantStatus;

#if defined(NVFP4_HAVE_CUBLASLT)

// The cuBLASLt entry points this path uses, resolved from the shared library.
struct LtApi
{
    decltype(&cublasLtCreate) create = nullptr;
    decltype(&cublasLtGetVersion) getVersion = nullptr;
    decltype(&cublasLtMatmulDescCreate) descCreate = nullptr;
    decltype(&cublasLtMatmulDescDestroy) descDestroy = nullptr;
    decltype(&cublasLtMatmulDescSetAttribute) descSet = nullptr;
    decltype(&cublasLtMatrixLayoutCreate) layoutCreate = nullptr;
    decltype(&cublasLtMatrixLayoutDestroy) layoutDestroy = nullptr;
    decltype(&cublasLtMatmulPreferenceCreate) prefCreate = nullptr;
    decltype(&cublasLtMatmulPreferenceDestroy) prefDestroy = nullptr;
    decltype(&cublasLtMatmulPreferenceSetAttribute) prefSet = nullptr;
    decltype(&cublasLtMatmulAlgoGetHeuristic) heuristic = nullptr;
    decltype(&cublasLtMatmulAlgoCapGetAttribute) algoCap = nullptr;
    decltype(&cublasLtMatmul) matmul = nullptr;
    size_t version = 0;
    cublasLtHandle_t handle = nullptr;
    std::string error; // empty when usable
};

template <typename F>
bool resolve(void* lib, char const* name, F& fn, std::string& error)
{
    fn = reinterpret_cast<F>(dlsym(lib, name));
    if (fn == nullptr && error.empty())
    {
        error = std::string("symbol ") + name + " missing in libcublasLt";
    }
    return fn != nullptr;
}

LtApi loadLtApi()
{
    LtApi api;
    char const* env = std::getenv("NVFP4_CUBLASLT_LIB");
    char const* name = (env != nullptr && env[0] != '\0') ? env : "libcublasLt.so.13";
    // Never closed: the handle and the resolved functions live for the process.
    void* lib = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (lib == nullptr)
    {
        char const* err = dlerror();
        api.error = std::string("cannot load ") + name + " (" + (err != nullptr ? err : "?")
            + "); set NVFP4_CUBLASLT_LIB or LD_LIBRARY_PATH";
        return api;
    }
    std::string& e = api.error;
    resolve(lib, "cublasLtCreate", api.create, e);
    resolve(lib, "cublasLtGetVersion", api.getVersion, e);
    resolve(lib, "cublasLtMatmulDescCreate", api.descCreate, e);
    resolve(lib, "cublasLtMatmulDescDestroy", api.descDestroy, e);
    resolve(lib, "cublasLtMatmulDescSetAttribute", api.descSet, e);
    resolve(lib, "cublasLtMatrixLayoutCreate", api.layoutCreate, e);
    resolve(lib, "cublasLtMatrixLayoutDestroy", api.layoutDestroy, e);
    resolve(lib, "cublasLtMatmulPreferenceCreate", api.prefCreate, e);
    resolve(lib, "cublasLtMatmulPreferenceDestroy", api.prefDestroy, e);
    resolve(lib, "cublasLtMatmulPreferenceSetAttribute", api.prefSet, e);
    resolve(lib, "cublasLtMatmulAlgoGetHeuristic", api.heuristic, e);
    resolve(lib, "cublasLtMatmulAlgoCapGetAttribute", api.algoCap, e);
    resolve(lib, "cublasLtMatmul", api.matmul, e);
    if (!e.empty())
    {
        return api;
    }
    api.version = api.getVersion();
    cublasStatus_t const st = api.create(&api.handle);
    if (st != CUBLAS_STATUS_SUCCESS)
    {
        e = "cublasLtCreate failed with status " + std::to_string(static_cast<int>(st));
    }
    return api;
}

LtApi const& ltApi()
{
    static LtApi const api = loadLtApi(); // thread-safe one-time initialization
    return api;
}

cudaDataType_t outputType(ActType t)
{
    return t == ActType::kFLOAT ? CUDA_R_32F : (t == ActType::kHALF ? CUDA_R_16F : CUDA_R_16BF);
}

// The cuBLASLt descriptors of one problem (buildDescs), destroyed with it.
struct LtDescs
{
    LtApi const& api;
    cublasLtMatmulDesc_t op = nullptr;
    cublasLtMatrixLayout_t a = nullptr, b = nullptr, d = nullptr;
    explicit LtDescs(LtApi const& api_) : api(api_) {}
    ~LtDescs()
    {
        if (d) api.layoutDestroy(d);
        if (b) api.layoutDestroy(b);
        if (a) api.layoutDestroy(a);
        if (op) api.descDestroy(op);
    }
    LtDescs(LtDescs const&) = delete;
    LtDescs& operator=(LtDescs const&) = delete;
};

// The operands of a problem: the native path's FP4, or the dequantize path's 16-bit type.
enum class Operands : int32_t
{
    kFp4,
    kHalf,
    kBf16,
};

// What the heuristic's answer depends on: the shapes, D's leading dimension (the whole y's row length
// when D is a slice), the types, the epilogue, the pointer mode and the device.
struct ProblemKey
{
    int64_t M, N, K, ldD;
    int32_t actType;
    bool bias, vectorAlpha;
    Operands operands;
    int device;
    auto tie() const { return std::tie(M, N, K, ldD, actType, bias, vectorAlpha, operands, device); }
    bool operator<(ProblemKey const& o) const { return tie() < o.tie(); }
};

template <typename T>
cublasStatus_t setDesc(LtDescs& ds, cublasLtMatmulDescAttributes_t attr, T const& value)
{
    return ds.api.descSet(ds.op, attr, &value, sizeof(value));
}

// Descriptors of one problem ("TN": A = W, K x N, op T; B = the activation, K x M, op N; D = y, N x M
// with leading dimension key.ldD). FP4 operands take their block scales (cuBLASLt's tiled UE4M3
// layout) from scaleW / scaleX.
cublasStatus_t buildDescs(LtDescs& ds, ProblemKey const& key, void const* bias,
    void const* scaleW = nullptr, void const* scaleX = nullptr)
{
    LtApi const& api = ds.api;
    cublasStatus_t st = api.descCreate(&ds.op, CUBLAS_COMPUTE_32F, CUDA_R_32F);
    int32_t const opT = CUBLAS_OP_T, opN = CUBLAS_OP_N;
    // Per-row alpha (weight_global_scale of N entries) is a device vector over D's rows (= N);
    // a scalar alpha is read from device memory (it is formed on the device from weight_global_scale).
    int32_t const pointerMode
        = key.vectorAlpha ? CUBLASLT_POINTER_MODE_ALPHA_DEVICE_VECTOR_BETA_ZERO : CUBLASLT_POINTER_MODE_DEVICE;
    uint32_t const epilogue = key.bias ? CUBLASLT_EPILOGUE_BIAS : CUBLASLT_EPILOGUE_DEFAULT;
    int32_t const dType = outputType(static_cast<ActType>(key.actType));
    cudaDataType_t const abType = key.operands == Operands::kFp4 ? CUDA_R_4F_E2M1
        : key.operands == Operands::kBf16                        ? CUDA_R_16BF
                                                                 : CUDA_R_16F;
    if (st == CUBLAS_STATUS_SUCCESS) st = setDesc(ds, CUBLASLT_MATMUL_DESC_TRANSA, opT);
    if (st == CUBLAS_STATUS_SUCCESS) st = setDesc(ds, CUBLASLT_MATMUL_DESC_TRANSB, opN);
    if (key.operands == Operands::kFp4)
    {
        int32_t const scaleMode = CUBLASLT_MATMUL_MATRIX_SCALE_VEC16_UE4M3;
        if (st == CUBLAS_STATUS_SUCCESS) st = setDesc(ds, CUBLASLT_MATMUL_DESC_A_SCALE_MODE, scaleMode);
        if (st == CUBLAS_STATUS_SUCCESS) st = setDesc(ds, CUBLASLT_MATMUL_DESC_B_SCALE_MODE, scaleMode);
        if (st == CUBLAS_STATUS_SUCCESS) st = setDesc(ds, CUBLASLT_MATMUL_DESC_A_SCALE_POINTER, scaleW);
        if (st == CUBLAS_STATUS_SUCCESS) st = setDesc(ds, CUBLASLT_MATMUL_DESC_B_SCALE_POINTER, scaleX);
    }
    if (st == CUBLAS_STATUS_SUCCESS) st = setDesc(ds, CUBLASLT_MATMUL_DESC_POINTER_MODE, pointerMode);
    if (st == CUBLAS_STATUS_SUCCESS) st = setDesc(ds, CUBLASLT_MATMUL_DESC_EPILOGUE, epilogue);
    if (key.bias)
    {
        if (st == CUBLAS_STATUS_SUCCESS) st = setDesc(ds, CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE, dType);
        if (st == CUBLAS_STATUS_SUCCESS) st = setDesc(ds, CUBLASLT_MATMUL_DESC_BIAS_POINTER, bias);
    }
    // Leading dimensions in elements (FP4 values for FP4 operands).
    if (st == CUBLAS_STATUS_SUCCESS) st = api.layoutCreate(&ds.a, abType, key.K, key.N, key.K);
    if (st == CUBLAS_STATUS_SUCCESS) st = api.layoutCreate(&ds.b, abType, key.K, key.M, key.K);
    if (st == CUBLAS_STATUS_SUCCESS)
        st = api.layoutCreate(&ds.d, static_cast<cudaDataType_t>(dType), key.N, key.M, key.ldD);
    return st;
}

// Best heuristic algorithm that supports the pointer mode, cached per problem (nullopt-like: ok = false).
struct CachedAlgo
{
    bool ok = false;
    cublasLtMatmulAlgo_t algo{};
    std::string why;
};

CachedAlgo findAlgo(LtDescs& ds, ProblemKey const& key)
{
    CachedAlgo r;
    LtApi const& api = ds.api;
    cublasLtMatmulPreference_t pref = nullptr;
    cublasStatus_t st = api.prefCreate(&pref);
    size_t const wsBytes = kLtWorkspaceBytes;
    if (st == CUBLAS_STATUS_SUCCESS)
        st = api.prefSet(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &wsBytes, sizeof(wsBytes));
    // Split-K partial sums in fp32 only (the compute type): the in-place and output-type schemes
    // would round them to a 16-bit output type before the epilogue.
    uint32_t const reductions = CUBLASLT_REDUCTION_SCHEME_COMPUTE_TYPE;
    if (st == CUBLAS_STATUS_SUCCESS)
        st = api.prefSet(pref, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK, &reductions, sizeof(reductions));
    // The heuristic assumes 256-byte aligned operands unless told otherwise; the user's x, y and bias
    // (and y's column offset of a slice) are only checked 16-byte aligned.
    uint32_t const alignment = 16;
    for (cublasLtMatmulPreferenceAttributes_t attr : {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES,
             CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES,
             CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES})
    {
        if (st == CUBLAS_STATUS_SUCCESS)
            st = api.prefSet(pref, attr, &alignment, sizeof(alignment));
    }
    constexpr int kRequested = 8;
    cublasLtMatmulHeuristicResult_t results[kRequested] = {};
    int found = 0;
    if (st == CUBLAS_STATUS_SUCCESS)
        st = api.heuristic(api.handle, ds.op, ds.a, ds.b, ds.d, ds.d, pref, kRequested, results, &found);
    if (pref)
        api.prefDestroy(pref);
    if (st != CUBLAS_STATUS_SUCCESS || found == 0)
    {
        r.why = std::string("cuBLASLt has no ") + (key.operands == Operands::kFp4 ? "block-scaled FP4" : "16-bit")
            + " algorithm for this problem/device (heuristic status "
            + std::to_string(static_cast<int>(st)) + ", " + std::to_string(found) + " results)";
        return r;
    }
    uint32_t const wanted = key.vectorAlpha ? CUBLASLT_POINTER_MODE_MASK_ALPHA_DEVICE_VECTOR_BETA_ZERO
                                            : CUBLASLT_POINTER_MODE_MASK_DEVICE;
    for (int i = 0; i < found; ++i)
    {
        uint32_t mask = 0;
        size_t written = 0;
        if (results[i].state == CUBLAS_STATUS_SUCCESS
            && api.algoCap(&results[i].algo, CUBLASLT_ALGO_CAP_POINTER_MODE_MASK, &mask, sizeof(mask), &written)
                == CUBLAS_STATUS_SUCCESS
            && (mask & wanted) != 0)
        {
            r.ok = true;
            r.algo = results[i].algo;
            return r;
        }
    }
    r.why = std::string("no cuBLASLt algorithm supports the ")
        + (key.vectorAlpha ? "per-row alpha vector" : "device scalar alpha") + " pointer mode";
    return r;
}

std::mutex gAlgoMutex;
std::map<ProblemKey, CachedAlgo> gAlgoCache;

CachedAlgo cachedAlgo(LtDescs& ds, ProblemKey const& key)
{
    std::lock_guard<std::mutex> lock(gAlgoMutex);
    auto it = gAlgoCache.find(key);
    if (it == gAlgoCache.end())
    {
        it = gAlgoCache.emplace(key, findAlgo(ds, key)).first;
    }
    return it->second;
}

cudaError_t toCuda(cublasStatus_t st)
{
    switch (st)
    {
    case CUBLAS_STATUS_SUCCESS: return cudaSuccess;
    case CUBLAS_STATUS_NOT_SUPPORTED: return cudaErrorNotSupported;
    case CUBLAS_STATUS_INVALID_VALUE: return cudaErrorInvalidValue;
    default: return cudaErrorUnknown;
    }
}

// A failure once kernels of the call are launched is an error, not a refusal: cudaErrorNotSupported
// would make launchLinear run the whole call again on the fused kernels.
cudaError_t afterLaunch(cudaError_t err)
{
    return err == cudaErrorNotSupported ? cudaErrorUnknown : err;
}

int currentDevice()
{
    int dev = -1;
    return cudaGetDevice(&dev) == cudaSuccess ? dev : -1;
}

#endif // NVFP4_HAVE_CUBLASLT

bool aligned16(void const* p)
{
    return reinterpret_cast<uintptr_t>(p) % 16 == 0;
}

// Shape/alignment conditions of the native path (independent of the device): K in whole 64-element
// groups (4 scale columns), 16-byte rows of y (N % 8) and 16-byte aligned user buffers.
char const* fp4Unsupported(LinearParams const& p)
{
    if (!p.w4a4)
        return "w4a16 has no FP4 activation operand";
    if (p.K % 64 != 0)
        return "K % 64 != 0";
    if (p.N % 8 != 0)
        return "N % 8 != 0";
    if (!aligned16(p.weight) || !aligned16(p.weightScale) || !aligned16(p.y) || (p.bias != nullptr && !aligned16(p.bias)))
        return "weight, weight_scale, y or bias not 16-byte aligned";
    return nullptr;
}

// Problems the dequantize path takes: 16-bit tensor cores, an exact 16-bit activation operand (x-hat,
// or fp16/bf16 x), one weight_global_scale (cuBLASLt's 16-bit GEMMs scale by one alpha: the per-row
// vector mode is not offered for them), 16-byte rows of y (N % 8) and 16-byte aligned buffers. The
// others run on the fused kernels; that is not a failure of the path, so it is not reported.
bool dequantTakes(LinearParams const& p, int sm)
{
    return sm >= 80 && (p.w4a4 || p.actType != ActType::kFLOAT) && p.weightGlobalScaleLen == 1 && p.N % 8 == 0
        && aligned16(p.weight) && aligned16(p.y) && (p.bias == nullptr || aligned16(p.bias))
        && (p.w4a4 || aligned16(p.x));
}

#if defined(NVFP4_HAVE_CUBLASLT)
layout::DequantWorkspace dequantLayout(int64_t M, int64_t N, int64_t K, bool w4a4)
{
    // The activation operand region only holds x-hat (w4a4); w4a16 reads x where it is.
    size_t const actBytes = w4a4 ? actOperandBytes(M, N, K, true, ActType::kHALF) : 0;
    return layout::dequantWorkspace(N, K, actBytes, tuning::kDequantSliceBytes, kLtWorkspaceBytes);
}
#endif

} // namespace

size_t nativeFp4WorkspaceBytes(int64_t M, int64_t N, int64_t K)
{
#if defined(NVFP4_HAVE_CUBLASLT)
    return fp4WorkspaceLayout(M, N, K).total; // monotonic in M: covers every smaller M
#else
    (void) M;
    (void) N;
    (void) K;
    return 0;
#endif
}

size_t dequantGemmWorkspaceBytes(int64_t M, int64_t N, int64_t K, bool w4a4)
{
#if defined(NVFP4_HAVE_CUBLASLT)
    return dequantLayout(M, N, K, w4a4).total; // monotonic in M: covers every smaller M
#else
    (void) M;
    (void) N;
    (void) K;
    (void) w4a4;
    return 0;
#endif
}

namespace
{

// Checks, plans (descriptors + cached algorithm) and, if `launch`, enqueues the native path.
cudaError_t runNativeFp4(LinearParams const& p, bool launch, cudaStream_t stream)
{
    if (char const* why = fp4Unsupported(p))
    {
        return gNativeStatus.unavailable(std::string("native FP4 path: ") + why);
    }
#if !defined(NVFP4_HAVE_CUBLASLT)
    (void) launch;
    (void) stream;
    return gNativeStatus.unavailable("native FP4 path: built without cublasLt.h (see docs/kernels.md)");
#else
    LtApi const& api = ltApi();
    if (!api.error.empty())
    {
        return gNativeStatus.unavailable("native FP4 path: " + api.error);
    }
    // Block-scaled FP4 (CUDA_R_4F_E2M1 with VEC16_UE4M3 scales) arrived in cuBLAS 12.8.
    if (api.version < 120800)
    {
        return gNativeStatus.unavailable("native FP4 path: libcublasLt " + std::to_string(api.version)
            + " predates block-scaled FP4 (needs >= 12.8)");
    }
    Fp4Workspace const w = fp4WorkspaceLayout(p.M, p.N, p.K);
    auto* const base = static_cast<uint8_t*>(p.workspace);
    uint8_t* const packedX = base + w.packedX;
    uint8_t* const scalesX = base + w.scalesX;
    uint8_t* const scalesW = base + w.scalesW;
    auto* const alpha = reinterpret_cast<float*>(base + w.alpha);
    bool const vectorAlpha = p.weightGlobalScaleLen != 1;

    ProblemKey const key{p.M, p.N, p.K, p.N, static_cast<int32_t>(p.actType), p.bias != nullptr, vectorAlpha,
        Operands::kFp4, currentDevice()};
    LtDescs ds(api);
    cublasStatus_t const st = buildDescs(ds, key, p.bias, scalesW, scalesX);
    if (st != CUBLAS_STATUS_SUCCESS)
    {
        return gNativeStatus.unavailable(
            "native FP4 path: descriptor setup failed with cuBLAS status " + std::to_string(static_cast<int>(st)));
    }
    CachedAlgo const algo = cachedAlgo(ds, key);
    if (!algo.ok)
    {
        return gNativeStatus.unavailable("native FP4 path: " + algo.why);
    }
    if (!launch)
    {
        return cudaSuccess;
    }

    cudaError_t err
        = launchQuantizeActivationFp4(p.x, p.actType, p.M, p.K, p.inputGlobalScaleInv, packedX, scalesX, stream);
    if (err == cudaSuccess)
    {
        err = launchPrepareWeightFp4(p.weightScale, p.N, p.K, p.weightGlobalScale, p.weightGlobalScaleLen,
            p.inputGlobalScale, scalesW, alpha, stream);
    }
    if (err != cudaSuccess)
    {
        return afterLaunch(err);
    }
    float const* beta = alpha + p.weightGlobalScaleLen; // 0 (written by prepareWeightFp4Kernel)
    return afterLaunch(toCuda(api.matmul(api.handle, ds.op, alpha, p.weight, ds.a, packedX, ds.b, beta, p.y, ds.d,
        p.y, ds.d, &algo.algo, base + w.lt, kLtWorkspaceBytes, stream)));
#endif
}

#if defined(NVFP4_HAVE_CUBLASLT)
// The descriptors and algorithm of one slice height (every slice but perhaps the last has the same).
struct SlicePlan
{
    LtDescs ds;
    CachedAlgo algo;
    explicit SlicePlan(LtApi const& api) : ds(api) {}
};

cudaError_t planSlice(SlicePlan& plan, LinearParams const& p, int64_t rows, Operands operands)
{
    ProblemKey const key{
        p.M, rows, p.K, p.N, static_cast<int32_t>(p.actType), p.bias != nullptr, false, operands, currentDevice()};
    cublasStatus_t const st = buildDescs(plan.ds, key, p.bias);
    if (st != CUBLAS_STATUS_SUCCESS)
    {
        return gDequantStatus.unavailable("dequantize-then-GEMM path: descriptor setup failed with cuBLAS status "
            + std::to_string(static_cast<int>(st)));
    }
    plan.algo = cachedAlgo(plan.ds, key);
    return plan.algo.ok ? cudaSuccess : gDequantStatus.unavailable("dequantize-then-GEMM path: " + plan.algo.why);
}
#endif

// Plans both slice heights before launching anything; then the activation operand (w4a4), and per
// slice the weight decode and its GEMM, in stream order.
cudaError_t runDequantGemm(LinearParams const& p, int sm, cudaStream_t stream)
{
    if (!dequantTakes(p, sm))
    {
        return cudaErrorNotSupported;
    }
#if !defined(NVFP4_HAVE_CUBLASLT)
    (void) stream;
    return gDequantStatus.unavailable("dequantize-then-GEMM path: built without cublasLt.h (see docs/kernels.md)");
#else
    LtApi const& api = ltApi();
    if (!api.error.empty())
    {
        return gDequantStatus.unavailable("dequantize-then-GEMM path: " + api.error);
    }
    bool const bf16 = p.actType == ActType::kBF16; // cuBLASLt's 16-bit operands share D's type family
    Operands const operands = bf16 ? Operands::kBf16 : Operands::kHalf;
    layout::DequantWorkspace const w = dequantLayout(p.M, p.N, p.K, p.w4a4);
    int64_t const rows = w.sliceRows;
    int64_t const lastRows = p.N - (p.N - 1) / rows * rows;
    SlicePlan full(api), last(api);
    cudaError_t err = planSlice(full, p, rows, operands);
    if (err == cudaSuccess && lastRows != rows)
    {
        err = planSlice(last, p, lastRows, operands);
    }
    if (err != cudaSuccess)
    {
        return err;
    }

    auto* const base = static_cast<uint8_t*>(p.workspace);
    void* const slice = base + w.slice;
    auto* const alpha = reinterpret_cast<float*>(base + w.alpha);
    float const* const beta = alpha + 1; // 0 (written with alpha)
    if (p.w4a4)
    {
        err = bf16 ? launchQuantizeActivationBf16(
                  p.x, p.actType, p.M, p.K, p.inputGlobalScaleInv, static_cast<__nv_bfloat16*>(p.workspace), stream)
                   : launchQuantizeActivation(p.x, p.actType, p.M, p.K, p.inputGlobalScaleInv,
                       static_cast<__half*>(p.workspace), nullptr, ActOrder::kNatural, stream);
    }
    void const* const act = p.w4a4 ? static_cast<void const*>(p.workspace) : p.x;
    size_t const outBytes = p.actType == ActType::kFLOAT ? 4 : 2;
    for (int64_t n0 = 0; err == cudaSuccess && n0 < p.N; n0 += rows)
    {
        int64_t const r = std::min(rows, p.N - n0);
        SlicePlan& plan = r == rows ? full : last;
        err = launchDequantizeWeight(p, bf16, n0, r, slice, n0 == 0 ? alpha : nullptr, stream);
        if (err != cudaSuccess)
        {
            break;
        }
        void const* const bias = p.bias != nullptr ? static_cast<uint8_t const*>(p.bias) + n0 * outBytes : nullptr;
        if (bias != nullptr)
        {
            cublasStatus_t const st = setDesc(plan.ds, CUBLASLT_MATMUL_DESC_BIAS_POINTER, bias);
            if (st != CUBLAS_STATUS_SUCCESS)
            {
                return afterLaunch(toCuda(st));
            }
        }
        void* const d = static_cast<uint8_t*>(p.y) + n0 * outBytes;
        err = toCuda(api.matmul(api.handle, plan.ds.op, alpha, slice, plan.ds.a, act, plan.ds.b, beta, d, plan.ds.d, d,
            plan.ds.d, &plan.algo.algo, base + w.lt, kLtWorkspaceBytes, stream));
    }
    return afterLaunch(err);
#endif
}

} // namespace

cudaError_t launchNativeFp4(LinearParams const& p, int sm, cudaStream_t stream)
{
    if (sm < 100)
    {
        return cudaErrorNotSupported; // no block-scaled FP4 tensor cores: nothing to report
    }
    return runNativeFp4(p, true, stream);
}

cudaError_t probeNativeFp4(LinearParams const& p)
{
    return runNativeFp4(p, false, nullptr);
}

cudaError_t launchDequantGemm(LinearParams const& p, int sm, cudaStream_t stream)
{
    return runDequantGemm(p, sm, stream);
}

} // namespace detail

char const* nativeFp4Status()
{
    return detail::gNativeStatus.get();
}

char const* dequantGemmStatus()
{
    return detail::gDequantStatus.get();
}

} // namespace nvfp4
