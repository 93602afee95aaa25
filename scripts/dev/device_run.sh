#!/usr/bin/env bash
# One GPU session: correctness, sanitizers, variant timings and the benchmarks, in one command.
# Usage (from the repo root, on the GPU machine): scripts/dev/device_run.sh STEPS...
#   unpack      every *.so.xz under $UNPACK_DIR (default build/dev) decompressed next to itself:
#               variant builds travel to the GPU machine xz-compressed (~10 MB each, ~0.6 MB packed)
#   build       the kernels library: $NVFP4_KERNELS_LIB if it loads with both op families, else the
#               product's CMake build of it (sm_${ARCHS:-90a}) into build-device/
#   check       scripts/check/gpu_check.py, every NVFP4Linear kernel family
#   check-fast  the same without the SIMT and tiled families (for a change to the others)
#   fp4-pack    scripts/check/gpu_check_fp4_pack.py (the Blackwell path's packing kernels, any GPU)
#   memcheck, racecheck   compute-sanitizer over gpu_check --quick (racecheck: GEMV and wgmma
#               families, one run per dtype in $RACECHECK_DTYPES, default "fp32 bf16"), each at most
#               $SANITIZER_S seconds (default 150)
#   libs        scripts/dev/bench_libs.py --libs "$LIBS" --shapes "$SHAPES" --m "$MS" --bf16, within
#               $LIBS_S seconds (default 400)
#   bench-quick scripts/bench/bench_gemm.py --quick, the plugin's kernels and bf16
#   bench-full  scripts/bench/bench_gemm.py, every shape, M and peer (the committed per-card record)
#   ncu         Nsight Compute of GEMV launches (M = 1 and 16) and one wgmma launch
#   moe         the NVFP4MoE kernels, within $MOE_S seconds (default 230): in parallel
#               scripts/check/gpu_check_moe.py (all cases), compute-sanitizer memcheck over its
#               --quick cases and the C++ lean-runtime test (both plugins' enqueue; needs
#               build/leanRuntimePluginTest and libnvinfer_lean, which $LEAN_LIB_XZ, an xz copy of
#               it, provides where the wheel is absent); then scripts/bench/bench_moe.py (--quick
#               when less than 75 s are left)
#   pack        moves every file under the output folder into one archive,
#               device-<card>-<UTC time>.tar.gz (last, so that a remote run returns one file)
# Uses $NVFP4_KERNELS_LIB (default build/libnvfp4_kernels.so) and build/libnvfp4_trt_plugin.so;
# writes everything under ${OUT:-out/device} and prints each step's duration, so that a session on
# a time-limited GPU machine can be planned.
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-out/device}
mkdir -p "$out"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
export NVFP4_KERNELS_LIB=${NVFP4_KERNELS_LIB:-$PWD/build/libnvfp4_kernels.so}
card=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1 | tr ' ' '-')
day=$(date -u +%Y-%m-%d)
stamp=$(date -u +%Y-%m-%dT%H%M%S)
echo "== $(date -u +%T) card $card, lib $NVFP4_KERNELS_LIB"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.limit --format=csv
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"

sanitize() { # tool, extra gpu_check arguments, report name suffix
  # Every kernel is instrumented: with a --kernel-name filter, racecheck failed on a hardware
  # exception inside torch's 16-bit reference kernels (H100, 2026-12-05). Its reports on cuBLAS's
  # nvjet kernels (the torch reference) are not the project's; the count below is.
  local report="$out/sanitizer-$1${3:-}-$card-$day.txt"
  timeout "${SANITIZER_S:-150}" compute-sanitizer --tool "$1" --target-processes all --print-limit 20 \
    python3 scripts/check/gpu_check.py --quick $2 > "$report" 2>&1
  echo "$1${3:-} exit $?; reports naming the project's kernels: $(grep -E '^=+ +(Error|Warning)' "$report" | grep -c nvfp4)"
  tail -3 "$report"
}

