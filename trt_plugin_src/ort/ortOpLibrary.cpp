// ONNX Runtime custom-op library (libnvfp4_ort_ops.so): the ops of docs/op-contract.md and
// docs/op-contract-moe.md on the CPU execution provider, with the exact formulas (shared code in
// trt_plugin_src/common/). It lets an exported ONNX model run anywhere, e.g. to compare it with the
// torch reference before building a TensorRT engine.
//
// Built against the ONNX Runtime C API headers only (no link against libonnxruntime): ORT calls
// RegisterCustomOps(), which receives the OrtApi. The ops declare version 16 and the library asks
// for API 16, so any ORT >= 1.16 loads it (ortOpSupport.h).
#include "nvfp4LinearAttributes.h"
#include "ortOpSupport.h"
#include "ortOps.h"

#include <onnxruntime_c_api.h>

#include <mutex>

// ORT's entry point for SessionOptions.register_custom_ops_library(). The domain must outlive every
// session that uses it, so it is created once per process and never released.
extern "C" OrtStatus* ORT_API_CALL RegisterCustomOps(OrtSessionOptions* options, OrtApiBase const* apiBase)
{
    static std::mutex mutex;
    static OrtCustomOpDomain* domain = nullptr;
    std::lock_guard<std::mutex> lock(mutex);
    nvfp4::ort::Api& tables = nvfp4::ort::registered();
    if (tables.api == nullptr)
    {
        tables.api = apiBase->GetApi(nvfp4::ort::kApiVersion);
        if (tables.api == nullptr)
        {
            return nullptr; // cannot even create a status; ORT then reports the op as unregistered
        }
        tables.parallelFor = apiBase->GetApi(nvfp4::ort::kApiVersionParallelFor);
    }
    OrtApi const& api = *tables.api;
    if (domain == nullptr)
    {
        OrtStatus* status = api.CreateCustomOpDomain(nvfp4::kOpDomain, &domain);
        status = status ? status : nvfp4::addLinearOrtOps(domain);
        status = status ? status : nvfp4::addMoEOrtOps(domain);
        if (status != nullptr)
        {
            domain = nullptr;
            return status;
        }
    }
    return api.AddCustomOpDomain(options, domain);
}
