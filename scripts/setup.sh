#!/usr/bin/env bash
# Sets up this checkout for the whole pipeline and builds the native libraries into build/.
#
# Python environment: `.venv/` in the repository is the interpreter every README command uses
# (`.venv/bin/python3 scripts/...`). It is
#   - the folder itself, if .venv/ is already a virtual environment;
#   - else a link to the active virtual environment or conda environment (VIRTUAL_ENV, CONDA_PREFIX);
#   - else a new virtual environment, when `python3` is a distribution's (PEP 668 "externally
#     managed": Debian 12/13, Ubuntu 23.04+; it needs the python3-venv package);
#   - else a link to `python3`'s own prefix (pyenv, python.org, a container's Python).
# PYTHON=/path/to/python3 chooses the interpreter instead of `python3`.
#
# What it installs and downloads:
#   - torch first, pinned (TORCH_SPEC, default torch==2.13.0), so that no other requirement pulls a
#     multi-GB CUDA build; then this project with its test extras (pip, from your package index);
#   - ONNX Runtime's C headers (not in its wheel), when the machine lacks them: Debian's
#     libonnxruntime-dev (~1 MB), unpacked into build/deps without installing it;
#   - cuBLAS's headers (cublasLt.h, from the ~440 MB nvidia-cublas wheel), only where the cuBLASLt
#     paths run (this machine has a GPU of sm_80 or newer, or NVFP4_CUDA_ARCHS names sm_100/sm_120)
#     and neither the CUDA toolkit nor CUBLASLT_INCLUDE_DIR has them. Elsewhere those paths are
#     compiled out (the fused-decode 16-bit tensor-core kernels run every M).
# Then the CMake build: ORT custom-op library (always), CUDA kernels (where nvcc exists), TensorRT
# plugin (where TensorRT headers exist; CMake says so when they don't).
# Idempotent: rerunning only rebuilds what changed.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "setup: $*" >&2; exit 2; }

base=${PYTHON:-python3}
command -v "$base" >/dev/null || fail "no '$base' on PATH; install Python >= 3.10 (Debian/Ubuntu: apt-get install python3 python3-venv)"

prefix_of() { "$1" -c 'import sys; print(sys.prefix)'; }

if [[ -d .venv && ! -L .venv ]]; then
    [[ -x .venv/bin/python3 ]] || fail ".venv/ exists but has no bin/python3; remove it or make it a virtual environment"
elif [[ -n "${VIRTUAL_ENV:-}${CONDA_PREFIX:-}" && -z "${PYTHON:-}" ]]; then
    env_dir=${VIRTUAL_ENV:-$CONDA_PREFIX}
    [[ -x "$env_dir/bin/python3" ]] || fail "the active environment $env_dir has no bin/python3"
    ln -sfn "$env_dir" .venv
elif "$base" -c 'import sys, sysconfig, os; sys.exit(not os.path.exists(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")) or sys.prefix != sys.base_prefix)'; then
    # A distribution's Python (PEP 668): pip may not install into it; a virtual environment it is.
    "$base" -c 'import ensurepip, venv' 2>/dev/null \
        || fail "$base cannot create virtual environments; install python3-venv (Debian/Ubuntu: sudo apt-get install python3-venv)"
    rm -f .venv
    "$base" -m venv .venv
else
    ln -sfn "$(prefix_of "$base")" .venv
fi
PY=$PWD/.venv/bin/python3
"$PY" -c 'import sys; sys.exit(sys.version_info < (3, 10))' || fail "$("$PY" --version) is too old; Python >= 3.10 is needed"
echo "setup: Python environment .venv -> $(readlink -f .venv)"

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

# The cuBLASLt paths run here: the GPU is sm_80 or newer (the dequantize-then-GEMM path at large M;
# the native FP4 path on sm_100/sm_120), or the build is asked for sm_100/sm_120.
uses_cublaslt() {
    if [[ -n "${NVFP4_CUDA_ARCHS:-}" && ";$NVFP4_CUDA_ARCHS;" =~ \;1[0-9][0-9][af]?\; ]]; then
        return 0
    fi
    command -v nvidia-smi >/dev/null || return 1
    nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | grep -qE '^([89]|[1-9][0-9])\.'
}
cublas_include=${CUBLASLT_INCLUDE_DIR:-}
# The toolkit's include folder as nvcc itself reports it (nvcc may be a wrapper script).
cuda_top=$(nvcc -v --dryrun -x cu -c /dev/null -o /dev/null 2>&1 | sed -n 's/^#\$ TOP=//p' | head -1 || true)
if [[ -z "$cublas_include" && -n "$cuda_top" && ! -f "$cuda_top/include/cublasLt.h" ]] && uses_cublaslt; then
    cublas_version=13.8.2.12
    cublas_include="$HOME/.cache/nvfp4-export/cublas-$cublas_version/include"
    if [[ ! -f "$cublas_include/cublasLt.h" ]]; then
        NVFP4_CUBLAS_VERSION=$cublas_version PYTHON="$PY" bash scripts/dev/fetch_cublas_headers.sh "$(dirname "$cublas_include")"
    fi
fi

cmake_args=(-S . -B build --no-warn-unused-cli -DCMAKE_BUILD_TYPE=Release "-DPython3_EXECUTABLE=$PY")
[[ -n "$ort_include" ]] && cmake_args+=("-DORT_INCLUDE_DIR=$ort_include")
[[ -n "$cublas_include" ]] && cmake_args+=("-DCUBLASLT_INCLUDE_DIR=$cublas_include")
[[ -n "${NVFP4_CUDA_ARCHS:-}" ]] && cmake_args+=("-DNVFP4_CUDA_ARCHS=$NVFP4_CUDA_ARCHS")
cmake "${cmake_args[@]}" >/dev/null
cmake --build build -j"$(nproc)"
