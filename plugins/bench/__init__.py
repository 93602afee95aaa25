"""Benchmarks of the NVFP4Linear CUDA kernels beside their peers (run by scripts/bench/)."""
