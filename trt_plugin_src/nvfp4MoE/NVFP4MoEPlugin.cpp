/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * NVFP4MoE TensorRT plugin and creator. Fields are parsed strictly (every field once, no unknown
 * field, FLOATS of num_experts values) because a corrupt engine reaches createPlugin(kRUNTIME)
 * with whatever it holds; messages quote user text through nvfp4::quoteUserText (one short line).
 */
#include "NVFP4MoEPlugin.h"
#include "nvfp4MoEKernels.h"
#include "pluginLogging.h"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstring>

using namespace nvinfer1;
using namespace nvinfer1::plugin;

namespace
{

// Beyond these a field is refused before its data is read (a corrupt length must not make the
// plugin copy gigabytes).
constexpr int32_t kMaxStringField = 4096;
constexpr int32_t kMaxFloatsField = 1 << 20;

std::string pluginPrefix(std::string const& name)
{
    return std::string(nvfp4::kMoEOpName) + " plugin " + nvfp4::quoteUserText(name, 256, '\'') + ": ";
}

char const* typeName(DataType t)
{
    switch (t)
    {
    case DataType::kFLOAT: return "kFLOAT";
    case DataType::kHALF: return "kHALF";
    case DataType::kINT8: return "kINT8";
    case DataType::kINT32: return "kINT32";
    case DataType::kBOOL: return "kBOOL";
    case DataType::kUINT8: return "kUINT8";
    case DataType::kFP8: return "kFP8";
    case DataType::kBF16: return "kBF16";
    case DataType::kINT64: return "kINT64";
    default: return "an unsupported type";
    }
}

bool isActivationType(DataType t)
{
    return t == DataType::kFLOAT || t == DataType::kHALF || t == DataType::kBF16;
}

nvfp4::ActType toActType(DataType t)
{
    return t == DataType::kFLOAT ? nvfp4::ActType::kFLOAT
                                 : (t == DataType::kBF16 ? nvfp4::ActType::kBF16 : nvfp4::ActType::kHALF);
}

// The type input `i` must have when x has type `activation` (docs/op-contract-moe.md, "Inputs").
DataType expectedInputType(int32_t i, DataType activation)
{
    switch (i)
    {
    case 0:
    case 1: return activation;
    case 4:
    case 7: return DataType::kFLOAT;
    default: return DataType::kINT8;
    }
}

std::vector<int64_t> toVector(Dims const& d)
{
    return std::vector<int64_t>(d.d, d.d + std::max<int32_t>(std::min<int32_t>(d.nbDims, Dims::MAX_DIMS), 0));
}

// Rows of x ([..., H] -> M); -1 if a leading dimension is unknown.
int64_t rowsOf(Dims const& d)
{
    int64_t m = 1;
    for (int32_t i = 0; i + 1 < d.nbDims; ++i)
    {
        if (d.d[i] < 0)
        {
            return -1;
        }
        m *= d.d[i];
    }
    return m;
}

char const* fieldTypeName(PluginFieldType t)
{
    switch (t)
    {
    case PluginFieldType::kFLOAT16: return "kFLOAT16";
    case PluginFieldType::kFLOAT32: return "kFLOAT32";
    case PluginFieldType::kFLOAT64: return "kFLOAT64";
    case PluginFieldType::kINT8: return "kINT8";
    case PluginFieldType::kINT16: return "kINT16";
    case PluginFieldType::kINT32: return "kINT32";
    case PluginFieldType::kCHAR: return "kCHAR";
    case PluginFieldType::kDIMS: return "kDIMS";
    case PluginFieldType::kUNKNOWN: return "kUNKNOWN";
    case PluginFieldType::kBF16: return "kBF16";
    case PluginFieldType::kINT64: return "kINT64";
    default: return "another type";
    }
}

// The field types TensorRT's ONNX parser passes: INT -> kINT32, STRING -> kCHAR, FLOATS -> kFLOAT32.
PluginFieldType fieldTypeOf(nvfp4::MoEFieldKind kind)
{
    switch (kind)
    {
    case nvfp4::MoEFieldKind::kString: return PluginFieldType::kCHAR;
    case nvfp4::MoEFieldKind::kFloats: return PluginFieldType::kFLOAT32;
    case nvfp4::MoEFieldKind::kInt: break;
    }
    return PluginFieldType::kINT32;
}

// Parses the fields into attributes; "" on success, else the problem (unknown, duplicate, missing,
// wrong type or length).
std::string parseFields(PluginFieldCollection const* fc, nvfp4::MoEAttributes& a)
{
    if (fc == nullptr || fc->nbFields < 0 || (fc->nbFields > 0 && fc->fields == nullptr))
    {
        return "no plugin fields were given; expected " + nvfp4::moeFieldList();
    }
    bool seen[nvfp4::kMoENumFields] = {};
    for (int32_t i = 0; i < fc->nbFields; ++i)
    {
        PluginField const& f = fc->fields[i];
        std::string const name = f.name ? std::string(f.name, strnlen(f.name, 1024)) : std::string();
        int32_t const index = nvfp4::moeFieldIndex(name.c_str());
        if (index < 0)
        {
            return "unknown field " + nvfp4::quoteUserText(name) + "; the fields are " + nvfp4::moeFieldList();
        }
        if (seen[index])
        {
            return "field '" + name + "' is given twice";
        }
        seen[index] = true;
        nvfp4::MoEFieldKind const kind = nvfp4::kMoEFields[index].kind;
        PluginFieldType const expected = fieldTypeOf(kind);
        bool const lengthOk = kind == nvfp4::MoEFieldKind::kInt ? f.length == 1
            : kind == nvfp4::MoEFieldKind::kString             ? f.length >= 1 && f.length <= kMaxStringField
                                                               : f.length >= 1 && f.length <= kMaxFloatsField;
        if (f.type != expected || f.data == nullptr || !lengthOk)
        {
            char const* what = kind == nvfp4::MoEFieldKind::kInt ? " value"
                : kind == nvfp4::MoEFieldKind::kString           ? " string"
                                                                 : " values (num_experts of them)";
            return "field '" + name + "' must be " + (kind == nvfp4::MoEFieldKind::kInt ? "one " : "")
                + fieldTypeName(expected) + what + ", got type " + fieldTypeName(f.type) + " with length "
                + std::to_string(f.length);
        }
        switch (kind)
        {
        case nvfp4::MoEFieldKind::kInt: *a.intField(index) = *static_cast<int32_t const*>(f.data); break;
        case nvfp4::MoEFieldKind::kString:
        {
            auto const* chars = static_cast<char const*>(f.data);
            a.stringField(index)->assign(chars, strnlen(chars, static_cast<size_t>(f.length)));
            break;
        }
        case nvfp4::MoEFieldKind::kFloats:
        {
            auto const* values = static_cast<float const*>(f.data);
            a.floatsField(index)->assign(values, values + f.length);
            break;
        }
        }
    }
    for (int32_t j = 0; j < nvfp4::kMoENumFields; ++j)
    {
        if (!seen[j])
        {
            return std::string("missing field '") + nvfp4::kMoEFields[j].name + "' ("
                + fieldTypeName(fieldTypeOf(nvfp4::kMoEFields[j].kind)) + "); every field of the op contract is required";
        }
    }
    return "";
}

// What the CUDA kernels cannot run (the contract itself has no such limits).
std::string checkKernelLimits(nvfp4::MoEAttributes const& a)
{
    if (a.numExperts > nvfp4::kMoEMaxExperts)
    {
        return "field 'num_experts' = " + std::to_string(a.numExperts) + " exceeds the CUDA kernels' limit of "
            + std::to_string(nvfp4::kMoEMaxExperts);
    }
    if (a.topK > nvfp4::kMoEMaxTopK)
    {
        return "field 'top_k' = " + std::to_string(a.topK) + " exceeds the CUDA kernels' limit of "
            + std::to_string(nvfp4::kMoEMaxTopK);
    }
    if (a.intermediateSize / 16 > 65535 || a.hiddenSize / 32 > 65535)
    {
        return "hidden_size / 32 and intermediate_size / 16 must be at most 65535 (a CUDA grid dimension)";
    }
    return "";
}

} // namespace

