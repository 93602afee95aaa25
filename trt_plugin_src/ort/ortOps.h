// The ONNX Runtime custom ops of this library, each added to the library's custom-op domain by
// ortOpLibrary.cpp's RegisterCustomOps (one OrtCustomOp per activation type; ortOpSupport.h).
#pragma once

#include <onnxruntime_c_api.h>

namespace nvfp4
{

OrtStatus* addLinearOrtOps(OrtCustomOpDomain* domain); // trt.plugins::NVFP4Linear, nvfp4LinearOrtOp.cpp
OrtStatus* addMoEOrtOps(OrtCustomOpDomain* domain);    // trt.plugins::NVFP4MoE, nvfp4MoEOrtOp.cpp

} // namespace nvfp4
