// Reporting from inside a TensorRT plugin library that does not link libnvinfer: the logger and the
// plugin registry are looked up at run time (dlsym) in the TensorRT library the process has loaded.
// Shared by every plugin of the library (trt_plugin_src/api/pluginLibrary.cpp wires the entry points).
#pragma once

#include <NvInferRuntime.h>

#include <string>

namespace nvfp4
{

// A symbol of the TensorRT library already loaded in this process, or nullptr (never loads one).
void* findTensorRTSymbol(char const* symbol);

// getPluginRegistry() of the loaded TensorRT, or nullptr.
nvinfer1::IPluginRegistry* findPluginRegistry();

// What IPluginRegistry::loadLibrary hands over through the library's setLoggerFinder entry point.
void setLoggerFinder(nvinfer1::ILoggerFinder* finder);

// `text` to TensorRT's logger (stderr without one) and, for errors, to `recorder`, else to the plugin
// registry's error recorder. Never throws.
void report(nvinfer1::ILogger::Severity severity, std::string const& text,
    nvinfer1::IErrorRecorder* recorder = nullptr) noexcept;

} // namespace nvfp4