// ====================================================================== NVFP4MoEPlugin

NVFP4MoEPlugin::NVFP4MoEPlugin(std::string name, nvfp4::MoEAttributes attributes)
    : mName(std::move(name))
    , mAttrs(std::move(attributes))
{
}

NVFP4MoEPlugin::NVFP4MoEPlugin(NVFP4MoEPlugin const& other)
    : IPluginV3(other)
    , IPluginV3OneCore(other)
    , IPluginV3OneBuild(other)
    , IPluginV3OneRuntime(other)
    , mName(other.mName)
    , mAttrs(other.mAttrs)
    , mErrorRecorder(other.mErrorRecorder)
{
    // mFields points into the object's own storage: rebuilt on demand, never copied.
}

void NVFP4MoEPlugin::reportError(std::string const& message) const noexcept
{
    try
    {
        nvfp4::report(ILogger::Severity::kERROR, pluginPrefix(mName) + message, mErrorRecorder);
    }
    catch (...)
    {
    }
}

IPluginCapability* NVFP4MoEPlugin::getCapabilityInterface(PluginCapabilityType type) noexcept
{
    switch (type)
    {
    case PluginCapabilityType::kCORE: return static_cast<IPluginV3OneCore*>(this);
    case PluginCapabilityType::kBUILD: return static_cast<IPluginV3OneBuild*>(this);
    case PluginCapabilityType::kRUNTIME: return static_cast<IPluginV3OneRuntime*>(this);
    }
    return nullptr;
}

