"""Shared session-scoped fixtures: seeded tiny HF models and tiny NVFP4 checkpoints.

- `make_tiny_hf(family="llama", dtype=torch.float32, tie_word_embeddings=None, seed=0) -> Path`
- `make_tiny_checkpoint(fmt, family="llama", w4a16=False, dtype=torch.float32, seed=0,
   exclude=("lm_head",), max_shard_bytes=None) -> Path` (made by export.quantize)
- `tiny_llama_dir`: the fp32 tiny llama; `tiny_checkpoint`: (format, path) for each of the three
  layouts (W4A4, tiny llama), parametrized.
- `lean_plugin_registry`: (the TensorRT lean runtime module, the built plugin library) with the
  library's creators registered; skips where either is missing.
- `compile_header_program(name, source) -> Path`: a C++17 program built with the system compiler
  against the kernels' host-usable headers (trt_plugin_src/nvfp4Linear/kernels); skips without one.
Every folder is made once per session, under pytest's session temp dir.
"""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from export.checkpoint import FORMATS


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


@pytest.fixture(scope="session")
def make_tiny_hf(tmp_path_factory):
    from export.tiny_models import make_tiny_hf_model

    cache: dict[tuple, Path] = {}

    def make(family: str = "llama", dtype: torch.dtype = torch.float32, tie_word_embeddings=None, seed: int = 0):
        key = (family, dtype, tie_word_embeddings, seed)
        if key not in cache:
            tie = {None: "default", True: "tied", False: "untied"}[tie_word_embeddings]
            out = tmp_path_factory.mktemp(f"hf-{family}-{_dtype_name(dtype)}-{tie}-s{seed}")
            cache[key] = make_tiny_hf_model(family, out, seed=seed, dtype=dtype,
                                            tie_word_embeddings=tie_word_embeddings)
        return cache[key]

    return make


@pytest.fixture(scope="session")
def make_tiny_checkpoint(tmp_path_factory, make_tiny_hf):
    from export.quantize import quantize_checkpoint

    cache: dict[tuple, Path] = {}

    def make(fmt: str, family: str = "llama", w4a16: bool = False, dtype: torch.dtype = torch.float32,
             seed: int = 0, exclude=("lm_head",), max_shard_bytes=None):
        key = (fmt, family, w4a16, dtype, seed, tuple(exclude), max_shard_bytes)
        if key not in cache:
            src = make_tiny_hf(family, dtype=dtype, seed=seed)
            mode = "w4a16" if w4a16 else "w4a4"
            out = tmp_path_factory.mktemp(f"nvfp4-{fmt}-{family}-{mode}-{_dtype_name(dtype)}") / "ckpt"
            quantize_checkpoint(src, out, fmt, w4a16=w4a16, seed=seed, exclude=tuple(exclude),
                                max_shard_bytes=max_shard_bytes)
            cache[key] = out
        return cache[key]

    return make


@pytest.fixture(scope="session")
def tiny_llama_dir(make_tiny_hf):
    return make_tiny_hf("llama")


@pytest.fixture(scope="session", params=FORMATS)
def tiny_checkpoint(request, make_tiny_checkpoint):
    return request.param, make_tiny_checkpoint(request.param)


@pytest.fixture(scope="session")
def lean_plugin_registry():
    from plugins.library import find_plugin_library
    from plugins.tensorrt_registry import import_tensorrt, load_creator

    trt = import_tensorrt("lean")
    if trt is None:
        pytest.skip("tensorrt_lean_bindings not installed")
    try:
        library = find_plugin_library()
    except FileNotFoundError as e:
        pytest.skip(f"TensorRT plugin not built: {e}")
    for op_type in ("NVFP4Linear", "NVFP4MoE"):
        load_creator(trt, library, op_type=op_type)
    return trt, library


KERNEL_HEADERS = Path(__file__).resolve().parent.parent / "trt_plugin_src" / "nvfp4Linear" / "kernels"


@pytest.fixture(scope="session")
def compile_header_program(tmp_path_factory):
    def compile_program(name: str, source: str) -> Path:
        cxx = shutil.which("g++") or shutil.which("c++") or shutil.which("clang++")
        if cxx is None:
            pytest.skip("no C++ compiler")
        d = tmp_path_factory.mktemp(name)
        (d / "main.cpp").write_text(source)
        exe = d / name
        subprocess.run([cxx, "-std=c++17", "-O1", "-Wall", "-Wextra", "-Werror", f"-I{KERNEL_HEADERS}",
                        str(d / "main.cpp"), "-o", str(exe)], check=True)
        return exe

    return compile_program
