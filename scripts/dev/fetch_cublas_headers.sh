#!/usr/bin/env bash
# Puts cuBLAS's C headers (cublasLt.h, cublas_api.h, ...) into DEST/include for the native FP4
# path's adaptor (trt_plugin_src/nvfp4Linear/kernels/nvfp4CublasLt.cu), which only needs the
# declarations: the library itself is opened at run time. The headers come from the pinned PyPI
# wheel nvidia-cublas (pip download --no-deps, ~440 MB; or a local copy: NVFP4_CUBLAS_WHEEL=path),
# of which only nvidia/cu13/include/*.h and the licence are unpacked. They are read at build time,
# never committed or redistributed (NVIDIA CUDA Toolkit EULA, in DEST/License.txt).
#   scripts/dev/fetch_cublas_headers.sh DEST
set -euo pipefail
version=${NVFP4_CUBLAS_VERSION:-13.8.2.12}
dest=${1:?usage: fetch_cublas_headers.sh DEST}
PY=${PYTHON:-python3}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
wheel=${NVFP4_CUBLAS_WHEEL:-}
if [[ -z "$wheel" ]]; then
    "$PY" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
        "nvidia-cublas==$version" -d "$work"
    wheel=$(ls "$work"/nvidia_cublas-*.whl)
fi
mkdir -p "$dest/include"
"$PY" - "$wheel" "$dest" <<'PYEOF'
import sys, zipfile, pathlib
wheel, dest = sys.argv[1], pathlib.Path(sys.argv[2])
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        p = pathlib.PurePosixPath(name)
        if p.parent.as_posix().endswith("/include") and p.suffix == ".h":
            (dest / "include" / p.name).write_bytes(z.read(name))
        elif p.name == "License.txt" and ".dist-info/" in name:
            (dest / "License.txt").write_bytes(z.read(name))
PYEOF
test -f "$dest/include/cublasLt.h"
echo "cuBLAS $version headers in $dest/include"
