/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * NVFP4Linear TensorRT plugin and creator, plus the library's entry points:
 *  - getCreators / setLoggerFinder for IPluginRegistry::loadLibrary (trtexec --dynamicPlugins,
 *    Polygraphy/Python load_library, version-compatible plans);
 *  - a static initializer that registers the creator when the library is dlopen()ed into a process
 *    where TensorRT is already loaded (trtexec --staticPlugins, Triton's plugins= option, LD_PRELOAD
 *    after TensorRT, Polygraphy --plugins, ONNX Runtime's trt_extra_plugin_lib_paths).
 * No link-time dependency on libnvinfer: TensorRT's functions are looked up at run time.
 */
#include "NVFP4LinearPlugin.h"
#include "NVFP4MoEPlugin.h"
#include "nvfp4LinearKernels.h"

#include <cuda_runtime_api.h>
#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>

using namespace nvinfer1;
using namespace nvinfer1::plugin;

namespace
{

// ------------------------------------------------------------------ TensorRT lookup at run time

// A symbol of the TensorRT library already loaded in this process (never loads one). RTLD_DEFAULT
// misses libraries loaded RTLD_LOCAL (e.g. as a dependency of Triton's TensorRT backend), so the
// usual sonames are also asked with RTLD_NOLOAD, which returns a library only if it is loaded.
void* findTensorRTSymbol(char const* symbol)
{
    if (void* p = dlsym(RTLD_DEFAULT, symbol))
    {
        return p;
    }
    std::string const major = std::to_string(NV_TENSORRT_MAJOR);
    for (std::string const& soname : {"libnvinfer.so." + major, "libnvinfer_lean.so." + major,
             "libnvinfer_dispatch.so." + major, std::string("libnvinfer.so"), std::string("libnvinfer_lean.so")})
    {
        if (void* handle = dlopen(soname.c_str(), RTLD_NOW | RTLD_NOLOAD))
        {
            void* p = dlsym(handle, symbol);
            dlclose(handle); // drops only the reference RTLD_NOLOAD added
            if (p)
            {
                return p;
            }
        }
    }
    return nullptr;
}

std::mutex gLoggerMutex;
ILoggerFinder* gLoggerFinder{nullptr};

ILogger* findLogger()
{
    {
        std::lock_guard<std::mutex> lock(gLoggerMutex);
        if (gLoggerFinder != nullptr)
        {
            if (ILogger* logger = gLoggerFinder->findLogger())
            {
                return logger;
            }
        }
    }
    using GetLogger = ILogger* (*) ();
    auto getLogger = reinterpret_cast<GetLogger>(findTensorRTSymbol("getLogger"));
    return getLogger ? getLogger() : nullptr;
}

IPluginRegistry* findRegistry()
{
    using GetRegistry = IPluginRegistry* (*) ();
    auto getRegistry = reinterpret_cast<GetRegistry>(findTensorRTSymbol("getPluginRegistry"));
    return getRegistry ? getRegistry() : nullptr;
}

// Errors go to the logger (the builder's/runtime's, via the ILoggerFinder) and to an error recorder:
// the execution context's after attachToContext, else the plugin registry's if one is set.
void report(ILogger::Severity severity, std::string const& text, IErrorRecorder* recorder = nullptr) noexcept
{
    try
    {
        if (ILogger* logger = findLogger())
        {
            logger->log(severity, text.c_str());
        }
        else
        {
            std::fprintf(stderr, "[NVFP4Linear] %s\n", text.c_str());
        }
        if (severity <= ILogger::Severity::kERROR)
        {
            if (recorder == nullptr)
            {
                IPluginRegistry* registry = findRegistry();
                recorder = registry ? registry->getErrorRecorder() : nullptr;
            }
            if (recorder != nullptr)
            {
                recorder->reportError(ErrorCode::kINVALID_ARGUMENT, text.c_str());
            }
        }
    }
    catch (...)
    {
    }
}

std::string pluginPrefix(std::string const& name)
{
    return std::string(nvfp4::kOpName) + " plugin '" + name + "': ";
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
    case DataType::kINT4: return "kINT4";
#if NV_TENSORRT_MAJOR > 10 || NV_TENSORRT_MINOR >= 8
    case DataType::kFP4: return "kFP4";
#endif
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

std::vector<int64_t> toVector(Dims const& d)
{
    return std::vector<int64_t>(d.d, d.d + std::max<int32_t>(d.nbDims, 0));
}

// Rows of x ([..., K] -> M); -1 if a leading dimension is unknown.
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

int64_t volume(Dims const& d)
{
    int64_t v = 1;
    for (int32_t i = 0; i < d.nbDims; ++i)
    {
        v *= d.d[i];
    }
    return v;
}

// The field types TensorRT's ONNX parser passes (INT -> kINT32, FLOAT -> kFLOAT32, STRING -> kCHAR).
PluginFieldType fieldTypeOf(std::string const& name)
{
    if (name == nvfp4::kAttrMode)
    {
        return PluginFieldType::kCHAR;
    }
    if (name == nvfp4::kAttrInputGlobalScale || name == nvfp4::kAttrInputGlobalScaleInv)
    {
        return PluginFieldType::kFLOAT32;
    }
    return PluginFieldType::kINT32;
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

char const* const kFieldOrder[] = {nvfp4::kAttrInFeatures, nvfp4::kAttrOutFeatures, nvfp4::kAttrGroupSize,
    nvfp4::kAttrMode, nvfp4::kAttrInputGlobalScale, nvfp4::kAttrInputGlobalScaleInv, nvfp4::kAttrHasBias};

// Parses the fields into attributes; "" on success, else the problem (missing, wrong type/length).
std::string parseFields(PluginFieldCollection const* fc, nvfp4::LinearAttributes& a)
{
    if (fc == nullptr || (fc->nbFields > 0 && fc->fields == nullptr))
    {
        return "no plugin fields were given; expected in_features, out_features, group_size, mode, "
               "input_global_scale, input_global_scale_inv, has_bias";
    }
    bool seen[7] = {};
    for (int32_t i = 0; i < fc->nbFields; ++i)
    {
        PluginField const& f = fc->fields[i];
        if (f.name == nullptr)
        {
            continue;
        }
        int32_t index = -1;
        for (int32_t j = 0; j < 7; ++j)
        {
            if (std::strcmp(f.name, kFieldOrder[j]) == 0)
            {
                index = j;
            }
        }
        if (index < 0)
        {
            continue; // the parser passes only getFieldNames(); anything else is not ours
        }
        PluginFieldType const expected = fieldTypeOf(f.name);
        bool const isString = expected == PluginFieldType::kCHAR;
        if (f.type != expected || f.data == nullptr || (isString ? f.length < 1 : f.length != 1))
        {
            return std::string("field '") + f.name + "' must be one " + fieldTypeName(expected)
                + (isString ? " string" : " value") + ", got type " + fieldTypeName(f.type) + " with length "
                + std::to_string(f.length);
        }
        seen[index] = true;
        if (isString)
        {
            auto const* chars = static_cast<char const*>(f.data);
            a.mode.assign(chars, strnlen(chars, static_cast<size_t>(f.length)));
        }
        else if (expected == PluginFieldType::kFLOAT32)
        {
            float const v = *static_cast<float const*>(f.data);
            (index == 4 ? a.inputGlobalScale : a.inputGlobalScaleInv) = v;
        }
        else
        {
            int64_t const v = *static_cast<int32_t const*>(f.data);
            (index == 0 ? a.inFeatures : index == 1 ? a.outFeatures : index == 2 ? a.groupSize : a.hasBias) = v;
        }
    }
    for (int32_t j = 0; j < 7; ++j)
    {
        if (!seen[j])
        {
            return std::string("missing field '") + kFieldOrder[j] + "' (" + fieldTypeName(fieldTypeOf(kFieldOrder[j]))
                + "); every field of the op contract is required";
        }
    }
    return "";
}

NVFP4LinearPluginCreator& creatorInstance()
{
    static NVFP4LinearPluginCreator creator;
    return creator;
}

} // namespace

void nvinfer1::plugin::reportToTensorRT(ILogger::Severity severity, std::string const& text, IErrorRecorder* recorder) noexcept
{
    report(severity, text, recorder);
}

// ====================================================================== NVFP4LinearPlugin

NVFP4LinearPlugin::NVFP4LinearPlugin(std::string name, nvfp4::LinearAttributes attributes)
    : mName(std::move(name))
    , mAttrs(std::move(attributes))
{
}

NVFP4LinearPlugin::NVFP4LinearPlugin(NVFP4LinearPlugin const& other)
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

void NVFP4LinearPlugin::reportError(std::string const& message) const noexcept
{
    try
    {
        report(ILogger::Severity::kERROR, pluginPrefix(mName) + message, mErrorRecorder);
    }
    catch (...)
    {
    }
}

IPluginCapability* NVFP4LinearPlugin::getCapabilityInterface(PluginCapabilityType type) noexcept
{
    switch (type)
    {
    case PluginCapabilityType::kCORE: return static_cast<IPluginV3OneCore*>(this);
    case PluginCapabilityType::kBUILD: return static_cast<IPluginV3OneBuild*>(this);
    case PluginCapabilityType::kRUNTIME: return static_cast<IPluginV3OneRuntime*>(this);
    }
    return nullptr;
}

IPluginV3* NVFP4LinearPlugin::clone() noexcept
{
    try
    {
        return new NVFP4LinearPlugin(*this);
    }
    catch (...)
    {
        reportError("clone failed (out of memory)");
        return nullptr;
    }
}

char const* NVFP4LinearPlugin::getPluginName() const noexcept
{
    return nvfp4::kOpName;
}

char const* NVFP4LinearPlugin::getPluginVersion() const noexcept
{
    return nvfp4::kPluginVersion;
}

char const* NVFP4LinearPlugin::getPluginNamespace() const noexcept
{
    return nvfp4::kPluginNamespace;
}

int32_t NVFP4LinearPlugin::getNbOutputs() const noexcept
{
    return 1;
}

int32_t NVFP4LinearPlugin::getOutputDataTypes(
    DataType* outputTypes, int32_t nbOutputs, DataType const* inputTypes, int32_t nbInputs) const noexcept
{
    try
    {
        if (nbInputs != mAttrs.numInputs() || nbOutputs != 1 || outputTypes == nullptr || inputTypes == nullptr)
        {
            reportError("expected " + std::to_string(mAttrs.numInputs()) + " inputs (has_bias="
                + std::to_string(mAttrs.hasBias) + ") and 1 output, got " + std::to_string(nbInputs) + " and "
                + std::to_string(nbOutputs));
            return -1;
        }
        if (!isActivationType(inputTypes[0]))
        {
            reportError(std::string("input 'x' must be kFLOAT, kHALF or kBF16, got ") + typeName(inputTypes[0]));
            return -1;
        }
        char const* const names[] = {"x", "weight", "weight_scale", "weight_global_scale", "bias"};
        DataType const expected[] = {inputTypes[0], DataType::kINT8, DataType::kINT8, DataType::kFLOAT, inputTypes[0]};
        for (int32_t i = 1; i < nbInputs; ++i)
        {
            if (inputTypes[i] != expected[i])
            {
                reportError(std::string("input '") + names[i] + "' must be " + typeName(expected[i]) + ", got "
                    + typeName(inputTypes[i]));
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

int32_t NVFP4LinearPlugin::getOutputShapes(DimsExprs const* inputs, int32_t nbInputs, DimsExprs const* /*shapeInputs*/,
    int32_t /*nbShapeInputs*/, DimsExprs* outputs, int32_t nbOutputs, IExprBuilder& exprBuilder) noexcept
{
    try
    {
        if (nbInputs != mAttrs.numInputs() || nbOutputs != 1 || inputs == nullptr || outputs == nullptr)
        {
            reportError("expected " + std::to_string(mAttrs.numInputs()) + " inputs and 1 output, got "
                + std::to_string(nbInputs) + " and " + std::to_string(nbOutputs));
            return -1;
        }
        // Constant dimensions are checked now (the build fails early); the rest in configurePlugin.
        std::vector<std::vector<int64_t>> shapes;
        for (int32_t i = 0; i < nbInputs; ++i)
        {
            std::vector<int64_t> dims;
            for (int32_t j = 0; j < inputs[i].nbDims; ++j)
            {
                IDimensionExpr const* e = inputs[i].d[j];
                dims.push_back(e != nullptr && e->isConstant() ? e->getConstantValue() : -1);
            }
            shapes.push_back(dims);
        }
        std::string const problem = nvfp4::validateInputShapes(mAttrs, shapes);
        if (!problem.empty())
        {
            reportError(problem);
            return -1;
        }
        outputs[0] = inputs[0];
        outputs[0].d[inputs[0].nbDims - 1] = exprBuilder.constant(mAttrs.outFeatures);
        return 0;
    }
    catch (...)
    {
        return -1;
    }
}

bool NVFP4LinearPlugin::supportsFormatCombination(
    int32_t pos, DynamicPluginTensorDesc const* inOut, int32_t nbInputs, int32_t nbOutputs) noexcept
{
    if (inOut == nullptr || pos < 0 || pos >= nbInputs + nbOutputs || nbInputs != mAttrs.numInputs())
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
    if (pos == 1 || pos == 2)
    {
        return desc.type == DataType::kINT8;
    }
    if (pos == 3)
    {
        return desc.type == DataType::kFLOAT;
    }
    return desc.type == inOut[0].desc.type; // bias and y: the activation type
}

std::string NVFP4LinearPlugin::checkInputs(PluginTensorDesc const* in, int32_t nbInputs, int32_t nbOutputs) const
{
    if (in == nullptr || nbInputs != mAttrs.numInputs() || nbOutputs != 1)
    {
        return "expected " + std::to_string(mAttrs.numInputs()) + " inputs (has_bias=" + std::to_string(mAttrs.hasBias)
            + ") and 1 output, got " + std::to_string(nbInputs) + " and " + std::to_string(nbOutputs);
    }
    std::vector<std::vector<int64_t>> shapes;
    for (int32_t i = 0; i < nbInputs; ++i)
    {
        shapes.push_back(toVector(in[i].dims));
    }
    std::string problem = nvfp4::validateInputShapes(mAttrs, shapes);
    if (!problem.empty())
    {
        return problem;
    }
    if (!isActivationType(in[0].type))
    {
        return std::string("input 'x' must be kFLOAT, kHALF or kBF16, got ") + typeName(in[0].type);
    }
    if (in[1].type != DataType::kINT8 || in[2].type != DataType::kINT8 || in[3].type != DataType::kFLOAT
        || (mAttrs.hasBias && in[4].type != in[0].type))
    {
        return "inputs must be (x: T, weight: kINT8, weight_scale: kINT8, weight_global_scale: kFLOAT, bias: T)";
    }
    return "";
}

int32_t NVFP4LinearPlugin::configurePlugin(
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

size_t NVFP4LinearPlugin::getWorkspaceSize(DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
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
    return nvfp4::workspaceSize(maxM, mAttrs.outFeatures, mAttrs.inFeatures, mAttrs.w4a4(),
               toActType(inputs[0].desc.type))
        + 256;
}

int32_t NVFP4LinearPlugin::onShapeChange(
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

int32_t NVFP4LinearPlugin::enqueue(PluginTensorDesc const* inputDesc, PluginTensorDesc const* outputDesc,
    void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept
{
    try
    {
        if (inputDesc == nullptr || outputDesc == nullptr || inputs == nullptr || outputs == nullptr)
        {
            reportError("enqueue got null tensor descriptions or pointers");
            return -1;
        }
        nvfp4::LinearParams p;
        p.x = inputs[0];
        p.weight = static_cast<int8_t const*>(inputs[1]);
        p.weightScale = static_cast<int8_t const*>(inputs[2]);
        p.weightGlobalScale = static_cast<float const*>(inputs[3]);
        p.weightGlobalScaleLen = static_cast<int32_t>(volume(inputDesc[3].dims));
        p.bias = mAttrs.hasBias ? inputs[4] : nullptr;
        p.y = outputs[0];
        p.M = rowsOf(inputDesc[0].dims);
        p.N = mAttrs.outFeatures;
        p.K = mAttrs.inFeatures;
        p.w4a4 = mAttrs.w4a4();
        p.inputGlobalScale = mAttrs.inputGlobalScale;
        p.inputGlobalScaleInv = mAttrs.inputGlobalScaleInv;
        p.actType = toActType(inputDesc[0].type);
        auto const address = reinterpret_cast<uintptr_t>(workspace);
        p.workspace = workspace ? reinterpret_cast<void*>((address + 255) / 256 * 256) : nullptr;
        if (p.M == 0)
        {
            return 0;
        }
        cudaError_t const status = nvfp4::launchLinear(p, stream);
        if (status != cudaSuccess)
        {
            reportError(std::string("kernel launch failed for M=") + std::to_string(p.M) + ", N="
                + std::to_string(p.N) + ", K=" + std::to_string(p.K) + ": " + cudaGetErrorString(status));
            return -1;
        }
        // Once per process: why Blackwell's native FP4 GEMM was not used.
        if (char const* why = nvfp4::nativeFp4Status())
        {
            static std::once_flag once;
            std::call_once(once, [why] {
                report(ILogger::Severity::kWARNING, std::string(why) + "; using the 16-bit tensor-core kernels");
            });
        }
        return 0;
    }
    catch (...)
    {
        return -1;
    }
}

IPluginV3* NVFP4LinearPlugin::attachToContext(IPluginResourceContext* context) noexcept
{
    try
    {
        auto* plugin = new NVFP4LinearPlugin(*this);
        plugin->mErrorRecorder = context ? context->getErrorRecorder() : nullptr;
        return plugin;
    }
    catch (...)
    {
        return nullptr;
    }
}

void NVFP4LinearPlugin::buildFieldsToSerialize()
{
    // Exactly the build-time fields with the parser's types, so that createPlugin(kRUNTIME) parses
    // them with the same code and the same checks.
    mFieldInts[0] = static_cast<int32_t>(mAttrs.inFeatures);
    mFieldInts[1] = static_cast<int32_t>(mAttrs.outFeatures);
    mFieldInts[2] = static_cast<int32_t>(mAttrs.groupSize);
    mFieldInts[3] = static_cast<int32_t>(mAttrs.hasBias);
    mFieldFloats[0] = mAttrs.inputGlobalScale;
    mFieldFloats[1] = mAttrs.inputGlobalScaleInv;
    mFields.clear();
    mFields.emplace_back(nvfp4::kAttrInFeatures, &mFieldInts[0], PluginFieldType::kINT32, 1);
    mFields.emplace_back(nvfp4::kAttrOutFeatures, &mFieldInts[1], PluginFieldType::kINT32, 1);
    mFields.emplace_back(nvfp4::kAttrGroupSize, &mFieldInts[2], PluginFieldType::kINT32, 1);
    mFields.emplace_back(nvfp4::kAttrMode, mAttrs.mode.c_str(), PluginFieldType::kCHAR,
        static_cast<int32_t>(mAttrs.mode.size() + 1));
    mFields.emplace_back(nvfp4::kAttrInputGlobalScale, &mFieldFloats[0], PluginFieldType::kFLOAT32, 1);
    mFields.emplace_back(nvfp4::kAttrInputGlobalScaleInv, &mFieldFloats[1], PluginFieldType::kFLOAT32, 1);
    mFields.emplace_back(nvfp4::kAttrHasBias, &mFieldInts[3], PluginFieldType::kINT32, 1);
    mFieldCollection.nbFields = static_cast<int32_t>(mFields.size());
    mFieldCollection.fields = mFields.data();
}

PluginFieldCollection const* NVFP4LinearPlugin::getFieldsToSerialize() noexcept
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

// ====================================================================== NVFP4LinearPluginCreator

NVFP4LinearPluginCreator::NVFP4LinearPluginCreator()
{
    for (char const* name : kFieldOrder)
    {
        mFieldNames.emplace_back(name, nullptr, fieldTypeOf(name), 1);
    }
    mFieldCollection.nbFields = static_cast<int32_t>(mFieldNames.size());
    mFieldCollection.fields = mFieldNames.data();
}

char const* NVFP4LinearPluginCreator::getPluginName() const noexcept
{
    return nvfp4::kOpName;
}

char const* NVFP4LinearPluginCreator::getPluginVersion() const noexcept
{
    return nvfp4::kPluginVersion;
}

char const* NVFP4LinearPluginCreator::getPluginNamespace() const noexcept
{
    return nvfp4::kPluginNamespace;
}

PluginFieldCollection const* NVFP4LinearPluginCreator::getFieldNames() noexcept
{
    return &mFieldCollection;
}

IPluginV3* NVFP4LinearPluginCreator::createPlugin(
    char const* name, PluginFieldCollection const* fc, TensorRTPhase phase) noexcept
{
    std::string const pluginName = name ? name : "";
    try
    {
        nvfp4::LinearAttributes attrs;
        std::string problem = parseFields(fc, attrs);
        if (problem.empty())
        {
            problem = nvfp4::validateAttributes(attrs, "field");
        }
        if (!problem.empty())
        {
            if (phase == TensorRTPhase::kRUNTIME)
            {
                problem = "corrupt serialized fields in the engine: " + problem;
            }
            report(ILogger::Severity::kERROR, pluginPrefix(pluginName) + problem);
            return nullptr;
        }
        return new NVFP4LinearPlugin(pluginName, attrs);
    }
    catch (std::exception const& e)
    {
        report(ILogger::Severity::kERROR, pluginPrefix(pluginName) + "createPlugin failed: " + e.what());
    }
    catch (...)
    {
    }
    return nullptr;
}

// ====================================================================== library entry points

namespace
{

std::mutex gRegistrationMutex;
IPluginRegistry* gStaticRegistry{nullptr}; // where the static initializer registered the creators

// The library's creators, all IPluginCreatorV3One: getCreators' list, registered statically.
IPluginCreatorInterface* const* allCreators(int32_t& count)
{
    static IPluginCreatorInterface* const creators[] = {&creatorInstance(), &moePluginCreator()};
    count = static_cast<int32_t>(sizeof(creators) / sizeof(creators[0]));
    return creators;
}

// Whether a creator of this name and version is registered. Scans getAllCreators(): getCreator()
// would report a "Cannot find plugin" error to the registry's recorder when there is none.
bool isRegistered(IPluginRegistry* registry, IPluginCreatorInterface const* creator)
{
    auto const* ours = static_cast<IPluginCreatorV3One const*>(creator);
    int32_t count = 0;
    IPluginCreatorInterface* const* creators = registry->getAllCreators(&count);
    for (int32_t i = 0; creators != nullptr && i < count; ++i)
    {
        IPluginCreatorInterface* c = creators[i];
        if (c != nullptr && std::strcmp(c->getInterfaceInfo().kind, "PLUGIN CREATOR_V3ONE") == 0)
        {
            auto* v3 = static_cast<IPluginCreatorV3One*>(c);
            if (std::strcmp(v3->getPluginName(), ours->getPluginName()) == 0
                && std::strcmp(v3->getPluginVersion(), ours->getPluginVersion()) == 0)
            {
                return true;
            }
        }
    }
    return false;
}

// Whether this library is in LD_PRELOAD (then TensorRT is usually not loaded yet: Triton dlopens it
// later from its backend).
bool isPreloaded()
{
    char const* preload = std::getenv("LD_PRELOAD");
    Dl_info info{};
    if (preload == nullptr || dladdr(reinterpret_cast<void*>(&isPreloaded), &info) == 0 || info.dli_fname == nullptr)
    {
        return false;
    }
    std::string const self = info.dli_fname;
    std::string const selfName = self.substr(self.find_last_of('/') + 1);
    std::string const list = preload;
    size_t start = 0;
    while (start <= list.size())
    {
        size_t end = list.find_first_of(" :", start);
        std::string const entry = list.substr(start, end == std::string::npos ? std::string::npos : end - start);
        std::string const entryName = entry.substr(entry.find_last_of('/') + 1);
        if (!entry.empty() && (entry == self || entryName == selfName))
        {
            return true;
        }
        if (end == std::string::npos)
        {
            break;
        }
        start = end + 1;
    }
    return false;
}

// Registers the creator when this library is dlopen()ed into a process that already has TensorRT
// loaded (the REGISTER_TENSORRT_PLUGIN behaviour, without linking libnvinfer). Only with the
// TensorRT major version the library was compiled for: the IPluginRegistry vtable differs between
// majors.
struct StaticRegistration
{
    StaticRegistration()
    {
        using GetMajor = int32_t (*)();
        auto getMajor = reinterpret_cast<GetMajor>(findTensorRTSymbol("getInferLibMajorVersion"));
        IPluginRegistry* registry = findRegistry();
        if ((registry == nullptr || getMajor == nullptr) && isPreloaded())
        {
            // LD_PRELOAD runs this before the application loads TensorRT: load it now (what linking
            // libnvinfer would do), the full runtime if installed, else the lean one.
            std::string const major = std::to_string(NV_TENSORRT_MAJOR);
            for (std::string const& soname : {"libnvinfer.so." + major, "libnvinfer_lean.so." + major})
            {
                if (dlopen(soname.c_str(), RTLD_NOW | RTLD_GLOBAL) != nullptr)
                {
                    break;
                }
            }
            getMajor = reinterpret_cast<GetMajor>(findTensorRTSymbol("getInferLibMajorVersion"));
            registry = findRegistry();
            if (registry == nullptr || getMajor == nullptr)
            {
                std::fprintf(stderr,
                    "[NVFP4Linear] LD_PRELOAD: neither libnvinfer.so.%d nor libnvinfer_lean.so.%d could be loaded; "
                    "the NVFP4Linear creator is not registered\n",
                    NV_TENSORRT_MAJOR, NV_TENSORRT_MAJOR);
                return;
            }
        }
        if (registry == nullptr || getMajor == nullptr)
        {
            return; // TensorRT not loaded yet: IPluginRegistry::loadLibrary will call getCreators()
        }
        if (getMajor() != NV_TENSORRT_MAJOR)
        {
            std::fprintf(stderr,
                "[NVFP4Linear] not registering: this library was built for TensorRT %d, the process runs TensorRT "
                "%d; rebuild it against that version's headers\n",
                NV_TENSORRT_MAJOR, getMajor());
            return;
        }
        std::lock_guard<std::mutex> lock(gRegistrationMutex);
        int32_t count = 0;
        IPluginCreatorInterface* const* creators = allCreators(count);
        for (int32_t i = 0; i < count; ++i)
        {
            // Skipped if another copy of the library registered it.
            if (!isRegistered(registry, creators[i]) && registry->registerCreator(*creators[i], nvfp4::kPluginNamespace))
            {
                gStaticRegistry = registry;
            }
        }
    }
};

StaticRegistration const gStaticRegistration;

} // namespace

extern "C" void setLoggerFinder(ILoggerFinder* finder)
{
    std::lock_guard<std::mutex> lock(gLoggerMutex);
    gLoggerFinder = finder;
}

// IPluginRegistry::loadLibrary's entry point. If the static initializer already registered the
// creator (TensorRT was loaded when loadLibrary dlopen()ed us), that registration is withdrawn so
// that the registry holds the creator once, owned by the library handle.
extern "C" IPluginCreatorInterface* const* getCreators(int32_t& nbCreators)
{
    {
        std::lock_guard<std::mutex> lock(gRegistrationMutex);
        if (gStaticRegistry != nullptr)
        {
            int32_t count = 0;
            IPluginCreatorInterface* const* creators = allCreators(count);
            for (int32_t i = 0; i < count; ++i)
            {
                gStaticRegistry->deregisterCreator(*creators[i]);
            }
            gStaticRegistry = nullptr;
        }
    }
    return allCreators(nbCreators);
}