build_kernels() {
  local why
  if why=$(python3 -c "from plugins import kernels, moe_kernels; kernels.library(); moe_kernels.library()" 2>&1); then
    echo "$NVFP4_KERNELS_LIB loads"; return
  fi
  echo "$NVFP4_KERNELS_LIB does not load ($(echo "$why" | tail -1)): building it"
  cmake -S . -B build-device -DCMAKE_BUILD_TYPE=Release -DNVFP4_CUDA_ARCHS="${ARCHS:-90a}" \
      > "$out/build-$card-$day.txt" 2>&1 \
    && cmake --build build-device --target nvfp4_kernels -j"$(nproc)" >> "$out/build-$card-$day.txt" 2>&1
  echo "build exit $?"; tail -3 "$out/build-$card-$day.txt"
  export NVFP4_KERNELS_LIB=$PWD/build-device/libnvfp4_kernels.so
}

moe() { # the MoE kernels: check, memcheck and lean-runtime enqueue in parallel, then the benchmark
  local budget=${MOE_S:-230} start=$SECONDS t sanitizer lean="" check="$out/moe-correctness-$card-$day.txt"
  left() { echo $(( budget - (SECONDS - start) )); }
  t=$(( $(left) - 70 )); [ "$t" -gt 200 ] && t=200
  timeout "$t" compute-sanitizer --tool memcheck --print-limit 20 python3 scripts/check/gpu_check_moe.py --quick \
    > "$out/moe-sanitizer-memcheck-$card-$day.txt" 2>&1 &
  sanitizer=$!
  if [ -x build/leanRuntimePluginTest ]; then
    if [ -n "${LEAN_LIB_XZ:-}" ] && [ -f "$LEAN_LIB_XZ" ]; then
      mkdir -p build-device/lean
      python3 -c "import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], 'wb'))" \
        "$LEAN_LIB_XZ" build-device/lean/libnvinfer_lean.so.11
      export LD_LIBRARY_PATH=$PWD/build-device/lean:${LD_LIBRARY_PATH:-}
    fi
    timeout "$t" build/leanRuntimePluginTest build/libnvfp4_trt_plugin.so \
      > "$out/moe-lean-runtime-enqueue-$card-$day.txt" 2>&1 &
    lean=$!
  fi
  timeout "$t" python3 scripts/check/gpu_check_moe.py > "$check" 2>&1
  echo "gpu_check_moe exit $?"
  wait $sanitizer; echo "memcheck exit $?"
  [ -n "$lean" ] && { wait $lean; echo "lean-runtime test exit $?"; }
  local quick=""; [ "$(left)" -lt 75 ] && quick="--quick"
  timeout $(( $(left) > 20 ? $(left) - 10 : 10 )) python3 scripts/bench/bench_moe.py $quick --replays 20 \
    --out-dir "$out" > "$out/moe-bench-log-$card-$day.txt" 2>&1
  echo "bench_moe $quick exit $?"
  grep -E "FAIL|Error|error" "$check" | head -8
  tail -1 "$check"
  grep -E "ERROR SUMMARY|gpu_check_moe:" "$out/moe-sanitizer-memcheck-$card-$day.txt" | tail -3
  [ -n "$lean" ] && { grep -E "^FAIL" "$out/moe-lean-runtime-enqueue-$card-$day.txt" | head -5
                      echo "$(grep -cE "^PASS.*enqueue" "$out/moe-lean-runtime-enqueue-$card-$day.txt") enqueue checks passed"
                      tail -1 "$out/moe-lean-runtime-enqueue-$card-$day.txt"; }
  tail -14 "$out/moe-bench-log-$card-$day.txt"
}