IPluginV3* NVFP4MoEPlugin::clone() noexcept
{
    try
    {
        return new NVFP4MoEPlugin(*this);
    }
    catch (...)
    {
        reportError("clone failed (out of memory)");
        return nullptr;
    }
}

char const* NVFP4MoEPlugin::getPluginName() const noexcept
{
    return nvfp4::kMoEOpName;
}

char const* NVFP4MoEPlugin::getPluginVersion() const noexcept
{
    return nvfp4::kPluginVersion;
}

char const* NVFP4MoEPlugin::getPluginNamespace() const noexcept
{
    return nvfp4::kPluginNamespace;
}

int32_t NVFP4MoEPlugin::getNbOutputs() const noexcept
{
    return 1;
}

int32_t NVFP4MoEPlugin::getOutputDataTypes(
    DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes, int32_t nbInputs) const noexcept
{
    try
    {
        if (nbInputs != nvfp4::kMoENumInputs || nbOutputs != 1 || outputTypes == nullptr || inputTypes == nullptr)
        {
            reportError("expected 8 inputs and 1 output, got " + std::to_string(nbInputs) + " and "
                + std::to_string(nbOutputs));
            return -1;
        }
        if (!isActivationType(inputTypes[0]))
        {
            reportError(std::string("input 'x' must be kFLOAT, kHALF or kBF16, got ") + typeName(inputTypes[0]));
            return -1;
        }
        for (int32_t i = 1; i < nbInputs; ++i)
        {
            if (inputTypes[i] != expectedInputType(i, inputTypes[0]))
            {
                reportError(std::string("input '") + nvfp4::kMoEInputNames[i] + "' must be "
                    + typeName(expectedInputType(i, inputTypes[0])) + ", got " + typeName(inputTypes[i]));
                return -1;
            }
        }
        outputTypes[0] = inputTypes[0];
        return 0;
    }
    catch (...)
    {
        return -1;
    }
}

