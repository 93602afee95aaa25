"""Where the built C++/CUDA libraries are: an explicit path, an environment variable, or `build/`.

    find_plugin_library()   -> libnvfp4_trt_plugin.so  (TensorRT plugin; env NVFP4_PLUGIN_LIB)
    find_ort_library()      -> libnvfp4_ort_ops.so     (ONNX Runtime custom ops; env NVFP4_ORT_LIB)
    find_kernels_library()  -> libnvfp4_kernels.so     (CUDA kernels for ctypes; env NVFP4_KERNELS_LIB)

Build them with `cmake -S . -B build -DCMAKE_BUILD_TYPE=Release && cmake --build build -j2`.
"""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
BUILD_DIR = REPO_ROOT / "build"
BUILD_COMMAND = "cmake -S . -B build -DCMAKE_BUILD_TYPE=Release && cmake --build build -j2"

PLUGIN_LIBRARY = "libnvfp4_trt_plugin.so"
ORT_LIBRARY = "libnvfp4_ort_ops.so"
KERNELS_LIBRARY = "libnvfp4_kernels.so"


def _find(file_name: str, env_var: str, path: str | os.PathLike | None) -> Path:
    if path is not None:
        candidate, origin = Path(path), "the path given"
    elif os.environ.get(env_var):
        candidate, origin = Path(os.environ[env_var]), f"${env_var}"
    else:
        candidate, origin = BUILD_DIR / file_name, "the build directory"
    if not candidate.is_file():
        raise FileNotFoundError(
            f"{candidate}: {file_name} not found ({origin}); build it with `{BUILD_COMMAND}` "
            f"in {REPO_ROOT} or set {env_var}"
        )
    return candidate.resolve()


def find_plugin_library(path: str | os.PathLike | None = None) -> Path:
    return _find(PLUGIN_LIBRARY, "NVFP4_PLUGIN_LIB", path)


def find_ort_library(path: str | os.PathLike | None = None) -> Path:
    return _find(ORT_LIBRARY, "NVFP4_ORT_LIB", path)


def find_kernels_library(path: str | os.PathLike | None = None) -> Path:
    return _find(KERNELS_LIBRARY, "NVFP4_KERNELS_LIB", path)
