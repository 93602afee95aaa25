"""NVFP4 checkpoint reading, NVFP4 math, torch references and ONNX export."""
