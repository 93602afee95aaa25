// The NVFP4MoE node's attributes (docs/op-contract-moe.md, "Attributes") and the checks of the
// attributes and of the input shapes against them. Shared by the TensorRT plugin and the ONNX
// Runtime op so that both accept and reject exactly the same nodes with the same messages.
// Host only. Each check returns "" when fine, else one sentence naming the field or input and what
// was expected; the caller prefixes the node / plugin name.
#pragma once

#include "nvfp4LinearAttributes.h"

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

namespace nvfp4
{

constexpr char const* kMoEOpName = "NVFP4MoE";

// Names in the creator's getFieldNames() order (= the YAML's attribute order).
constexpr char const* kMoEAttrNumExperts = "num_experts";
constexpr char const* kMoEAttrTopK = "top_k";
constexpr char const* kMoEAttrHiddenSize = "hidden_size";
constexpr char const* kMoEAttrIntermediateSize = "intermediate_size";
constexpr char const* kMoEAttrGroupSize = "group_size";
constexpr char const* kMoEAttrMode = "mode";
constexpr char const* kMoEAttrActivation = "activation";
constexpr char const* kMoEAttrNormalizeTopk = "normalize_topk";
constexpr char const* kMoEAttrW13InputGlobalScale = "w13_input_global_scale";
constexpr char const* kMoEAttrW13InputGlobalScaleInv = "w13_input_global_scale_inv";
constexpr char const* kMoEAttrW2InputGlobalScale = "w2_input_global_scale";
constexpr char const* kMoEAttrW2InputGlobalScaleInv = "w2_input_global_scale_inv";

struct MoEAttributes
{
    int64_t numExperts = 0;       // E
    int64_t topK = 0;             // k
    int64_t hiddenSize = 0;       // H
    int64_t intermediateSize = 0; // I
    int64_t groupSize = 0;
    std::string mode;             // "w4a4" or "w4a16"
    std::string activation;       // "silu"
    int64_t normalizeTopk = 0;
    // Per expert (E values each): s_in and G of the activation entering gate/up (w13) and down (w2).
    std::vector<float> w13InputScale;
    std::vector<float> w13InputScaleInv;
    std::vector<float> w2InputScale;
    std::vector<float> w2InputScaleInv;

