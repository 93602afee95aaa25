#!/usr/bin/env bash
# Sets up a fresh machine for the whole pipeline and builds the native libraries into build/.
#   - Python packages: torch first (a pinned build, so that no other requirement pulls a multi-GB
#     CUDA build), then this project with its test extras.
#   - ONNX Runtime's C headers (not in its wheel): from Debian's libonnxruntime-dev, unpacked
#     into build/deps without installing it (skipped when they are already on the machine).
#   - cuBLAS's headers (cublasLt.h; the Blackwell native FP4 path only needs its declarations):
#     where neither the CUDA toolkit nor CUBLASLT_INCLUDE_DIR has them, the pinned nvidia-cublas
#     wheel's include folder is unpacked into ~/.cache/nvfp4-export (outside the repository).
#   - CMake build: ORT custom-op library (always), CUDA kernels (where nvcc exists), TensorRT
#     plugin (where TensorRT headers exist; CMake says so when they don't).
# Idempotent: rerunning only rebuilds what changed.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}

"$PY" -m pip install -q --disable-pip-version-check "$TORCH_SPEC"
"$PY" -m pip install -q --disable-pip-version-check -e ".[test]"

ort_include=${ORT_INCLUDE_DIR:-}
if [[ -z "$ort_include" && ! -f /usr/include/onnxruntime/onnxruntime_c_api.h ]]; then
    ort_include="$PWD/build/deps/ort/usr/include/onnxruntime"
    if [[ ! -f "$ort_include/onnxruntime_c_api.h" ]]; then
        bash scripts/dev/fetch_ort_headers.sh "$PWD/build/deps/ort"
    fi
fi

cublas_include=${CUBLASLT_INCLUDE_DIR:-}
# The toolkit's include folder as nvcc itself reports it (nvcc may be a wrapper script).
cuda_top=$(nvcc -v --dryrun -x cu -c /dev/null -o /dev/null 2>&1 | sed -n 's/^#\$ TOP=//p' | head -1 || true)
if [[ -z "$cublas_include" && -n "$cuda_top" && ! -f "$cuda_top/include/cublasLt.h" ]]; then
    cublas_version=13.8.2.12
    cublas_include="$HOME/.cache/nvfp4-export/cublas-$cublas_version/include"
    if [[ ! -f "$cublas_include/cublasLt.h" ]]; then
        NVFP4_CUBLAS_VERSION=$cublas_version bash scripts/dev/fetch_cublas_headers.sh "$(dirname "$cublas_include")"
    fi
fi

cmake_args=(-S . -B build -DCMAKE_BUILD_TYPE=Release)
[[ -n "$ort_include" ]] && cmake_args+=("-DORT_INCLUDE_DIR=$ort_include")
[[ -n "$cublas_include" ]] && cmake_args+=("-DCUBLASLT_INCLUDE_DIR=$cublas_include")
[[ -n "${NVFP4_CUDA_ARCHS:-}" ]] && cmake_args+=("-DNVFP4_CUDA_ARCHS=$NVFP4_CUDA_ARCHS")
cmake "${cmake_args[@]}" >/dev/null
cmake --build build -j"$(nproc)"
