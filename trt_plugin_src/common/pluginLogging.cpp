#include "pluginLogging.h"

#include <dlfcn.h>

#include <cstdio>
#include <mutex>

namespace nvfp4
{

using namespace nvinfer1;

// RTLD_DEFAULT misses libraries loaded RTLD_LOCAL (e.g. as a dependency of Triton's TensorRT backend),
// so the usual sonames are also asked with RTLD_NOLOAD, which returns a library only if it is loaded.
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

IPluginRegistry* findPluginRegistry()
{
    using GetRegistry = IPluginRegistry* (*) ();
    auto getRegistry = reinterpret_cast<GetRegistry>(findTensorRTSymbol("getPluginRegistry"));
    return getRegistry ? getRegistry() : nullptr;
}

namespace
{

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

} // namespace

void setLoggerFinder(ILoggerFinder* finder)
{
    std::lock_guard<std::mutex> lock(gLoggerMutex);
    gLoggerFinder = finder;
}

void report(ILogger::Severity severity, std::string const& text, IErrorRecorder* recorder) noexcept
{
    try
    {
        if (ILogger* logger = findLogger())
        {
            logger->log(severity, text.c_str());
        }
        else
        {
            std::fprintf(stderr, "[nvfp4 plugin] %s\n", text.c_str());
        }
        if (severity <= ILogger::Severity::kERROR)
        {
            if (recorder == nullptr)
            {
                IPluginRegistry* registry = findPluginRegistry();
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

} // namespace nvfp4
