// Exercises libnvfp4_trt_plugin.so inside the real TensorRT runtime (libnvinfer_lean from the
// tensorrt-lean wheel): registry loading, the creator, every IPluginV3One* method that needs no
// GPU, bad fields/shapes (the error must reach the registry's error recorder), and, where a GPU is
// present, enqueue against the CPU implementation of the contract.
//
//   leanRuntimePluginTest <libnvfp4_trt_plugin.so>                     loadLibrary + every method
//   leanRuntimePluginTest <libnvfp4_trt_plugin.so> --static-registration  dlopen only, no loadLibrary
//
// Prints "PASS <check>" / "FAIL <check>: <why>" per check, "FIELDS_JSON <json>" with the creator's
// fields, and exits 1 if any check failed.
#include "floatConvert.h"
#include "nvfp4LinearCpu.h"
#include "nvfp4MoECpu.h"

#include <NvInferRuntime.h>
#include <cuda_runtime_api.h>
#include <dlfcn.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <deque>
#include <algorithm>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <vector>

using namespace nvinfer1;

namespace
{

int gFailures = 0;

void check(bool ok, std::string const& what, std::string const& why = "")
{
    std::printf("%s %s%s%s\n", ok ? "PASS" : "FAIL", what.c_str(), ok || why.empty() ? "" : ": ", ok ? "" : why.c_str());
    std::fflush(stdout);
    gFailures += ok ? 0 : 1;
}

// Collects what the plugin reports (set on the registry, and handed over in attachToContext).
class CapturingErrorRecorder : public IErrorRecorder
{
public:
    int32_t getNbErrors() const noexcept override
    {
        return static_cast<int32_t>(mErrors.size());
    }
    ErrorCode getErrorCode(int32_t i) const noexcept override
    {
        return mErrors.at(i).first;
    }
    ErrorDesc getErrorDesc(int32_t i) const noexcept override
    {
        return mErrors.at(i).second.c_str();
    }
    bool hasOverflowed() const noexcept override
    {
        return false;
    }
    void clear() noexcept override
    {
        mErrors.clear();
    }
    bool reportError(ErrorCode code, ErrorDesc desc) noexcept override
    {
        mErrors.emplace_back(code, desc ? desc : "");
        return false;
    }
    RefCount incRefCount() noexcept override
    {
        return ++mRefs;
    }
    RefCount decRefCount() noexcept override
    {
        return --mRefs;
    }
    std::string last() const
    {
        return mErrors.empty() ? std::string() : mErrors.back().second;
    }

private:
    std::vector<std::pair<ErrorCode, std::string>> mErrors;
    RefCount mRefs{0};
};

CapturingErrorRecorder gRecorder;

// Expects the call to have failed and the recorder to hold a message of plugin `op` containing
// `expected`, on one capped line.
void checkRejected(std::string const& what, bool failed, std::string const& expected, char const* op = "NVFP4Linear")
{
    std::string const message = gRecorder.last();
    bool const named = message.find(std::string(op) + " plugin") != std::string::npos;
    bool const short_ = message.size() < 600 && message.find('\n') == std::string::npos; // one capped line
    check(failed && named && short_ && message.find(expected) != std::string::npos, what,
        std::string(failed ? "" : "call succeeded; ") + "recorder got \"" + message + "\", expected \"" + expected
            + "\"");
    if (failed && !message.empty())
    {
        std::printf("     message: %s\n", message.c_str());
    }
    gRecorder.clear();
}

// ---------------------------------------------------------------- a small IExprBuilder

class DimExpr : public IDimensionExpr
{
public:
    DimExpr(bool constant, int64_t value)
        : mImplObject(constant, value)
    {
        mImpl = &mImplObject;
    }

private:
    struct Impl : apiv::VDimensionExpr
    {
        Impl(bool c, int64_t v)
            : constant(c)
            , value(v)
        {
        }
        bool isConstant() const override
        {
            return constant;
        }
        int64_t getConstantValue() const override
        {
            return constant ? value : -1;
        }
        bool isSizeTensor() const override
        {
            return false;
        }
        bool constant;
        int64_t value;
    };
    Impl mImplObject;
};

// Folds operations on constants; anything involving a symbol is a new symbol.
class ExprBuilder : public IExprBuilder
{
public:
    ExprBuilder()
    {
        mImpl = &mImplObject;
    }
    IDimensionExpr const* symbol()
    {
        return mImplObject.make(false, -1);
    }

private:
    struct Impl : apiv::VExprBuilder
    {
        IDimensionExpr const* make(bool constant, int64_t value)
        {
            pool.push_back(std::make_unique<DimExpr>(constant, value));
            return pool.back().get();
        }
        IDimensionExpr const* constant(int64_t value) override
        {
            return make(true, value);
        }
        IDimensionExpr const* operation(DimensionOperation op, IDimensionExpr const& a, IDimensionExpr const& b) override
        {
            if (!a.isConstant() || !b.isConstant())
            {
                return make(false, -1);
            }
            int64_t const x = a.getConstantValue();
            int64_t const y = b.getConstantValue();
            switch (op)
            {
            case DimensionOperation::kSUM: return make(true, x + y);
            case DimensionOperation::kPROD: return make(true, x * y);
            case DimensionOperation::kMAX: return make(true, std::max(x, y));
            case DimensionOperation::kMIN: return make(true, std::min(x, y));
            case DimensionOperation::kSUB: return make(true, x - y);
            case DimensionOperation::kEQUAL: return make(true, x == y);
            case DimensionOperation::kLESS: return make(true, x < y);
            case DimensionOperation::kFLOOR_DIV: return make(true, x / y);
            case DimensionOperation::kCEIL_DIV: return make(true, (x + y - 1) / y);
            }
            return make(false, -1);
        }
        IDimensionExpr const* declareSizeTensor(int32_t, IDimensionExpr const&, IDimensionExpr const&) override
        {
            return nullptr;
        }
        std::deque<std::unique_ptr<DimExpr>> pool;
    };
    Impl mImplObject;
};

class ResourceContext : public IPluginResourceContext
{
public:
    IGpuAllocator* getGpuAllocator() const noexcept override
    {
        return nullptr;
    }
    IErrorRecorder* getErrorRecorder() const noexcept override
    {
        return &gRecorder;
    }
};

// ---------------------------------------------------------------- plugin fields as the ONNX parser builds them

// What both plugins' field sets share: the collection, and the changes a check asks for.
struct FieldSet
{
    std::vector<std::string> omit;                      // field names left out
    std::string wrongType;                              // a field passed as the wrong PluginFieldType
    std::string duplicate;                              // a field passed twice
    std::vector<std::pair<std::string, int32_t>> extra; // kINT32 fields added at the end

protected:
    void begin()
    {
        storage.clear();
    }
    void add(char const* name, void const* data, PluginFieldType type, int32_t length)
    {
        if (std::find(omit.begin(), omit.end(), name) != omit.end())
        {
            return;
        }
        if (wrongType == name)
        {
            type = type == PluginFieldType::kFLOAT32 ? PluginFieldType::kINT32 : PluginFieldType::kFLOAT32;
        }
        storage.emplace_back(name, data, type, length);
        if (duplicate == name)
        {
            storage.push_back(storage.back());
        }
    }
    void addString(char const* name, std::string const& value) // with its NUL, as the parser passes it
    {
        add(name, value.c_str(), PluginFieldType::kCHAR, static_cast<int32_t>(value.size() + 1));
    }
    PluginFieldCollection const* end()
    {
        for (auto const& e : extra)
        {
            storage.emplace_back(e.first.c_str(), &e.second, PluginFieldType::kINT32, 1);
        }
        collection.nbFields = static_cast<int32_t>(storage.size());
        collection.fields = storage.data();
        return &collection;
    }

private:
    std::vector<PluginField> storage;
    PluginFieldCollection collection{};
};

// NVFP4Linear's fields as the ONNX parser builds them.
struct Fields : FieldSet
{
    int32_t inFeatures = 64, outFeatures = 32, groupSize = 16, hasBias = 0;
    std::string mode = "w4a4";
    float inputGlobalScale = 2.0f / 2688.0f, inputGlobalScaleInv = 1344.0f;