int32_t NVFP4MoEPlugin::getOutputShapes(DimsExprs const* inputs, int32_t nbInputs, DimsExprs const* /*shapeInputs*/,
    int32_t /*nbShapeInputs*/, DimsExprs* outputs, int32_t nbOutputs, IExprBuilder& /*exprBuilder*/) noexcept
{
    try
    {
        if (nbInputs != nvfp4::kMoENumInputs || nbOutputs != 1 || inputs == nullptr || outputs == nullptr)
        {
            reportError("expected 8 inputs and 1 output, got " + std::to_string(nbInputs) + " and "
                + std::to_string(nbOutputs));
            return -1;
        }
        // Constant dimensions are checked now (the build fails early); the rest in configurePlugin.
        std::vector<std::vector<int64_t>> shapes;
        for (int32_t i = 0; i < nbInputs; ++i)
        {
            std::vector<int64_t> dims;
            for (int32_t j = 0; j < std::min<int32_t>(inputs[i].nbDims, Dims::MAX_DIMS); ++j)
            {
                IDimensionExpr const* e = inputs[i].d[j];
                dims.push_back(e != nullptr && e->isConstant() ? e->getConstantValue() : -1);
            }
            shapes.push_back(dims);
        }
        std::string const problem = nvfp4::validateMoEInputShapes(mAttrs, shapes);
        if (!problem.empty())
        {
            reportError(problem);
            return -1;
        }
        outputs[0] = inputs[0]; // y has x's shape
        return 0;
    }
    catch (...)
    {
        return -1;
    }
}

bool NVFP4MoEPlugin::supportsFormatCombination(
    int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    if (inOut == nullptr || pos < 0 || pos >= nbInputs + nbOutputs || nbInputs != nvfp4::kMoENumInputs
        || nbOutputs != 1)
    {
        return false;
    }
    PluginTensorDesc const& desc = inOut[pos].desc;
    if (desc.format != TensorFormat::kLINEAR)
    {
        return false;
    }
    if (pos == 0)
    {
        return isActivationType(desc.type);
    }
    // router_logits and y: the type of x; the rest as the contract says.
    return desc.type == expectedInputType(pos == nbInputs ? 0 : pos, inOut[0].desc.type);
}

std::string NVFP4MoEPlugin::checkInputs(PluginTensorDesc const* in, int32_t nbInputs, int32_t nbOutputs) const
{
    if (in == nullptr || nbInputs != nvfp4::kMoENumInputs || nbOutputs != 1)
    {
        return "expected 8 inputs and 1 output, got " + std::to_string(nbInputs) + " and " + std::to_string(nbOutputs);
    }
    std::vector<std::vector<int64_t>> shapes;
    for (int32_t i = 0; i < nbInputs; ++i)
    {
        shapes.push_back(toVector(in[i].dims));
    }
    std::string problem = nvfp4::validateMoEInputShapes(mAttrs, shapes);
    if (!problem.empty())
    {
        return problem;
    }
    if (!isActivationType(in[0].type))
    {
        return std::string("input 'x' must be kFLOAT, kHALF or kBF16, got ") + typeName(in[0].type);
    }
    for (int32_t i = 1; i < nbInputs; ++i)
    {
        if (in[i].type != expectedInputType(i, in[0].type))
        {
            return std::string("input '") + nvfp4::kMoEInputNames[i] + "' must be "
                + typeName(expectedInputType(i, in[0].type)) + ", got " + typeName(in[i].type);
        }
    }
    return "";
}

