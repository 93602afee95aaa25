#!/usr/bin/env bash
# One GPU device call for the NVFP4MoE kernels, from a repository root on the GPU machine:
#   scripts/dev/moe_device_run.sh [SECONDS]      (the time the call may take, default 230)
# In parallel: the GPU check (scripts/check/gpu_check_moe.py, all cases), compute-sanitizer
# memcheck over its --quick cases, and the C++ lean-runtime plugin test (enqueue of both plugins)
# when build/leanRuntimePluginTest is there and libnvinfer_lean is found (LEAN_LIB_XZ: an xz copy
# of it to unpack first). Then the benchmark (scripts/bench/bench_moe.py; --quick when little time
# is left). Uses $NVFP4_KERNELS_LIB (default build/libnvfp4_kernels.so), building it with CMake if it
# does not load. Writes everything under ${OUT:-out/device}; prints a summary last.
set -uo pipefail
cd "$(dirname "$0")/../.."
budget=${1:-230}
out=${OUT:-out/device}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
export NVFP4_KERNELS_LIB=${NVFP4_KERNELS_LIB:-$PWD/build/libnvfp4_kernels.so}
card=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1 | tr ' ' '-')
day=$(date -u +%Y-%m-%d)
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"

if ! python3 -c "from plugins import moe_kernels; moe_kernels.library()" 2>/tmp/moe-load-error.txt; then
    echo "== $NVFP4_KERNELS_LIB does not load ($(tail -1 /tmp/moe-load-error.txt)): building it"
    cmake -S . -B build-device -DCMAKE_BUILD_TYPE=Release -DNVFP4_CUDA_ARCHS=90a > "$out/build.txt" 2>&1 \
        && cmake --build build-device --target nvfp4_kernels -j"$(nproc)" >> "$out/build.txt" 2>&1
    export NVFP4_KERNELS_LIB=$PWD/build-device/libnvfp4_kernels.so
fi

left() { echo $(( budget - SECONDS )); }
t=$(( $(left) - 70 )); [ "$t" -gt 200 ] && t=200
timeout "$t" compute-sanitizer --tool memcheck --print-limit 20 python3 scripts/check/gpu_check_moe.py --quick \
    > "$out/moe-sanitizer-memcheck-$card-$day.txt" 2>&1 &
sanitizer=$!
lean=""
if [ -x build/leanRuntimePluginTest ]; then
    if [ -n "${LEAN_LIB_XZ:-}" ] && [ -f "$LEAN_LIB_XZ" ]; then
        mkdir -p /tmp/nvfp4-lean && python3 -c "import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], 'wb'))" \
            "$LEAN_LIB_XZ" /tmp/nvfp4-lean/libnvinfer_lean.so.11
        export LD_LIBRARY_PATH=/tmp/nvfp4-lean:${LD_LIBRARY_PATH:-}
    fi
    timeout "$t" build/leanRuntimePluginTest build/libnvfp4_trt_plugin.so > "$out/moe-lean-runtime-enqueue-$card-$day.txt" 2>&1 &
    lean=$!
fi
check="$out/moe-correctness-$card-$day.txt"
timeout "$t" python3 scripts/check/gpu_check_moe.py > "$check" 2>&1
echo "== gpu_check_moe exit $? at ${SECONDS}s"
wait $sanitizer; echo "== memcheck exit $? at ${SECONDS}s"
[ -n "$lean" ] && { wait $lean; echo "== lean-runtime test exit $? at ${SECONDS}s"; }

quick=""; [ "$(left)" -lt 75 ] && quick="--quick"
timeout $(( $(left) > 20 ? $(left) - 10 : 10 )) python3 scripts/bench/bench_moe.py $quick --replays 20 \
    --out-dir "$out" > "$out/bench.log" 2>&1
echo "== bench_moe $quick exit $? at ${SECONDS}s"

echo "================ summary"
grep -E "FAIL|Error|error" "$check" | head -8
tail -1 "$check"
grep -E "ERROR SUMMARY|gpu_check_moe:" "$out/moe-sanitizer-memcheck-$card-$day.txt" | tail -3
[ -n "$lean" ] && { grep -E "^FAIL" "$out/moe-lean-runtime-enqueue-$card-$day.txt" | head -5;
                    grep -cE "^PASS.*enqueue" "$out/moe-lean-runtime-enqueue-$card-$day.txt";
                    tail -1 "$out/moe-lean-runtime-enqueue-$card-$day.txt"; }
cat "$out/bench.log" | tail -14