    PluginFieldCollection const* build()
    {
        begin();
        add("in_features", &inFeatures, PluginFieldType::kINT32, 1);
        add("out_features", &outFeatures, PluginFieldType::kINT32, 1);
        add("group_size", &groupSize, PluginFieldType::kINT32, 1);
        addString("mode", mode);
        add("input_global_scale", &inputGlobalScale, PluginFieldType::kFLOAT32, 1);
        add("input_global_scale_inv", &inputGlobalScaleInv, PluginFieldType::kFLOAT32, 1);
        add("has_bias", &hasBias, PluginFieldType::kINT32, 1);
        return end();
    }
};

// One changed field set that createPlugin must refuse with `expected` in its message.
template <typename Set>
struct FieldCase
{
    std::string what;
    std::function<void(Set&)> change;
    std::string expected;
};

char const* fieldTypeName(PluginFieldType t)
{
    switch (t)
    {
    case PluginFieldType::kFLOAT32: return "kFLOAT32";
    case PluginFieldType::kINT32: return "kINT32";
    case PluginFieldType::kCHAR: return "kCHAR";
    default: return "other";
    }
}

std::string fieldsSignature(PluginFieldCollection const* fc)
{
    std::string s;
    for (int32_t i = 0; fc && i < fc->nbFields; ++i)
    {
        PluginField const& f = fc->fields[i];
        s += std::string(f.name) + ":" + fieldTypeName(f.type) + ":" + std::to_string(f.length) + "=";
        size_t const bytes = f.type == PluginFieldType::kCHAR ? static_cast<size_t>(f.length) : 4u * f.length;
        for (size_t b = 0; b < bytes; ++b)
        {
            char hex[4];
            std::snprintf(hex, sizeof hex, "%02x", static_cast<unsigned char const*>(f.data)[b]);
            s += hex;
        }
        s += ";";
    }
    return s;
}

Dims makeDims(std::initializer_list<int64_t> values)
{
    Dims d{};
    d.nbDims = static_cast<int32_t>(values.size());
    int32_t i = 0;
    for (int64_t v : values)
    {
        d.d[i++] = v;
    }
    return d;
}

DynamicPluginTensorDesc dynamicDesc(Dims dims, DataType type, Dims minDims, Dims maxDims)
{
    DynamicPluginTensorDesc d{};
    d.desc.dims = dims;
    d.desc.type = type;
    d.desc.format = TensorFormat::kLINEAR;
    d.desc.scale = 1.f;
    d.min = minDims;
    d.opt = maxDims;
    d.max = maxDims;
    return d;
}

DynamicPluginTensorDesc staticDesc(Dims dims, DataType type)
{
    return dynamicDesc(dims, type, dims, dims);
}

struct Plugin
{
    IPluginV3* plugin{nullptr};
    IPluginV3OneCore* core{nullptr};
    IPluginV3OneBuild* build{nullptr};
    IPluginV3OneRuntime* runtime{nullptr};

