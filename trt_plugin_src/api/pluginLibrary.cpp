/*
 * SPDX-License-Identifier: Apache-2.0
 *
 * The plugin library's entry points, for every creator it provides (the list in `creators()`):
 *  - getCreators / setLoggerFinder for IPluginRegistry::loadLibrary (trtexec --dynamicPlugins,
 *    Polygraphy/Python load_library, version-compatible plans);
 *  - a static initializer that registers the creators when the library is dlopen()ed into a process
 *    where TensorRT is already loaded (trtexec --staticPlugins, Triton's plugins= option, LD_PRELOAD,
 *    Polygraphy --plugins, ONNX Runtime's trt_extra_plugin_lib_paths).
 * No link-time dependency on libnvinfer: TensorRT's functions are looked up at run time.
 */
#include "NVFP4LinearPlugin.h"
#include "NVFP4MoEPlugin.h"
#include "pluginLogging.h"

#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <vector>

using namespace nvinfer1;

namespace
{

template <typename Creator>
IPluginCreatorV3One* instance()
{
    static Creator creator;
    return &creator;
}

// Every creator of this library. A new plugin adds one line here (and includes its header above).
std::vector<IPluginCreatorV3One*> const& creators()
{
    static std::vector<IPluginCreatorV3One*> const list{
        instance<plugin::NVFP4LinearPluginCreator>(),
        instance<plugin::NVFP4MoEPluginCreator>(),
    };
    return list;
}

std::mutex gRegistrationMutex;
IPluginRegistry* gStaticRegistry{nullptr};               // where the static initializer registered
std::vector<IPluginCreatorV3One*> gStaticallyRegistered; // ... these creators

// Whether a V3 creator of this name, version and namespace is registered. Scans getAllCreators():
// getCreator() would report a "Cannot find plugin" error to the registry's recorder when there is none.
bool isRegistered(IPluginRegistry* registry, IPluginCreatorV3One const* creator)
{
    int32_t count = 0;
    IPluginCreatorInterface* const* all = registry->getAllCreators(&count);
    for (int32_t i = 0; all != nullptr && i < count; ++i)
    {
        IPluginCreatorInterface* c = all[i];
        if (c != nullptr && std::strcmp(c->getInterfaceInfo().kind, "PLUGIN CREATOR_V3ONE") == 0)
        {
            auto* v3 = static_cast<IPluginCreatorV3One*>(c);
            if (std::strcmp(v3->getPluginName(), creator->getPluginName()) == 0
                && std::strcmp(v3->getPluginVersion(), creator->getPluginVersion()) == 0
                && std::strcmp(v3->getPluginNamespace(), creator->getPluginNamespace()) == 0)
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

// Registers the creators when this library is dlopen()ed into a process that already has TensorRT
// loaded (the REGISTER_TENSORRT_PLUGIN behaviour, without linking libnvinfer). Only with the TensorRT
// major version the library was compiled for: the IPluginRegistry vtable differs between majors.
struct StaticRegistration
{
    StaticRegistration()
    {
        using GetMajor = int32_t (*)();
        auto getMajor = reinterpret_cast<GetMajor>(nvfp4::findTensorRTSymbol("getInferLibMajorVersion"));
        IPluginRegistry* registry = nvfp4::findPluginRegistry();
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
            getMajor = reinterpret_cast<GetMajor>(nvfp4::findTensorRTSymbol("getInferLibMajorVersion"));
            registry = nvfp4::findPluginRegistry();
            if (registry == nullptr || getMajor == nullptr)
            {
                std::fprintf(stderr,
                    "[nvfp4 plugin] LD_PRELOAD: neither libnvinfer.so.%d nor libnvinfer_lean.so.%d could be loaded; "
                    "the plugin creators are not registered\n",
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
                "[nvfp4 plugin] not registering: this library was built for TensorRT %d, the process runs "
                "TensorRT %d; rebuild it against that version's headers\n",
                NV_TENSORRT_MAJOR, getMajor());
            return;
        }
        std::lock_guard<std::mutex> lock(gRegistrationMutex);
        for (IPluginCreatorV3One* creator : creators())
        {
            // Another copy of the library may have registered it already.
            if (!isRegistered(registry, creator) && registry->registerCreator(*creator, creator->getPluginNamespace()))
            {
                gStaticRegistry = registry;
                gStaticallyRegistered.push_back(creator);
            }
        }
    }
};

StaticRegistration const gStaticRegistration;

} // namespace

extern "C" void setLoggerFinder(ILoggerFinder* finder)
{
    nvfp4::setLoggerFinder(finder);
}

// IPluginRegistry::loadLibrary's entry point. If the static initializer already registered the
// creators (TensorRT was loaded when loadLibrary dlopen()ed us), that registration is withdrawn so
// that the registry holds each creator once, owned by the library handle.
extern "C" IPluginCreatorInterface* const* getCreators(int32_t& nbCreators)
{
    {
        std::lock_guard<std::mutex> lock(gRegistrationMutex);
        for (IPluginCreatorV3One* creator : gStaticallyRegistered)
        {
            gStaticRegistry->deregisterCreator(*creator);
        }
        gStaticallyRegistered.clear();
        gStaticRegistry = nullptr;
    }
    static std::vector<IPluginCreatorInterface*> const list(creators().begin(), creators().end());
    nbCreators = static_cast<int32_t>(list.size());
    return list.data();
}
