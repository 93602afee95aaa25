"""Python side of the NVFP4Linear plugin: finding and loading the built libraries, ONNX Runtime
and Polygraphy glue, and ctypes access to the CUDA kernels for tests and benchmarks."""