    explicit Plugin(IPluginV3* p)
        : plugin(p)
    {
        if (p)
        {
            core = static_cast<IPluginV3OneCore*>(p->getCapabilityInterface(PluginCapabilityType::kCORE));
            build = static_cast<IPluginV3OneBuild*>(p->getCapabilityInterface(PluginCapabilityType::kBUILD));
            runtime = static_cast<IPluginV3OneRuntime*>(p->getCapabilityInterface(PluginCapabilityType::kRUNTIME));
        }
    }
    ~Plugin()
    {
        delete plugin;
    }
    Plugin(Plugin const&) = delete;
    Plugin& operator=(Plugin const&) = delete;
};

IPluginCreatorV3One* findCreator(IPluginRegistry* registry, char const* name = "NVFP4Linear")
{
    IPluginCreatorInterface* creator = registry->getCreator(name, "1", "");
    if (creator == nullptr || std::strcmp(creator->getInterfaceInfo().kind, "PLUGIN CREATOR_V3ONE") != 0)
    {
        return nullptr;
    }
    return static_cast<IPluginCreatorV3One*>(creator);
}

// "<prefix> [{"name": ..., "type": ...}, ...]": the creator's getFieldNames() for tests/test_contract.py.
void printFieldNames(char const* prefix, IPluginCreatorV3One* creator)
{
    PluginFieldCollection const* names = creator->getFieldNames();
    std::string json = "[";
    for (int32_t i = 0; names && i < names->nbFields; ++i)
    {
        json += std::string(i ? ", " : "") + "{\"name\": \"" + names->fields[i].name + "\", \"type\": \""
            + fieldTypeName(names->fields[i].type) + "\"}";
    }
    std::printf("%s %s]\n", prefix, json.c_str());
}

// ---------------------------------------------------------------- checks

void checkOutputTypesAndShapes(Plugin& p)
{
    check(p.build->getNbOutputs() == 1, "getNbOutputs == 1");
    for (DataType t : {DataType::kFLOAT, DataType::kHALF, DataType::kBF16})
    {
        DataType in[4] = {t, DataType::kINT8, DataType::kINT8, DataType::kFLOAT};
        DataType out = DataType::kINT32;
        int32_t const rc = p.build->getOutputDataTypes(&out, 1, in, 4);
        check(rc == 0 && out == t, "getOutputDataTypes keeps the activation type " + std::to_string(int(t)));
    }
    DataType bad[4] = {DataType::kINT32, DataType::kINT8, DataType::kINT8, DataType::kFLOAT};
    DataType out{};
    checkRejected("getOutputDataTypes rejects x kINT32", p.build->getOutputDataTypes(&out, 1, bad, 4) != 0,
        "input 'x' must be kFLOAT, kHALF or kBF16, got kINT32");
    DataType badWeight[4] = {DataType::kHALF, DataType::kUINT8, DataType::kINT8, DataType::kFLOAT};
    checkRejected("getOutputDataTypes rejects weight kUINT8", p.build->getOutputDataTypes(&out, 1, badWeight, 4) != 0,
        "input 'weight' must be kINT8, got kUINT8");

    ExprBuilder eb;
    IDimensionExpr const* batch = eb.symbol();
    IDimensionExpr const* seq = eb.symbol();
    DimsExprs inputs[4]{};
    inputs[0].nbDims = 3;
    inputs[0].d[0] = batch;
    inputs[0].d[1] = seq;
    inputs[0].d[2] = eb.constant(64);
    inputs[1].nbDims = 2;
    inputs[1].d[0] = eb.constant(32);
    inputs[1].d[1] = eb.constant(32);
    inputs[2].nbDims = 2;
    inputs[2].d[0] = eb.constant(32);
    inputs[2].d[1] = eb.constant(4);
    inputs[3].nbDims = 1;
    inputs[3].d[0] = eb.constant(1);
    DimsExprs outputs[1]{};
    int32_t rc = p.build->getOutputShapes(inputs, 4, nullptr, 0, outputs, 1, eb);
    check(rc == 0 && outputs[0].nbDims == 3 && outputs[0].d[0] == batch && outputs[0].d[1] == seq
            && outputs[0].d[2]->isConstant() && outputs[0].d[2]->getConstantValue() == 32,
        "getOutputShapes [batch, seq, 64] -> [batch, seq, 32]");
    inputs[0].d[2] = eb.constant(48);
    checkRejected("getOutputShapes rejects x [.., 48] for in_features 64",
        p.build->getOutputShapes(inputs, 4, nullptr, 0, outputs, 1, eb) != 0, "last dimension in_features=64");
    inputs[0].d[2] = eb.constant(64);
    inputs[2].d[1] = eb.constant(8);
    checkRejected("getOutputShapes rejects weight_scale [32, 8]",
        p.build->getOutputShapes(inputs, 4, nullptr, 0, outputs, 1, eb) != 0,
        "input 'weight_scale' must have shape [out_features, in_features/16] = [32, 4], got [32, 8]");
}

void checkFormatCombinations(Plugin& p, int32_t nbInputs)
{
    DataType const types[] = {DataType::kFLOAT, DataType::kHALF, DataType::kBF16, DataType::kINT8, DataType::kINT32,
        DataType::kUINT8, DataType::kFP8, DataType::kINT64};
    int32_t const nbPos = nbInputs + 1;
    int64_t combos = 1;
    for (int32_t i = 0; i < nbPos; ++i)
    {
        combos *= 8;
    }
    int64_t accepted = 0;
    int64_t wrong = 0;
    std::vector<DynamicPluginTensorDesc> io(nbPos);
    for (int64_t c = 0; c < combos; ++c)
    {
        int64_t code = c;
        for (int32_t i = 0; i < nbPos; ++i)
        {
            io[i] = staticDesc(makeDims({1}), types[code % 8]);
            code /= 8;
        }
        bool all = true;
        for (int32_t pos = 0; pos < nbPos && all; ++pos)
        {
            all = p.build->supportsFormatCombination(pos, io.data(), nbInputs, 1);
        }
        DataType const t = io[0].desc.type;
        bool const expected = (t == DataType::kFLOAT || t == DataType::kHALF || t == DataType::kBF16)
            && io[1].desc.type == DataType::kINT8 && io[2].desc.type == DataType::kINT8
            && io[3].desc.type == DataType::kFLOAT && io[nbInputs].desc.type == t
            && (nbInputs == 4 || io[4].desc.type == t);
        accepted += all ? 1 : 0;
        wrong += all != expected ? 1 : 0;
    }
    check(wrong == 0 && accepted == 3,
        "supportsFormatCombination over all " + std::to_string(combos) + " type combinations (" + std::to_string(nbInputs)
            + " inputs) accepts exactly x=y=bias in {F,H,BF16}, weights kINT8, global scale kFLOAT",
        "accepted " + std::to_string(accepted) + ", disagreements " + std::to_string(wrong));
    io[0] = staticDesc(makeDims({1}), DataType::kHALF);
    io[0].desc.format = TensorFormat::kCHW32;
    check(!p.build->supportsFormatCombination(0, io.data(), nbInputs, 1), "supportsFormatCombination rejects kCHW32");
}

std::vector<DynamicPluginTensorDesc> goodInputs(DataType t, Dims weight = makeDims({32, 32}), Dims gs = makeDims({1}))
{
    return {dynamicDesc(makeDims({-1, -1, 64}), t, makeDims({1, 1, 64}), makeDims({4, 128, 64})),
        staticDesc(weight, DataType::kINT8), staticDesc(makeDims({32, 4}), DataType::kINT8),
        staticDesc(gs, DataType::kFLOAT)};
}

void checkConfigure(Plugin& p)
{
    for (DataType t : {DataType::kFLOAT, DataType::kHALF, DataType::kBF16})
    {
        auto in = goodInputs(t);
        auto out = dynamicDesc(makeDims({-1, -1, 32}), t, makeDims({1, 1, 32}), makeDims({4, 128, 32}));
        check(p.build->configurePlugin(in.data(), 4, &out, 1) == 0, "configurePlugin accepts x [-1,-1,64] type "
            + std::to_string(int(t)));
        size_t const ws = p.build->getWorkspaceSize(in.data(), 4, &out, 1);
        auto small = in;
        small[0].max = makeDims({1, 1, 64});
        size_t const wsSmall = p.build->getWorkspaceSize(small.data(), 4, &out, 1);
        check(ws >= wsSmall && ws >= 256, "getWorkspaceSize covers the profile max (" + std::to_string(ws) + " >= "
            + std::to_string(wsSmall) + " bytes for M=1)");
    }
    auto out = staticDesc(makeDims({2, 32}), DataType::kHALF);
    auto in = goodInputs(DataType::kHALF, makeDims({32, 16}));
    checkRejected("configurePlugin rejects weight [32, 16]", p.build->configurePlugin(in.data(), 4, &out, 1) != 0,
        "input 'weight' must have shape [out_features, in_features/2] = [32, 32], got [32, 16]");
    in = goodInputs(DataType::kHALF, makeDims({32, 32}), makeDims({5}));
    checkRejected("configurePlugin rejects weight_global_scale [5]", p.build->configurePlugin(in.data(), 4, &out, 1) != 0,
        "input 'weight_global_scale' must have shape [1] or [out_features] = [32]");
    in = goodInputs(DataType::kHALF, makeDims({32, 32}), makeDims({32}));
    check(p.build->configurePlugin(in.data(), 4, &out, 1) == 0, "configurePlugin accepts weight_global_scale [N]");
    in = goodInputs(DataType::kHALF);
    in[0].desc.dims = makeDims({-1, 48});
    checkRejected("configurePlugin rejects x [-1, 48]", p.build->configurePlugin(in.data(), 4, &out, 1) != 0,
        "input 'x' must have rank >= 1 and last dimension in_features=64");
    in = goodInputs(DataType::kHALF);
    checkRejected("configurePlugin rejects 3 inputs", p.build->configurePlugin(in.data(), 3, &out, 1) != 0,
        "expected 4 inputs");
    in = goodInputs(DataType::kHALF);
    auto outFloat = staticDesc(makeDims({2, 32}), DataType::kFLOAT);
    checkRejected("configurePlugin rejects y kFLOAT for x kHALF", p.build->configurePlugin(in.data(), 4, &outFloat, 1) != 0,
        "output 'y' must have the type of 'x'");
}

// getFieldsToSerialize, createPlugin(kRUNTIME) from what it wrote, clone and attachToContext: the
// build-time fields every time. `label` starts each check's name; `checkAttached` runs on the clone
// attachToContext returned (whose errors go to the context's recorder).
void checkSerializationAndClone(IPluginCreatorV3One* creator, Plugin& p, std::string const& builtSignature,
    std::string const& label, std::function<void(Plugin&)> const& checkAttached)
{
    PluginFieldCollection const* serialized = p.runtime->getFieldsToSerialize();
    std::string const signature = fieldsSignature(serialized);
    check(signature == builtSignature, label + "getFieldsToSerialize == the build-time fields", signature);
    Plugin restored(creator->createPlugin("restored", serialized, TensorRTPhase::kRUNTIME));
    check(restored.plugin != nullptr && restored.core && restored.runtime,
        label + "createPlugin(kRUNTIME) from the serialized fields");
    if (restored.runtime)
    {
        check(fieldsSignature(restored.runtime->getFieldsToSerialize()) == builtSignature,
            label + "round trip: runtime plugin serializes the same fields");
    }
    Plugin cloned(p.plugin->clone());
    check(cloned.plugin != nullptr && cloned.plugin != p.plugin
            && fieldsSignature(cloned.runtime->getFieldsToSerialize()) == builtSignature,
        label + "clone() is a distinct plugin with the same fields");

    ResourceContext context;
    Plugin attached(p.runtime->attachToContext(&context));
    check(attached.plugin != nullptr && attached.plugin != p.plugin
            && fieldsSignature(attached.runtime->getFieldsToSerialize()) == builtSignature,
        label + "attachToContext returns a clone with the same fields");
    if (attached.runtime)
    {
        checkAttached(attached);
    }
}

// Each case's field set, and no field collection at all, refused by createPlugin(kBUILD) of plugin
// `op`; `label` starts each check's name.
template <typename Set>
void checkBadFieldSets(IPluginCreatorV3One* creator, char const* op, std::string const& label,
    std::vector<FieldCase<Set>> const& cases)
{
    for (auto const& c : cases)
    {
        Set f;
        c.change(f);
        IPluginV3* plugin = creator->createPlugin("bad", f.build(), TensorRTPhase::kBUILD);
        checkRejected(label + "createPlugin rejects " + c.what, plugin == nullptr, c.expected, op);
        delete plugin;
    }
    IPluginV3* plugin = creator->createPlugin("bad", nullptr, TensorRTPhase::kBUILD);
    checkRejected(label + "createPlugin rejects a null field collection", plugin == nullptr,
        "no plugin fields were given", op);
    delete plugin;
}

void checkLinearSerializationAndClone(IPluginCreatorV3One* creator, Plugin& p, std::string const& builtSignature)
{
    checkSerializationAndClone(creator, p, builtSignature, "", [](Plugin& attached) {
        PluginTensorDesc in[4]{};
        DataType const types[4] = {DataType::kHALF, DataType::kINT8, DataType::kINT8, DataType::kFLOAT};
        Dims const dims[4] = {makeDims({3, 7, 64}), makeDims({32, 32}), makeDims({32, 4}), makeDims({1})};
        for (int i = 0; i < 4; ++i)
        {
            in[i].dims = dims[i];
            in[i].type = types[i];
            in[i].format = TensorFormat::kLINEAR;
        }
        PluginTensorDesc out{};
        out.dims = makeDims({3, 7, 32});
        out.type = DataType::kHALF;
        check(attached.runtime->onShapeChange(in, 4, &out, 1) == 0, "onShapeChange accepts x [3, 7, 64]");
        in[2].dims = makeDims({32, 3});
        checkRejected("onShapeChange rejects weight_scale [32, 3] (error goes to the context's recorder)",
            attached.runtime->onShapeChange(in, 4, &out, 1) != 0, "input 'weight_scale' must have shape");
    });

    // Corrupt serialized state: the runtime createPlugin must fail with a message, not crash.
    Fields corrupt;
    corrupt.groupSize = 32;
    IPluginV3* bad = creator->createPlugin("lin0", corrupt.build(), TensorRTPhase::kRUNTIME);
    checkRejected("createPlugin(kRUNTIME) rejects corrupt serialized fields", bad == nullptr,
        "corrupt serialized fields in the engine: field 'group_size' must be 16, got 32");
    delete bad;
}

void checkBadFields(IPluginCreatorV3One* creator)
{
    checkBadFieldSets<Fields>(creator, "NVFP4Linear", "", {
        {"missing in_features", [](Fields& f) { f.omit = {"in_features"}; }, "missing field 'in_features' (kINT32)"},
        {"missing mode", [](Fields& f) { f.omit = {"mode"}; }, "missing field 'mode' (kCHAR)"},
        {"in_features as kFLOAT32", [](Fields& f) { f.wrongType = "in_features"; },
            "field 'in_features' must be one kINT32 value, got type kFLOAT32"},
        {"input_global_scale as kINT32", [](Fields& f) { f.wrongType = "input_global_scale"; },
            "field 'input_global_scale' must be one kFLOAT32 value, got type kINT32"},
        {"K % 16 != 0 (in_features 40)", [](Fields& f) { f.inFeatures = 40; },
            "field 'in_features' must be a positive multiple of 16, got 40"},
        {"mode w8a8", [](Fields& f) { f.mode = "w8a8"; }, "field 'mode' must be \"w4a4\" or \"w4a16\", got \"w8a8\""},
        {"group_size 32", [](Fields& f) { f.groupSize = 32; }, "field 'group_size' must be 16, got 32"},
        {"out_features 0", [](Fields& f) { f.outFeatures = 0; }, "field 'out_features' must be positive, got 0"},
        {"has_bias 2", [](Fields& f) { f.hasBias = 2; }, "field 'has_bias' must be 0 or 1, got 2"},
        {"input_global_scale 0 (w4a4)", [](Fields& f) { f.inputGlobalScale = 0.f; },
            "field 'input_global_scale' must be finite and > 0 for mode \"w4a4\""},
        {"input_global_scale_inv NaN (w4a4)", [](Fields& f) { f.inputGlobalScaleInv = NAN; },
            "field 'input_global_scale_inv' must be finite and > 0"},
        {"a duplicate field", [](Fields& f) { f.extra = {{"in_features", 48}}; }, "field 'in_features' is given twice"},
        {"an unknown field", [](Fields& f) { f.extra = {{"bias", 1}}; }, "unknown field \"bias\"; expected in_features"},
        {"a 64 KiB mode string", [](Fields& f) { f.mode = std::string(65536, 'w'); },
            "field 'mode' must be one kCHAR string, got type kCHAR with length 65537"},
        {"a 4000-byte mode string, echoed capped", [](Fields& f) { f.mode = std::string(4000, 'w'); },
            "... (4000 bytes)"},
    });
    Fields w4a16;
    w4a16.mode = "w4a16";
    w4a16.inputGlobalScale = 0.f; // ignored for weight-only
    Plugin ok(creator->createPlugin("lin0", w4a16.build(), TensorRTPhase::kBUILD));
    check(ok.plugin != nullptr, "createPlugin accepts w4a16 with an ignored input_global_scale of 0");
}

// ---------------------------------------------------------------- enqueue on a GPU

template <typename T>
T* toDevice(std::vector<T> const& host)
{
    void* p = nullptr;
    cudaMalloc(&p, host.size() * sizeof(T) + 1);
    cudaMemcpy(p, host.data(), host.size() * sizeof(T), cudaMemcpyHostToDevice);
    return static_cast<T*>(p);
}

size_t elementSize(DataType t)
{
    return t == DataType::kFLOAT ? 4 : 2;
}

// `v` rounded to the activation type t (float32: unchanged).
float roundedTo(float v, DataType t)
{
    switch (t)
    {
    case DataType::kHALF: return nvfp4::math::halfBitsToFloat(nvfp4::math::floatToHalfBits(v));
    case DataType::kBF16: return nvfp4::math::bf16BitsToFloat(nvfp4::math::floatToBf16Bits(v));
    default: return v;
    }
}

// Host values as the plugin sees them in type t: rounded to T in place (so that host and device
// compute on the same values), and copied to the device in T's layout.
void* toDeviceAs(std::vector<float>& values, DataType t)
{
    if (t == DataType::kFLOAT)
    {
        return toDevice(values);
    }
    std::vector<uint16_t> bits(values.size());
    for (size_t i = 0; i < values.size(); ++i)
    {
        bits[i] = t == DataType::kHALF ? nvfp4::math::floatToHalfBits(values[i])
                                       : nvfp4::math::floatToBf16Bits(values[i]);
        values[i] = roundedTo(values[i], t);
    }
    return toDevice(bits);
}

// Element i of a result of type t copied back from the device.
float elementAt(std::vector<uint8_t> const& bytes, int64_t i, DataType t)
{
    if (t == DataType::kFLOAT)
    {
        float v;
        std::memcpy(&v, &bytes[i * 4], 4);
        return v;
    }
    uint16_t bits;
    std::memcpy(&bits, &bytes[i * 2], 2);
    return t == DataType::kHALF ? nvfp4::math::halfBitsToFloat(bits) : nvfp4::math::bf16BitsToFloat(bits);
}

void checkEnqueue(IPluginCreatorV3One* creator)
{
    std::mt19937 rng(1234);
    std::normal_distribution<float> normal(0.f, 1.f);
    std::uniform_int_distribution<int> byte(0, 255);
    for (DataType t : {DataType::kFLOAT, DataType::kHALF, DataType::kBF16})
    {
        for (std::string const mode : {"w4a4", "w4a16"})
        {
            for (int64_t M : {1, 5, 40, 300})
            {
                int64_t const N = 96, K = 512;
                Fields f;
                f.inFeatures = K;
                f.outFeatures = N;
                f.mode = mode;
                f.hasBias = M == 5;
                Plugin p(creator->createPlugin("lin0", f.build(), TensorRTPhase::kBUILD));
                std::vector<float> x(M * K), bias(N), gs(N);
                std::vector<uint8_t> w(N * K / 2), s(N * K / 16);
                for (auto& v : x) v = normal(rng) * 1.5f;
                for (auto& v : bias) v = normal(rng);
                for (auto& v : gs) v = 0.001f * (1.f + std::abs(normal(rng)));
                for (auto& v : w) v = static_cast<uint8_t>(byte(rng));
                for (auto& v : s) v = static_cast<uint8_t>(byte(rng) % 0x7E); // finite FP8 incl. subnormals
                x[3] = 0.f;
                if (M == 40)
                {
                    x[2 * K + 17] = NAN; // row 2 of y must be NaN, the other rows finite
                    x[5 * K + 100] = INFINITY;
                }
                // x and bias in T, on the device and (rounded alike) on the host.
                void* dx = toDeviceAs(x, t);
                void* db = toDeviceAs(bias, t);
                std::vector<float> ref(M * N);
                nvfp4::CpuLinearArgs a;
                a.x = x.data();
                a.weight = w.data();
                a.weightScale = s.data();
                a.weightGlobalScale = gs.data();
                a.weightGlobalScaleLen = N;
                a.bias = f.hasBias ? bias.data() : nullptr;
                a.y = ref.data();
                a.M = M;
                a.N = N;
                a.K = K;
                a.w4a4 = mode == "w4a4";
                a.inputGlobalScale = f.inputGlobalScale;
                a.inputGlobalScaleInv = f.inputGlobalScaleInv;
                nvfp4::linearCpu(a);
                // Σ|x̂·ŵ|·|alpha| per output: float32 accumulation on the GPU may differ from the
                // float64 reference by a few float32 roundings of this magnitude.
                std::vector<double> absSum(M * N, 0.0);
                {
                    std::vector<float> const wHat = nvfp4::dequantizeWeight(w.data(), s.data(), N, K);
                    std::vector<float> xHat(K);
                    for (int64_t m = 0; m < M; ++m)
                    {
                        float const* row = x.data() + m * K;
                        if (a.w4a4)
                        {
                            nvfp4::quantizeActivationRow(row, K, a.inputGlobalScaleInv, xHat.data());
                            row = xHat.data();
                        }
                        for (int64_t n = 0; n < N; ++n)
                        {
                            double acc = 0.0;
                            for (int64_t k = 0; k < K; ++k)
                                acc += std::abs(double(row[k]) * wHat[n * K + k]);
                            absSum[m * N + n] = acc * std::abs(double(nvfp4::linearAlpha(a, n)));
                        }
                    }
                }

                size_t const elem = elementSize(t);
                void* dw = toDevice(w);
                void* ds = toDevice(s);
                void* dg = toDevice(gs);
                void* dy = nullptr;
                cudaMalloc(&dy, M * N * elem);
                int32_t const nbIn = f.hasBias ? 5 : 4;
                std::vector<DynamicPluginTensorDesc> din = {
                    dynamicDesc(makeDims({-1, K}), t, makeDims({1, K}), makeDims({512, K})),
                    staticDesc(makeDims({N, K / 2}), DataType::kINT8), staticDesc(makeDims({N, K / 16}), DataType::kINT8),
                    staticDesc(makeDims({N}), DataType::kFLOAT), staticDesc(makeDims({N}), t)};
                auto dout = dynamicDesc(makeDims({-1, N}), t, makeDims({1, N}), makeDims({512, N}));
                size_t const wsBytes = p.build->getWorkspaceSize(din.data(), nbIn, &dout, 1);
                void* ws = nullptr;
                cudaMalloc(&ws, wsBytes + 1);
                std::vector<PluginTensorDesc> in(nbIn);
                for (int32_t i = 0; i < nbIn; ++i)
                {
                    in[i] = din[i].desc;
                }
                in[0].dims = makeDims({M, K});
                PluginTensorDesc out = dout.desc;
                out.dims = makeDims({M, N});
                void const* inputs[5] = {dx, dw, ds, dg, db};
                void* outputs[1] = {dy};
                bool ok = p.build->configurePlugin(din.data(), nbIn, &dout, 1) == 0
                    && p.runtime->onShapeChange(in.data(), nbIn, &out, 1) == 0
                    && p.runtime->enqueue(in.data(), &out, inputs, outputs, ws, nullptr) == 0
                    && cudaDeviceSynchronize() == cudaSuccess;
                std::vector<uint8_t> yBytes(M * N * elem);
                cudaMemcpy(yBytes.data(), dy, yBytes.size(), cudaMemcpyDeviceToHost);
                double maxErr = 0.0;
                int64_t nanMismatch = 0;
                for (int64_t i = 0; i < M * N; ++i)
                {
                    float const got = elementAt(yBytes, i, t);
                    float const want = roundedTo(ref[i], t);
                    // One unit in the last place of T on the result (both sides are rounded to T), plus
                    // float32 accumulation (about sqrt(K) roundings of the absolute sum).
                    double const epsT = t == DataType::kFLOAT ? 0x1p-23 : t == DataType::kHALF ? 0x1p-10 : 0x1p-7;
                    double const tol = epsT * std::abs(double(want)) + 16 * 0x1p-24 * absSum[i] + 1e-30;
                    if (std::isnan(got) || std::isnan(want) || std::isinf(want))
                    {
                        nanMismatch += (std::isnan(got) != std::isnan(want) || (std::isinf(want) && got != want)) ? 1 : 0;
                        continue;
                    }
                    maxErr = std::max(maxErr, std::abs(double(got) - want) / tol);
                }
                check(ok && maxErr <= 1.0 && nanMismatch == 0, "enqueue matches the CPU formula: type " + std::to_string(int(t)) + " " + mode
                        + " M=" + std::to_string(M) + (f.hasBias ? " bias" : ""),
                    "ok=" + std::to_string(ok) + " error/tolerance=" + std::to_string(maxErr) + " NaN/Inf mismatches="
                        + std::to_string(nanMismatch) + " " + gRecorder.last());
                for (void* ptr : {dx, db, dw, ds, dg, dy, ws})
                {
                    cudaFree(ptr);
                }
            }
        }
    }
}

#include "leanRuntimeMoEChecks.h"

int staticRegistrationTest(char const* library)
{
    IPluginRegistry* registry = getPluginRegistry();
    check(findCreator(registry) == nullptr, "creator absent before the library is loaded");
    void* handle = dlopen(library, RTLD_NOW | RTLD_LOCAL);
    check(handle != nullptr, "dlopen(RTLD_LOCAL) of the plugin library", handle ? "" : dlerror());
    IPluginCreatorV3One* creator = findCreator(registry);
    check(creator != nullptr, "static registration: creator found without loadLibrary");
    if (creator)
    {
        Fields f;
        Plugin p(creator->createPlugin("lin0", f.build(), TensorRTPhase::kBUILD));
        check(p.plugin != nullptr, "static registration: createPlugin works");
    }
    // loadLibrary of the same library afterwards: one creator, not two.
    void* libraryHandle = registry->loadLibrary(library);
    check(libraryHandle != nullptr, "loadLibrary after static registration");
    int32_t count = 0;
    IPluginCreatorInterface* const* all = registry->getAllCreators(&count);
    int32_t ours = 0;
    for (int32_t i = 0; i < count; ++i)
    {
        IPluginCreatorInterface* c = all[i];
        if (std::strcmp(c->getInterfaceInfo().kind, "PLUGIN CREATOR_V3ONE") == 0
            && std::strcmp(static_cast<IPluginCreatorV3One*>(c)->getPluginName(), "NVFP4Linear") == 0)
        {
            ++ours;
        }
    }
    check(ours == 1, "exactly one NVFP4Linear creator registered", std::to_string(ours));
    check(findCreator(registry, "NVFP4MoE") != nullptr, "static registration: the NVFP4MoE creator is registered too");
    std::printf("%s: %d check(s) failed\n", gFailures ? "FAILED" : "OK", gFailures);
    return gFailures ? 1 : 0;
}

} // namespace