int32_t NVFP4MoEPlugin::configurePlugin(
    DynamicPluginTensorDesc const* in, int32_t nbInputs, DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept
{
    try
    {
        if (in == nullptr || out == nullptr)
        {
            reportError("configurePlugin got no tensor descriptions");
            return -1;
        }
        std::vector<PluginTensorDesc> descs;
        for (int32_t i = 0; i < nbInputs; ++i)
        {
            descs.push_back(in[i].desc);
        }
        std::string const problem = checkInputs(descs.data(), nbInputs, nbOutputs);
        if (!problem.empty())
        {
            reportError(problem);
            return -1;
        }
        if (out[0].desc.type != in[0].desc.type)
        {
            reportError(std::string("output 'y' must have the type of 'x' (") + typeName(in[0].desc.type) + "), got "
                + typeName(out[0].desc.type));
            return -1;
        }
        return 0;
    }
    catch (...)
    {
        return -1;
    }
}

size_t NVFP4MoEPlugin::getWorkspaceSize(DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
    DynamicPluginTensorDesc const* /*outputs*/, int32_t /*nbOutputs*/) const noexcept
{
    if (inputs == nullptr || nbInputs < 1)
    {
        return 0;
    }
    // The profile's largest x covers every smaller M; +256 lets enqueue align the pointer itself.
    int64_t const maxM = rowsOf(inputs[0].max);
    if (maxM <= 0)
    {
        return 0;
    }
    return nvfp4::moeWorkspaceSize(maxM, static_cast<int32_t>(mAttrs.numExperts), static_cast<int32_t>(mAttrs.topK),
               mAttrs.hiddenSize, mAttrs.intermediateSize, mAttrs.w4a4(), toActType(inputs[0].desc.type))
        + 256;
}

int32_t NVFP4MoEPlugin::onShapeChange(
    PluginTensorDesc const* in, int32_t nbInputs, PluginTensorDesc const* /*out*/, int32_t nbOutputs) noexcept
{
    try
    {
        std::string const problem = checkInputs(in, nbInputs, nbOutputs);
        if (!problem.empty())
        {
            reportError(problem);
            return -1;
        }
        return 0;
    }
    catch (...)
    {
        return -1;
    }
}

int32_t NVFP4MoEPlugin::enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const* outputDesc,
    void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept
{
    try
    {
        if (inputDesc == nullptr || outputDesc == nullptr || inputs == nullptr || outputs == nullptr)
        {
            reportError("enqueue got null tensor descriptions or pointers");
            return -1;
        }
        nvfp4::MoEParams p;
        p.x = inputs[0];
        p.routerLogits = inputs[1];
        p.w13Weight = static_cast<int8_t const*>(inputs[2]);
        p.w13Scale = static_cast<int8_t const*>(inputs[3]);
        p.w13GlobalScale = static_cast<float const*>(inputs[4]);
        p.w2Weight = static_cast<int8_t const*>(inputs[5]);
        p.w2Scale = static_cast<int8_t const*>(inputs[6]);
        p.w2GlobalScale = static_cast<float const*>(inputs[7]);
        p.y = outputs[0];
        p.M = rowsOf(inputDesc[0].dims);
        p.numExperts = static_cast<int32_t>(mAttrs.numExperts);
        p.topK = static_cast<int32_t>(mAttrs.topK);
        p.hiddenSize = mAttrs.hiddenSize;
        p.intermediateSize = mAttrs.intermediateSize;
        p.w4a4 = mAttrs.w4a4();
        p.normalizeTopk = mAttrs.normalizeTopk != 0;
        p.w13InputScale = mAttrs.w13InputScale.data();
        p.w13InputScaleInv = mAttrs.w13InputScaleInv.data();
        p.w2InputScale = mAttrs.w2InputScale.data();
        p.w2InputScaleInv = mAttrs.w2InputScaleInv.data();
        p.actType = toActType(inputDesc[0].type);
        auto const address = reinterpret_cast<uintptr_t>(workspace);
        p.workspace = workspace ? reinterpret_cast<void*>((address + 255) / 256 * 256) : nullptr;
        if (p.M == 0)
        {
            return 0;
        }
        cudaError_t const status = nvfp4::launchMoE(p, stream);
        if (status != cudaSuccess)
        {
            reportError(std::string("kernel launch failed for M=") + std::to_string(p.M) + ", num_experts="
                + std::to_string(p.numExperts) + ", top_k=" + std::to_string(p.topK) + ", hidden_size="
                + std::to_string(p.hiddenSize) + ", intermediate_size=" + std::to_string(p.intermediateSize) + ": "
                + cudaGetErrorString(status));
            return -1;
        }
        return 0;
    }
    catch (...)
    {
        return -1;
    }
}

IPluginV3* NVFP4MoEPlugin::attachToContext(IPluginResourceContext* context) noexcept
{
    try
    {
        auto* plugin = new NVFP4MoEPlugin(*this);
        plugin->mErrorRecorder = context ? context->getErrorRecorder() : nullptr;
        return plugin;
    }
    catch (...)
    {
        return nullptr;
    }
}

void NVFP4MoEPlugin::buildFieldsToSerialize()
{
    // Exactly the build-time fields with the parser's types, so that createPlugin(kRUNTIME) parses
    // them with the same code and the same checks.
    mFields.clear();
    for (int32_t i = 0; i < nvfp4::kMoENumFields; ++i)
    {
        nvfp4::MoEFieldSpec const& f = nvfp4::kMoEFields[i];
        switch (f.kind)
        {
        case nvfp4::MoEFieldKind::kInt:
            mFieldInts[i] = static_cast<int32_t>(*mAttrs.intField(i));
            mFields.emplace_back(f.name, &mFieldInts[i], PluginFieldType::kINT32, 1);
            break;
        case nvfp4::MoEFieldKind::kString:
        {
            std::string const& s = *mAttrs.stringField(i);
            mFields.emplace_back(f.name, s.c_str(), PluginFieldType::kCHAR, static_cast<int32_t>(s.size() + 1));
            break;
        }
        case nvfp4::MoEFieldKind::kFloats:
        {
            std::vector<float> const& v = *mAttrs.floatsField(i);
            mFields.emplace_back(f.name, v.data(), PluginFieldType::kFLOAT32, static_cast<int32_t>(v.size()));
            break;
        }
        }
    }
    mFieldCollection.nbFields = static_cast<int32_t>(mFields.size());
    mFieldCollection.fields = mFields.data();
}

PluginFieldCollection const* NVFP4MoEPlugin::getFieldsToSerialize() noexcept
{
    try
    {
        buildFieldsToSerialize();
        return &mFieldCollection;
    }
    catch (...)
    {
        return nullptr;
    }
}

// ====================================================================== NVFP4MoEPluginCreator

NVFP4MoEPluginCreator::NVFP4MoEPluginCreator()
{
    for (nvfp4::MoEFieldSpec const& f : nvfp4::kMoEFields)
    {
        mFieldNames.emplace_back(f.name, nullptr, fieldTypeOf(f.kind), 1);
    }
    mFieldCollection.nbFields = static_cast<int32_t>(mFieldNames.size());
    mFieldCollection.fields = mFieldNames.data();
}

char const* NVFP4MoEPluginCreator::getPluginName() const noexcept
{
    return nvfp4::kMoEOpName;
}

char const* NVFP4MoEPluginCreator::getPluginVersion() const noexcept
{
    return nvfp4::kPluginVersion;
}

char const* NVFP4MoEPluginCreator::getPluginNamespace() const noexcept
{
    return nvfp4::kPluginNamespace;
}

PluginFieldCollection const* NVFP4MoEPluginCreator::getFieldNames() noexcept
{
    return &mFieldCollection;
}

IPluginV3* NVFP4MoEPluginCreator::createPlugin(
    char const* name, PluginFieldCollection const* fc, TensorRTPhase phase) noexcept
{
    std::string const pluginName = name ? std::string(name, strnlen(name, 1024)) : "";
    try
    {
        nvfp4::MoEAttributes attrs;
        std::string problem = parseFields(fc, attrs);
        if (problem.empty())
        {
            problem = nvfp4::validateMoEAttributes(attrs, "field");
        }
        if (problem.empty())
        {
            problem = checkKernelLimits(attrs);
        }
        if (!problem.empty())
        {
            if (phase == TensorRTPhase::kRUNTIME)
            {
                problem = "corrupt serialized fields in the engine: " + problem;
            }
            nvfp4::report(ILogger::Severity::kERROR, pluginPrefix(pluginName) + problem, nullptr);
            return nullptr;
        }
        return new NVFP4MoEPlugin(pluginName, std::move(attrs));
    }
    catch (std::exception const& e)
    {
        nvfp4::report(ILogger::Severity::kERROR, pluginPrefix(pluginName) + "createPlugin failed: " + e.what(), nullptr);
    }
    catch (...)
    {
    }
    return nullptr;
}