    bool w4a4() const
    {
        return mode == "w4a4";
    }
};

// Range checks of every attribute (presence and type are the caller's: they differ between ONNX
// attributes and TensorRT plugin fields). `kind` is "field" (TensorRT) or "attribute" (ONNX Runtime).
inline std::string validateMoEAttributes(MoEAttributes const& a, char const* kind)
{
    std::string const k = kind;
    auto positiveMultipleOf16 = [&](char const* name, int64_t v) -> std::string {
        if (v <= 0 || v % kGroupSizeRequired != 0 || v > INT32_MAX / 2)
        {
            return k + " '" + name + "' must be a positive multiple of 16, got " + std::to_string(v);
        }
        return "";
    };
    if (a.numExperts < 1 || a.numExperts > INT32_MAX)
    {
        return k + " 'num_experts' must be >= 1, got " + std::to_string(a.numExperts);
    }
    if (a.topK < 1 || a.topK > a.numExperts)
    {
        return k + " 'top_k' must be in [1, num_experts=" + std::to_string(a.numExperts) + "], got "
            + std::to_string(a.topK);
    }
    std::string problem = positiveMultipleOf16("hidden_size", a.hiddenSize);
    if (problem.empty())
    {
        problem = positiveMultipleOf16("intermediate_size", a.intermediateSize);
    }
    if (!problem.empty())
    {
        return problem;
    }
    if (a.groupSize != kGroupSizeRequired)
    {
        return k + " 'group_size' must be 16, got " + std::to_string(a.groupSize);
    }
    if (a.mode != "w4a4" && a.mode != "w4a16")
    {
        return k + " 'mode' must be \"w4a4\" or \"w4a16\", got " + quoted(a.mode);
    }
    if (a.activation != "silu")
    {
        return k + " 'activation' must be \"silu\", got " + quoted(a.activation);
    }
    if (a.normalizeTopk != 0 && a.normalizeTopk != 1)
    {
        return k + " 'normalize_topk' must be 0 or 1, got " + std::to_string(a.normalizeTopk);
    }
    struct PerExpert
    {
        char const* name;
        std::vector<float> const* values;
    };
    PerExpert const perExpert[] = {{kMoEAttrW13InputGlobalScale, &a.w13InputScale},
        {kMoEAttrW13InputGlobalScaleInv, &a.w13InputScaleInv}, {kMoEAttrW2InputGlobalScale, &a.w2InputScale},
        {kMoEAttrW2InputGlobalScaleInv, &a.w2InputScaleInv}};
    for (PerExpert const& field : perExpert)
    {
        std::vector<float> const& values = *field.values;
        if (static_cast<int64_t>(values.size()) != a.numExperts)
        {
            return k + " '" + field.name + "' must have num_experts=" + std::to_string(a.numExperts) + " values, got "
                + std::to_string(values.size());
        }
        for (size_t e = 0; e < values.size(); ++e)
        {
            if (!std::isfinite(values[e]) || (a.w4a4() && !(values[e] > 0.f)))
            {
                return k + " '" + field.name + "' must be finite" + (a.w4a4() ? " and > 0 for mode \"w4a4\"" : "")
                    + ", got " + toString(values[e]) + " for expert " + std::to_string(e);
            }
        }
    }
    return "";
}

// The input names in order (docs/op-contract-moe.md, "Inputs").
constexpr char const* kMoEInputNames[] = {"x", "router_logits", "w13_weight", "w13_weight_scale",
    "w13_weight_global_scale", "w2_weight", "w2_weight_scale", "w2_weight_global_scale"};
constexpr int32_t kMoENumInputs = 8;

// Checks the 8 inputs' shapes against the attributes. A negative dimension is unknown (TensorRT's
// -1 wildcard at build time) and is not checked.
inline std::string validateMoEInputShapes(MoEAttributes const& a, std::vector<std::vector<int64_t>> const& shapes)
{
    if (static_cast<int32_t>(shapes.size()) != kMoENumInputs)
    {
        return "expected 8 inputs (x, router_logits, w13_weight, w13_weight_scale, w13_weight_global_scale, "
               "w2_weight, w2_weight_scale, w2_weight_global_scale), got "
            + std::to_string(shapes.size());
    }
    int64_t const E = a.numExperts, H = a.hiddenSize, I = a.intermediateSize;
    auto mismatch = [](int64_t actual, int64_t expected) { return actual >= 0 && actual != expected; };
    auto const& x = shapes[0];
    if (x.empty() || mismatch(x.back(), H))
    {
        return "input 'x' must have rank >= 1 and last dimension hidden_size=" + std::to_string(H) + ", got shape "
            + shapeToString(x);
    }
    auto const& logits = shapes[1];
    bool sameLeading = logits.size() == x.size();
    for (size_t i = 0; sameLeading && i + 1 < x.size(); ++i)
    {
        sameLeading = logits[i] < 0 || x[i] < 0 || logits[i] == x[i];
    }
    if (!sameLeading || mismatch(logits.back(), E))
    {
        return "input 'router_logits' must have the leading dimensions of x " + shapeToString(x)
            + " and last dimension num_experts=" + std::to_string(E) + ", got " + shapeToString(logits);
    }
    struct Expected
    {
        int32_t input;
        std::vector<int64_t> dims;
        char const* formula;
    };
    Expected const expected[] = {
        {2, {E, 2 * I, H / 2}, "[num_experts, 2*intermediate_size, hidden_size/2]"},
        {3, {E, 2 * I, H / kGroupSizeRequired}, "[num_experts, 2*intermediate_size, hidden_size/16]"},
        {4, {E, 2 * I}, "[num_experts, 2*intermediate_size]"},
        {5, {E, H, I / 2}, "[num_experts, hidden_size, intermediate_size/2]"},
        {6, {E, H, I / kGroupSizeRequired}, "[num_experts, hidden_size, intermediate_size/16]"},
        {7, {E, H}, "[num_experts, hidden_size]"},
    };
    for (Expected const& want : expected)
    {
        auto const& got = shapes[want.input];
        bool ok = got.size() == want.dims.size();
        for (size_t i = 0; ok && i < got.size(); ++i)
        {
            ok = !mismatch(got[i], want.dims[i]);
        }
        if (!ok)
        {
            return std::string("input '") + kMoEInputNames[want.input] + "' must have shape " + want.formula + " = "
                + shapeToString(want.dims) + ", got " + shapeToString(got);
        }
    }
    return "";
}

} // namespace nvfp4
