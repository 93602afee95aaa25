// NVFP4 GEMM on Hopper tensor cores (sm_90a): wgmma (warpgroup MMA, asynchronous) with fp32
// accumulators in registers and both operands in shared memory, K-major with the 128-byte swizzle.
// Per 64-deep K stage the CTA copies (cp.async, 4 stages, 2 ahead) the 16-bit activation tile, the
// packed FP4 weight tile and its FP8 scales; every thread then decodes its share of the weight tile
// into a double-buffered fp16/bf16 tile (w' = e2m1 * s_w * 2^-7, exact; bit operations + one HMUL2
// per pair) while the previous stage's wgmma runs. Same numerics as the mma.sync paths: exact
// 16-bit products, fp32 accumulation, alpha * 2^7 in the epilogue. Optional split-K for small grids.
// Built for every listed architecture, but the body exists only in the sm_90a image (elsewhere
// the kernel traps); launchLinear picks it only on compute capability 9.0.
#include "nvfp4KernelsInternal.cuh"

namespace nvfp4
{
namespace detail
{
namespace
{

constexpr int kBK = 64;      // K per stage: one 128-byte swizzle row of 16-bit elements
constexpr int kStages = 4;   // raw (A + packed W + scales) stages; loads run 2 stages ahead

template <int BM, int BN>
struct WgConfig
{
    static constexpr int kWarpGroups = BM / 64;
    static constexpr int kThreads = kWarpGroups * 128;
    static constexpr int kABytes = BM * 128;
    static constexpr int kWBytes = BN * kBK / 2;
    static constexpr int kSBytes = BN * kBK / 16;
    static constexpr int kRawStage = (kABytes + kWBytes + kSBytes + 1023) / 1024 * 1024;
    static constexpr int kBBytes = BN * 128; // decoded weight tile
    static constexpr int kSmemBytes = kStages * kRawStage + 2 * kBBytes + 1024; // +1024: alignment
    static constexpr int kAccRegs = BN / 2; // m64nBN f32 accumulators per thread
};

template <int N, typename E>
struct WgmmaOp;

// Generated (scripts: see notes): wgmma.mma_async m64nNk16, fp32 accumulators, A and B K-major in shared
// memory, D += A*B.
template <>
struct WgmmaOp<128, __half>
{
    static __device__ __forceinline__ void run(float (&d)[64], uint64_t descA, uint64_t descB)
    {
        asm volatile(
            "{\n"
            ".reg .pred p;\n"
            "setp.ne.b32 p, %66, 0;\n"
            "wgmma.mma_async.sync.aligned.m64n128k16.f32.f16.f16 "
            "{"
            "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
            "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
            "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
            "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"
            "}, %64, %65, p, 1, 1, 0, 0;\n"
            "}\n"
            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
              "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
              "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
              "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
              "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
              "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
              "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
              "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
            : "l"(descA), "l"(descB), "r"(1));
    }
};

template <>
struct WgmmaOp<128, __nv_bfloat16>
{
    static __device__ __forceinline__ void run(float (&d)[64], uint64_t descA, uint64_t descB)
    {
        asm volatile(
            "{\n"
            ".reg .pred p;\n"
            "setp.ne.b32 p, %66, 0;\n"
            "wgmma.mma_async.sync.aligned.m64n128k16.f32.bf16.bf16 "
            "{"
            "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
            "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
            "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
            "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63"
            "}, %64, %65, p, 1, 1, 0, 0;\n"
            "}\n"
            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
              "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
              "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
              "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
              "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
              "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
              "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
              "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63])
            : "l"(descA), "l"(descB), "r"(1));
    }
};

template <>
struct WgmmaOp<256, __half>
{
    static __device__ __forceinline__ void run(float (&d)[128], uint64_t descA, uint64_t descB)
    {
        asm volatile(
            "{\n"
            ".reg .pred p;\n"
            "setp.ne.b32 p, %130, 0;\n"
            "wgmma.mma_async.sync.aligned.m64n256k16.f32.f16.f16 "
            "{"
            "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
            "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
            "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
            "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, "
            "%64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, "
            "%80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, "
            "%96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, "
            "%112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127"
            "}, %128, %129, p, 1, 1, 0, 0;\n"
            "}\n"
            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
              "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
              "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
              "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
              "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
              "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
              "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
              "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]),
              "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]),
              "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]),
              "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]),
              "+f"(d[88]), "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95]),
              "+f"(d[96]), "+f"(d[97]), "+f"(d[98]), "+f"(d[99]), "+f"(d[100]), "+f"(d[101]), "+f"(d[102]), "+f"(d[103]),
              "+f"(d[104]), "+f"(d[105]), "+f"(d[106]), "+f"(d[107]), "+f"(d[108]), "+f"(d[109]), "+f"(d[110]), "+f"(d[111]),
              "+f"(d[112]), "+f"(d[113]), "+f"(d[114]), "+f"(d[115]), "+f"(d[116]), "+f"(d[117]), "+f"(d[118]), "+f"(d[119]),
              "+f"(d[120]), "+f"(d[121]), "+f"(d[122]), "+f"(d[123]), "+f"(d[124]), "+f"(d[125]), "+f"(d[126]), "+f"(d[127])
            : "l"(descA), "l"(descB), "r"(1));
    }
};

template <>
struct WgmmaOp<256, __nv_bfloat16>
{
    static __device__ __forceinline__ void run(float (&d)[128], uint64_t descA, uint64_t descB)
    {
        asm volatile(
            "{\n"
            ".reg .pred p;\n"
            "setp.ne.b32 p, %130, 0;\n"
            "wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16 "
            "{"
            "%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, "
            "%16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, "
            "%32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, "
            "%48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, "
            "%64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, "
            "%80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, "
            "%96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, "
            "%112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127"
            "}, %128, %129, p, 1, 1, 0, 0;\n"
            "}\n"
            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]),
              "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]),
              "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]),
              "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]),
              "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]),
              "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]),
              "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]),
              "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]),
              "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]),
              "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]),
              "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]),
              "+f"(d[88]), "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95]),
              "+f"(d[96]), "+f"(d[97]), "+f"(d[98]), "+f"(d[99]), "+f"(d[100]), "+f"(d[101]), "+f"(d[102]), "+f"(d[103]),
              "+f"(d[104]), "+f"(d[105]), "+f"(d[106]), "+f"(d[107]), "+f"(d[108]), "+f"(d[109]), "+f"(d[110]), "+f"(d[111]),
              "+f"(d[112]), "+f"(d[113]), "+f"(d[114]), "+f"(d[115]), "+f"(d[116]), "+f"(d[117]), "+f"(d[118]), "+f"(d[119]),
              "+f"(d[120]), "+f"(d[121]), "+f"(d[122]), "+f"(d[123]), "+f"(d[124]), "+f"(d[125]), "+f"(d[126]), "+f"(d[127])
            : "l"(descA), "l"(descB), "r"(1));
    }
};

// Shared-memory matrix descriptor: K-major, 128-byte swizzle, 8-row groups 1024 bytes apart.
__device__ __forceinline__ uint64_t smemDesc(uint32_t addr)
{
    uint64_t d = static_cast<uint64_t>((addr & 0x3FFFFu) >> 4);
    // leading byte offset: unused by the swizzled K-major layout (left 0)
    d |= static_cast<uint64_t>(1024 >> 4) << 32;   // stride byte offset
    d |= static_cast<uint64_t>(1) << 62;           // 128B swizzle
    return d;
}

// Byte offset of 16-byte chunk `c` of row `r` in a 128B-swizzled tile (rows of 128 bytes).
__device__ __forceinline__ int swz(int r, int c)
{
    return r * 128 + ((c ^ (r & 7)) << 4);
}

template <int R>
__device__ __forceinline__ void fenceAcc(float (&d)[R])
{
#pragma unroll
    for (int i = 0; i < R; ++i)
    {
        asm volatile("" : "+f"(d[i])::"memory");
    }
}

template <typename Op, typename T, int BM, int BN>
__global__ void __launch_bounds__(WgConfig<BM, BN>::kThreads, 1) wgmmaKernel(typename Op::Elem const* __restrict__ a,
    uint8_t const* __restrict__ w, uint8_t const* __restrict__ ws, float const* __restrict__ wgs, int32_t wgsLen,
    bool w4a4, float igs, T const* __restrict__ bias, T* __restrict__ y, float* __restrict__ partial, int64_t M,
    int64_t N, int64_t K, int chunksPerSplit)
{
#if defined(__CUDA_ARCH__) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
    using Cfg = WgConfig<BM, BN>;
    using E = typename Op::Elem;
    extern __shared__ uint8_t smemRaw[];
    uint8_t* smem = reinterpret_cast<uint8_t*>((reinterpret_cast<uintptr_t>(smemRaw) + 1023) & ~uintptr_t{1023});

    int const tid = threadIdx.x;
    int const wg = tid / 128;
    int const warpInWg = (tid % 128) / 32;
    int const lane = tid % 32;
    int const g = lane / 4;
    int const t = lane % 4;
    int64_t const bn = static_cast<int64_t>(blockIdx.x) * BN;
    int64_t const bm = static_cast<int64_t>(blockIdx.y) * BM;
    int64_t const numChunks = K / kBK;
    int64_t const cBeg = static_cast<int64_t>(blockIdx.z) * chunksPerSplit;
    int64_t const cEnd = numChunks < cBeg + chunksPerSplit ? numChunks : cBeg + chunksPerSplit;
    int const nLocal = cEnd > cBeg ? static_cast<int>(cEnd - cBeg) : 0;

    auto rawStage = [&](int s) { return smem + s * Cfg::kRawStage; };
    uint8_t* const bTiles = smem + kStages * Cfg::kRawStage;

    auto loadStage = [&](int stage, int64_t chunk) {
        uint8_t* sA = rawStage(stage);
        uint8_t* sW = sA + Cfg::kABytes;
        uint8_t* sS = sW + Cfg::kWBytes;
        for (int i = tid; i < BM * 8; i += Cfg::kThreads)
        {
            int const r = i / 8;
            int const c = i % 8;
            int64_t const m = bm + r;
            bool const ok = m < M;
            cpAsync16(sA + swz(r, c), ok ? static_cast<void const*>(a + m * K + chunk * kBK + c * 8) : a, ok);
        }
        for (int i = tid; i < BN * 2; i += Cfg::kThreads)
        {
            int const r = i / 2;
            int const c = i % 2;
            int64_t const n = bn + r;
            bool const ok = n < N;
            cpAsync16(sW + r * 32 + c * 16, ok ? static_cast<void const*>(w + n * (K / 2) + chunk * 32 + c * 16) : w, ok);
        }
        for (int i = tid; i < BN; i += Cfg::kThreads)
        {
            int64_t const n = bn + i;
            bool const ok = n < N;
            cpAsync4(sS + i * 4, ok ? static_cast<void const*>(ws + n * (K / 16) + chunk * 4) : ws, ok);
        }
    };

    // Packed weights of a stage -> w' tile (row n: 64 elements = 8 chunks of 8, swizzled).
    auto decodeStage = [&](int stage, uint8_t* dst) {
        uint8_t const* sW = rawStage(stage) + Cfg::kABytes;
        uint8_t const* sS = sW + Cfg::kWBytes;
        for (int i = tid; i < BN * 8; i += Cfg::kThreads)
        {
            int const n = i / 8;
            int const c = i % 8;
            uint32_t const packed = *reinterpret_cast<uint32_t const*>(sW + n * 32 + c * 4);
            uint32_t b[4];
            decodeWeightWord<Op>(packed, Op::scalePair(sS[n * 4 + c / 2]), b);
            *reinterpret_cast<uint4*>(dst + swz(n, c)) = make_uint4(b[0], b[1], b[2], b[3]);
        }
    };

    float acc[Cfg::kAccRegs];
#pragma unroll
    for (int i = 0; i < Cfg::kAccRegs; ++i)
    {
        acc[i] = 0.0f;
    }

#pragma unroll
    for (int st = 0; st < kStages - 2; ++st)
    {
        if (st < nLocal)
        {
            loadStage(st, cBeg + st);
        }
        cpAsyncCommit();
    }

    for (int it = 0; it < nLocal; ++it)
    {
        cpAsyncWait<kStages - 3>();
        asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory"); // cp.async data -> wgmma (async proxy)
        __syncthreads();
        // Stage it-2 (raw) and B tile it%2 are free: every warpgroup waited for wgmma(it-2).
        if (it + kStages - 2 < nLocal)
        {
            loadStage((it + kStages - 2) % kStages, cBeg + it + kStages - 2);
        }
        cpAsyncCommit();
        uint8_t* const bTile = bTiles + (it % 2) * Cfg::kBBytes;
        decodeStage(it % kStages, bTile);
        asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
        __syncthreads();

        uint32_t const aAddr = static_cast<uint32_t>(__cvta_generic_to_shared(rawStage(it % kStages))) + wg * 64 * 128;
        uint32_t const bAddr = static_cast<uint32_t>(__cvta_generic_to_shared(bTile));
        fenceAcc(acc);
        asm volatile("wgmma.fence.sync.aligned;\n" ::: "memory");
#pragma unroll
        for (int k = 0; k < kBK / 16; ++k)
        {
            WgmmaOp<BN, E>::run(acc, smemDesc(aAddr + k * 32), smemDesc(bAddr + k * 32));
        }
        asm volatile("wgmma.commit_group.sync.aligned;\n" ::: "memory");
        asm volatile("wgmma.wait_group.sync.aligned 1;\n" ::: "memory");
        fenceAcc(acc);
    }
    asm volatile("wgmma.wait_group.sync.aligned 0;\n" ::: "memory");
    fenceAcc(acc);
    cpAsyncWait<0>();

    // Accumulators: d[4j + (0,1)] = row 16*warp + g, cols 8j + 2t + (0,1); d[4j + (2,3)] = row + 8.
    int64_t const mBase = bm + wg * 64 + warpInWg * 16 + g;
#pragma unroll
    for (int j = 0; j < BN / 8; ++j)
    {
#pragma unroll
        for (int c = 0; c < 2; ++c)
        {
            int64_t const n = bn + j * 8 + 2 * t + c;
            if (n >= N)
            {
                continue;
            }
            float const alpha = gridDim.z == 1 ? epilogueAlpha(wgs, wgsLen, n, w4a4, igs, kWeightOperandScale) : 0.0f;
#pragma unroll
            for (int hh = 0; hh < 2; ++hh)
            {
                int64_t const m = mBase + hh * 8;
                if (m >= M)
                {
                    continue;
                }
                float const v = acc[4 * j + 2 * hh + c];
                if (gridDim.z == 1)
                {
                    storeOutput<T>(y, m * N + n, v, alpha, bias, n);
                }
                else
                {
                    partial[(static_cast<int64_t>(blockIdx.z) * M + m) * N + n] = v;
                }
            }
        }
    }
#else
    __trap(); // no wgmma in this image: launchLinear never selects it here
#endif
}

template <typename Op, typename T, int BM, int BN>
cudaError_t runWgmma(LinearParams const& p, void const* a, int smCount, cudaStream_t stream)
{
    using Cfg = WgConfig<BM, BN>;
    auto kernel = wgmmaKernel<Op, T, BM, BN>;
    cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, Cfg::kSmemBytes);
    if (err != cudaSuccess)
    {
        return err;
    }
    int64_t const tilesN = (p.N + BN - 1) / BN;
    int64_t const tilesM = (p.M + BM - 1) / BM;
    int64_t const numChunks = p.K / kBK;
    int const ctasPerSm = Cfg::kSmemBytes * 2 <= 227 * 1024 ? 2 : 1;
    int64_t splits = p.M <= kMaxSplitM
        ? chooseTileSplits(tilesN, tilesM, ctasPerSm, smCount, p.M, p.N, p.K, kMaxSplitsTiled)
        : 1;
    int64_t const chunksPerSplit = (numChunks + splits - 1) / splits;
    splits = (numChunks + chunksPerSplit - 1) / chunksPerSplit;
    float* partial = nullptr;
    if (splits > 1)
    {
        partial = reinterpret_cast<float*>(static_cast<uint8_t*>(p.workspace) + actOperandBytes(p.M, p.K, p.w4a4));
    }
    dim3 const grid(static_cast<unsigned>(tilesN), static_cast<unsigned>(tilesM), static_cast<unsigned>(splits));
    kernel<<<grid, Cfg::kThreads, Cfg::kSmemBytes, stream>>>(static_cast<typename Op::Elem const*>(a),
        reinterpret_cast<uint8_t const*>(p.weight), reinterpret_cast<uint8_t const*>(p.weightScale),
        p.weightGlobalScale, p.weightGlobalScaleLen, p.w4a4, p.inputGlobalScale, static_cast<T const*>(p.bias),
        static_cast<T*>(p.y), partial, p.M, p.N, p.K, static_cast<int>(chunksPerSplit));
    err = cudaGetLastError();
    if (err == cudaSuccess && splits > 1)
    {
        err = launchReduceSplits(p, partial, static_cast<int>(splits), stream);
    }
    return err;
}

template <typename Op, typename T>
cudaError_t launchWgmmaTyped(LinearParams const& p, void const* a, int smCount, cudaStream_t stream)
{
    if (p.M <= 64)
    {
        return runWgmma<Op, T, 64, 128>(p, a, smCount, stream);
    }
    return runWgmma<Op, T, 128, 256>(p, a, smCount, stream);
}

} // namespace

cudaError_t launchWgmma(LinearParams const& p, void const* a, bool bf16Operand, int smCount, cudaStream_t stream)
{
    if (bf16Operand)
    {
        return launchWgmmaTyped<Bf16Operand, __nv_bfloat16>(p, a, smCount, stream);
    }
    switch (p.actType)
    {
    case ActType::kFLOAT: return launchWgmmaTyped<HalfOperand, float>(p, a, smCount, stream);
    case ActType::kHALF: return launchWgmmaTyped<HalfOperand, __half>(p, a, smCount, stream);
    case ActType::kBF16: return launchWgmmaTyped<HalfOperand, __nv_bfloat16>(p, a, smCount, stream);
    }
    return cudaErrorInvalidValue;
}

} // namespace detail
} // namespace nvfp4
