#!/usr/bin/env bash
# One GPU device call: correctness, sanitizers, variant timings and the benchmark, in one command.
# Usage (from the repo root, on the GPU machine): scripts/dev/device_run.sh STEPS...
#   build       build/gpu/libnvfp4_kernels.so from the sources here (build_kernels.sh, sm_90a), unless
#               $NVFP4_KERNELS_LIB already names a library that exists
#   check       scripts/check/gpu_check.py, every kernel family
#   check-fast  the same without the SIMT and tiled families (for a change to the others)
#   fp4-pack    scripts/check/gpu_check_fp4_pack.py (the Blackwell path's packing kernels, any GPU)
#   memcheck, racecheck   compute-sanitizer over gpu_check --quick (GEMV and wgmma families for
#               racecheck), each at most $SANITIZER_S seconds (default 150)
#   libs        scripts/dev/bench_libs.py --libs "$LIBS" --shapes "$SHAPES" --m "$MS" --bf16
#   bench-quick scripts/bench/bench_gemm.py --quick, the plugin's kernels and bf16
#   bench-full  scripts/bench/bench_gemm.py, every shape, M and peer (the committed per-card record)
#   ncu         Nsight Compute of one GEMV and one wgmma launch
# Uses $NVFP4_KERNELS_LIB (default build/gpu/libnvfp4_kernels.so); writes everything under
# ${OUT:-out/device} and prints each step's duration, so the call can be planned to fit 10 minutes.
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-out/device}
mkdir -p "$out"
export NVFP4_KERNELS_LIB=${NVFP4_KERNELS_LIB:-$PWD/build/gpu/libnvfp4_kernels.so}
export PYTHONUNBUFFERED=1
card=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1 | tr ' ' '-')
day=$(date -u +%Y-%m-%d)
echo "== $(date -u +%T) card $card, lib $NVFP4_KERNELS_LIB"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.limit --format=csv
sanitize() { # tool, extra gpu_check arguments
  timeout "${SANITIZER_S:-150}" compute-sanitizer --tool "$1" --target-processes all --print-limit 20 \
    python3 scripts/check/gpu_check.py --quick $2 > "$out/sanitizer-$1-$card-$day.txt" 2>&1
  echo "$1 exit $?"; tail -3 "$out/sanitizer-$1-$card-$day.txt"
}
for step in "$@"; do
  t0=$SECONDS
  echo "== $(date -u +%T) step $step (at ${SECONDS}s)"
  case $step in
    build)
      [ -f "$NVFP4_KERNELS_LIB" ] || bash scripts/dev/build_kernels.sh build/gpu 90a ;;
    check)
      timeout 300 python3 scripts/check/gpu_check.py --report "$out/correctness-$card-$day.txt" | tail -5 ;;
    check-fast)
      timeout 300 python3 scripts/check/gpu_check.py --skip-paths simt,tiled \
        --report "$out/correctness-fast-$card-$day.txt" | tail -5 ;;
    fp4-pack)
      timeout 120 python3 scripts/check/gpu_check_fp4_pack.py > "$out/fp4-pack-check-$card-$day.txt" 2>&1
      echo "fp4-pack exit $?"; tail -3 "$out/fp4-pack-check-$card-$day.txt" ;;
    memcheck) sanitize memcheck "" ;;
    racecheck) sanitize racecheck "--skip-paths simt,tiled" ;;
    libs)
      timeout 400 python3 scripts/dev/bench_libs.py --libs "$LIBS" --shapes "$SHAPES" --m "$MS" --bf16 \
        --out "$out/libs-$card-$day.txt" > /dev/null; cat "$out/libs-$card-$day.txt" ;;
    bench-quick)
      timeout 300 python3 scripts/bench/bench_gemm.py --quick --kernels nvfp4_w4a4,nvfp4_w4a16,bf16 \
        --out-dir "$out" --min-replays 20 --max-replays 50 | tail -30 ;;
    bench-full)
      timeout "${BENCH_S:-400}" python3 scripts/bench/bench_gemm.py --out-dir "$out" --max-replays 60 \
        2> "$out/bench-log-$card-$day.txt" | head -20; echo "bench exit ${PIPESTATUS[0]}" ;;
    ncu)
      for spec in "1 4096->14336 gemv" "64 8192->57344 wgmma"; do
        set -- $spec
        timeout 120 ncu --clock-control none --kernel-name "regex:$3" --launch-skip 1 --launch-count 1 \
          --section SpeedOfLight --section MemoryWorkloadAnalysis --section SchedulerStats \
          --section WarpStateStats --section ComputeWorkloadAnalysis --section Occupancy \
          python3 scripts/dev/profile_linear.py --shape "$2" --m "$1" --mode w4a4 > "$out/ncu-$3-M$1.txt" 2>&1
        echo "ncu $spec exit $?"
      done ;;
    *) echo "unknown step $step" ;;
  esac
  echo "== step $step took $((SECONDS - t0)) s"
done
echo "== $(date -u +%T) done"
