// trt.plugins::NVFP4MoE on ONNX Runtime's CPU execution provider (nvfp4MoEOrtOp.cpp).
#pragma once

#include <onnxruntime_c_api.h>

namespace nvfp4
{

// Adds the NVFP4MoE ops (one per activation type) to the library's custom-op domain. `api` must
// outlive every session (it is ORT's static API table).
OrtStatus* addMoEOrtOps(OrtApi const* api, OrtCustomOpDomain* domain);

} // namespace nvfp4