pack() { # every entry of $out but earlier archives into one archive, then the entries removed
  local archive="device-$card-$stamp.tar.gz" entries
  mapfile -t entries < <(cd "$out" && find . -mindepth 1 -maxdepth 1 ! -name 'device-*.tar.gz' ! -name '.device-*' \
                           -printf '%P\n' | sort)
  if [ ${#entries[@]} -eq 0 ]; then echo "nothing to pack"; return; fi
  tar -czf "$out/.$archive" -C "$out" -- "${entries[@]}" \
    && (cd "$out" && rm -rf -- "${entries[@]}") && mv "$out/.$archive" "$out/$archive"
  echo "packed ${#entries[@]} entries into $out/$archive ($(du -h "$out/$archive" | cut -f1))"
}

for step in "$@"; do
  t0=$SECONDS
  echo "== $(date -u +%T) step $step (at ${SECONDS}s)"
  case $step in
    unpack)
      python3 - "${UNPACK_DIR:-build/dev}" <<'PY'
import lzma, pathlib, shutil, sys
for packed in sorted(pathlib.Path(sys.argv[1]).rglob("*.so.xz")):
    with lzma.open(packed) as src, open(packed.with_suffix(""), "wb") as dst:
        shutil.copyfileobj(src, dst)
    print("unpacked", packed.with_suffix(""))
PY
      ;;
    build) build_kernels ;;
    check)
      timeout 300 python3 scripts/check/gpu_check.py --report "$out/correctness-$card-$day.txt" | tail -5 ;;
    check-fast)
      timeout 300 python3 scripts/check/gpu_check.py --skip-paths simt,tiled \
        --report "$out/correctness-fast-$card-$day.txt" | tail -5 ;;
    fp4-pack)
      timeout 120 python3 scripts/check/gpu_check_fp4_pack.py > "$out/fp4-pack-check-$card-$day.txt" 2>&1
      echo "fp4-pack exit $?"; tail -3 "$out/fp4-pack-check-$card-$day.txt" ;;
    memcheck) sanitize memcheck "" ;;
    racecheck) # one run per activation dtype: a run over all of them outlasts the time limit
      for d in ${RACECHECK_DTYPES:-fp32 bf16}; do sanitize racecheck "--skip-paths simt,tiled,dequant_gemm --dtypes $d" "-$d"; done ;;
    libs)
      # rows go to the file as they are measured, so that a timeout or a crash keeps the rows before it
      timeout "${LIBS_S:-400}" python3 scripts/dev/bench_libs.py --libs "$LIBS" --shapes "$SHAPES" --m "$MS" --bf16 \
        > "$out/libs-$card-$day.txt" 2>&1; echo "libs exit $?"; cat "$out/libs-$card-$day.txt" ;;
    bench-quick)
      timeout 300 python3 scripts/bench/bench_gemm.py --quick --kernels nvfp4_w4a4,nvfp4_w4a16,bf16 \
        --out-dir "$out" --min-replays 20 --max-replays 50 | tail -30 ;;
    bench-full)
      timeout "${BENCH_S:-400}" python3 scripts/bench/bench_gemm.py --out-dir "$out" --max-replays 60 \
        2> "$out/bench-log-$card-$day.txt" | head -20; echo "bench exit ${PIPESTATUS[0]}" ;;
    ncu)
      for spec in "1 4096->14336 gemv" "16 8192->57344 gemv" "64 8192->57344 wgmma"; do
        set -- $spec
        timeout 120 ncu --clock-control none --kernel-name "regex:$3" --launch-skip 1 --launch-count 1 \
          --section SpeedOfLight --section MemoryWorkloadAnalysis --section SchedulerStats \
          --section WarpStateStats --section ComputeWorkloadAnalysis --section Occupancy \
          python3 scripts/dev/profile_linear.py --shape "$2" --m "$1" --mode w4a4 > "$out/ncu-$3-M$1.txt" 2>&1
        echo "ncu $spec exit $?"
      done ;;
    moe) moe ;;
    pack) pack ;;
    *) echo "unknown step $step" ;;
  esac
  echo "== step $step took $((SECONDS - t0)) s"
done
echo "== $(date -u +%T) done"
