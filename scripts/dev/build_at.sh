#!/usr/bin/env bash
# The kernels library as of a git revision, for timing commits against each other (bench_libs.py):
# extracts that revision's trt_plugin_src/ to build/NAME/src (git archive; the work tree stays as it
# is) and builds build/NAME/libnvfp4_kernels.so with this tree's build_kernels.sh.
# Usage: scripts/dev/build_at.sh REV NAME [ARCHS]
#   e.g. build_at.sh HEAD base && build_at.sh my-branch new, then
#        bench_libs.py --libs base=build/base/libnvfp4_kernels.so,new=build/new/libnvfp4_kernels.so
set -euo pipefail
cd "$(dirname "$0")/../.."
rev=$1; name=$2; archs=${3:-90a}
git rev-parse --verify --quiet "$rev^{commit}" >/dev/null || { echo "build_at.sh: no revision '$rev'" >&2; exit 2; }
[[ "$name" =~ ^[A-Za-z0-9._-]+$ ]] || { echo "build_at.sh: NAME must be a plain folder name" >&2; exit 2; }
rm -rf "build/$name"
mkdir -p "build/$name/src"
git archive "$rev" trt_plugin_src | tar -x -C "build/$name/src"
echo "build/$name: kernels of $(git rev-parse --short "$rev")"
KERNELS_SRC="build/$name/src/trt_plugin_src/nvfp4Linear/kernels" scripts/dev/build_kernels.sh "build/$name" "$archs"