int main(int argc, char** argv)
{
    if (argc < 2)
    {
        std::fprintf(stderr, "usage: %s <libnvfp4_trt_plugin.so> [--static-registration]\n", argv[0]);
        return 2;
    }
    char const* library = argv[1];
    std::printf("TensorRT lean runtime %d.%d.%d\n", getInferLibMajorVersion(), getInferLibMinorVersion(),
        getInferLibPatchVersion());
    IPluginRegistry* registry = getPluginRegistry();
    registry->setErrorRecorder(&gRecorder);
    if (argc > 2 && std::string(argv[2]) == "--static-registration")
    {
        return staticRegistrationTest(library);
    }

    void* handle = registry->loadLibrary(library);
    check(handle != nullptr, "IPluginRegistry::loadLibrary", gRecorder.last());
    IPluginCreatorV3One* creator = findCreator(registry);
    check(creator != nullptr, "getCreator(\"NVFP4Linear\", \"1\", \"\") is an IPluginCreatorV3One");
    if (creator == nullptr)
    {
        return 1;
    }
    check(std::string(creator->getPluginName()) == "NVFP4Linear" && std::string(creator->getPluginVersion()) == "1"
            && std::string(creator->getPluginNamespace()).empty(),
        "creator name / version / namespace");

    printFieldNames("FIELDS_JSON", creator);

    Fields fields;
    Plugin p(creator->createPlugin("lin0", fields.build(), TensorRTPhase::kBUILD));
    check(p.plugin && p.core && p.build && p.runtime, "createPlugin(kBUILD) from parser-style fields; kCORE, kBUILD "
                                                      "and kRUNTIME capability interfaces");
    if (!p.plugin || !p.core || !p.build || !p.runtime)
    {
        return 1;
    }
    check(std::string(p.core->getPluginName()) == "NVFP4Linear" && std::string(p.core->getPluginVersion()) == "1"
            && std::string(p.core->getPluginNamespace()).empty(),
        "plugin name / version / namespace match the creator");
    check(std::strcmp(p.build->getInterfaceInfo().kind, "PLUGIN_V3ONE_BUILD") == 0, "build interface kind");

    checkOutputTypesAndShapes(p);
    checkFormatCombinations(p, 4);
    Fields withBias;
    withBias.hasBias = 1;
    Plugin pb(creator->createPlugin("lin0", withBias.build(), TensorRTPhase::kBUILD));
    if (pb.plugin)
    {
        checkFormatCombinations(pb, 5);
    }
    checkConfigure(p);
    checkLinearSerializationAndClone(creator, p, fieldsSignature(fields.build()));
    checkBadFields(creator);

    int deviceCount = 0;
    bool const haveGpu = cudaGetDeviceCount(&deviceCount) == cudaSuccess && deviceCount > 0;
    if (haveGpu)
    {
        checkEnqueue(creator);
    }
    else
    {
        std::printf("SKIP enqueue: no CUDA device\n");
    }
    checkMoEPlugin(registry, haveGpu);
    registry->setErrorRecorder(nullptr);
    std::printf("%s: %d check(s) failed\n", gFailures ? "FAILED" : "OK", gFailures);
    return gFailures ? 1 : 0;
}
