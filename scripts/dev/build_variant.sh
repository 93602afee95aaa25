#!/usr/bin/env bash
# A kernel variant for an experiment: copies the kernel sources to build/NAME/src, edits the copy's
# tuning table (nvfp4Tuning.h) with sed expressions and builds build/NAME/libnvfp4_kernels.so
# (build_kernels.sh). The product sources stay untouched; a variant that wins is adopted by
# editing the table itself.
# Usage: scripts/dev/build_variant.sh NAME 'SED_EXPRESSION' [ARCHS]
#   e.g. build_variant.sh gemv-to-32 's/kDispatchHopper{40}/kDispatchHopper{32}/'
set -euo pipefail
cd "$(dirname "$0")/../.."
name=$1; edit=$2; archs=${3:-90a}
dst=build/$name/src/trt_plugin_src
rm -rf "build/$name"
mkdir -p "$dst/nvfp4Linear"
cp -r trt_plugin_src/common "$dst/"
cp -r trt_plugin_src/nvfp4Linear/kernels "$dst/nvfp4Linear/"
sed -i -e "$edit" "$dst/nvfp4Linear/kernels/nvfp4Tuning.h"
if cmp -s trt_plugin_src/nvfp4Linear/kernels/nvfp4Tuning.h "$dst/nvfp4Linear/kernels/nvfp4Tuning.h"; then
    echo "build_variant.sh: '$edit' changed nothing in nvfp4Tuning.h" >&2
    exit 2
fi
diff trt_plugin_src/nvfp4Linear/kernels/nvfp4Tuning.h "$dst/nvfp4Linear/kernels/nvfp4Tuning.h" || true
KERNELS_SRC="$dst/nvfp4Linear/kernels" scripts/dev/build_kernels.sh "build/$name" "$archs"
