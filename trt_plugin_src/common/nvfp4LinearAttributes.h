// The NVFP4Linear node's attributes (docs/op-contract.md, "Attributes") and the checks of the
// attributes and of the input shapes against them. Shared by the TensorRT plugin and the ONNX
// Runtime op so that both accept and reject exactly the same nodes with the same messages.
// Host only. Each check returns "" when fine, else one sentence naming the field or input and what
// was expected; the caller prefixes the node / plugin name.
#pragma once

#include "messageText.h"

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

namespace nvfp4
{

// Names in the creator's getFieldNames() order (= the YAML's attribute order).
constexpr char const* kAttrInFeatures = "in_features";
constexpr char const* kAttrOutFeatures = "out_features";
constexpr char const* kAttrGroupSize = "group_size";
constexpr char const* kAttrMode = "mode";
constexpr char const* kAttrInputGlobalScale = "input_global_scale";
constexpr char const* kAttrInputGlobalScaleInv = "input_global_scale_inv";
constexpr char const* kAttrHasBias = "has_bias";

constexpr char const* kOpName = "NVFP4Linear";
constexpr char const* kOpDomain = "trt.plugins";
constexpr char const* kPluginVersion = "1";
constexpr char const* kPluginNamespace = "";
constexpr int32_t kGroupSizeRequired = 16;

struct LinearAttributes
{
    int64_t inFeatures = 0;  // K
    int64_t outFeatures = 0; // N
    int64_t groupSize = 0;
    std::string mode;        // "w4a4" or "w4a16"
    float inputGlobalScale = 1.f;
    float inputGlobalScaleInv = 1.f;
    int64_t hasBias = 0;

    bool w4a4() const
    {
        return mode == "w4a4";
    }
    int32_t numInputs() const
    {
        return hasBias ? 5 : 4;
    }
};

// Range checks of every attribute (the presence and type checks are the caller's: they differ
// between ONNX attributes and TensorRT plugin fields).
// `kind` is "field" (TensorRT) or "attribute" (ONNX Runtime).
inline std::string validateAttributes(LinearAttributes const& a, char const* kind)
{
    if (a.inFeatures <= 0 || a.inFeatures % kGroupSizeRequired != 0 || a.inFeatures > INT32_MAX)
    {
        return std::string(kind) + " '" + kAttrInFeatures + "' must be a positive multiple of 16, got "
            + std::to_string(a.inFeatures);
    }
    if (a.outFeatures <= 0 || a.outFeatures > INT32_MAX)
    {
        return std::string(kind) + " '" + kAttrOutFeatures + "' must be positive, got " + std::to_string(a.outFeatures);
    }
    if (a.groupSize != kGroupSizeRequired)
    {
        return std::string(kind) + " '" + kAttrGroupSize + "' must be 16, got " + std::to_string(a.groupSize);
    }
    if (a.mode != "w4a4" && a.mode != "w4a16")
    {
        return std::string(kind) + " '" + kAttrMode + "' must be \"w4a4\" or \"w4a16\", got " + quoted(a.mode);
    }
    if (a.w4a4())
    {
        if (!std::isfinite(a.inputGlobalScale) || !(a.inputGlobalScale > 0.f))
        {
            return std::string(kind) + " '" + kAttrInputGlobalScale + "' must be finite and > 0 for mode \"w4a4\", got "
                + toString(a.inputGlobalScale);
        }
        if (!std::isfinite(a.inputGlobalScaleInv) || !(a.inputGlobalScaleInv > 0.f))
        {
            return std::string(kind) + " '" + kAttrInputGlobalScaleInv
                + "' must be finite and > 0 for mode \"w4a4\", got " + toString(a.inputGlobalScaleInv);
        }
    }
    if (a.hasBias != 0 && a.hasBias != 1)
    {
        return std::string(kind) + " '" + kAttrHasBias + "' must be 0 or 1, got " + std::to_string(a.hasBias);
    }
    return "";
}

// Checks the inputs' shapes against the attributes. A negative dimension is unknown (TensorRT's -1
// wildcard at build time) and is not checked. `shapes` holds one entry per input actually present.
inline std::string validateInputShapes(LinearAttributes const& a, std::vector<std::vector<int64_t>> const& shapes)
{
    int64_t const K = a.inFeatures;
    int64_t const N = a.outFeatures;
    if (static_cast<int32_t>(shapes.size()) != a.numInputs())
    {
        return "expected " + std::to_string(a.numInputs()) + " inputs (x, weight, weight_scale, weight_global_scale"
            + (a.hasBias ? ", bias" : "") + ") because has_bias=" + std::to_string(a.hasBias) + ", got "
            + std::to_string(shapes.size());
    }
    auto mismatch = [](int64_t actual, int64_t expected) { return actual >= 0 && actual != expected; };
    auto const& x = shapes[0];
    if (x.empty() || mismatch(x.back(), K))
    {
        return "input 'x' must have rank >= 1 and last dimension in_features=" + std::to_string(K) + ", got shape "
            + shapeToString(x);
    }
    auto const& w = shapes[1];
    if (w.size() != 2 || mismatch(w[0], N) || mismatch(w[1], K / 2))
    {
        return "input 'weight' must have shape [out_features, in_features/2] = [" + std::to_string(N) + ", "
            + std::to_string(K / 2) + "], got " + shapeToString(w);
    }
    auto const& s = shapes[2];
    if (s.size() != 2 || mismatch(s[0], N) || mismatch(s[1], K / kGroupSizeRequired))
    {
        return "input 'weight_scale' must have shape [out_features, in_features/16] = [" + std::to_string(N) + ", "
            + std::to_string(K / kGroupSizeRequired) + "], got " + shapeToString(s);
    }
    auto const& g = shapes[3];
    int64_t gCount = 1;
    for (int64_t d : g)
    {
        gCount = (d < 0 || gCount < 0) ? -1 : gCount * d;
    }
    if (g.size() > 1 || (gCount >= 0 && gCount != 1 && gCount != N))
    {
        return "input 'weight_global_scale' must have shape [1] or [out_features] = [" + std::to_string(N)
            + "] (or be a scalar), got " + shapeToString(g);
    }
    if (a.hasBias)
    {
        auto const& b = shapes[4];
        if (b.size() != 1 || mismatch(b[0], N))
        {
            return "input 'bias' must have shape [out_features] = [" + std::to_string(N) + "], got " + shapeToString(b);
        }
    }
    return "";
}

} // namespace nvfp4
