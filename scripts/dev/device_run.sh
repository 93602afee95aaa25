#!/usr/bin/env bash
# One GPU device call: SASS summary, gpu_check, compute-sanitizer, optional benchmark.
# Usage (from the repo root, on the GPU machine): scripts/dev/device_run.sh STEPS...
#   steps: sass check sanitize bench-quick bench-full bench-variant:NAME (build/NAME/libnvfp4_kernels.so,
#   built by build_variant.sh: quick shapes, NVFP4 kernels only, own JSON/markdown names),
#   pick-lib (gpu_check the candidate build/gpu; if it fails, build/fb; later steps use the one
#   that passed), pack (moves $out/extras/* into extras.tar.gz: the device returns 8 files at most),
#   fp4-pack (scripts/gpu_check_fp4_pack.py: the Blackwell path's packing kernels on this GPU),
#   racecheck-quick (racecheck over gpu_check --quick on the GEMV and wgmma paths, until
#   $RACECHECK_UNTIL seconds into the call)
# Uses $NVFP4_KERNELS_LIB (default build/gpu/libnvfp4_kernels.so, see build_kernels.sh); writes
# everything under ${OUT:-out/device}.
set -uo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-out/device}
mkdir -p "$out/extras"
export NVFP4_KERNELS_LIB=${NVFP4_KERNELS_LIB:-$PWD/build/gpu/libnvfp4_kernels.so}
export PYTHONUNBUFFERED=1
card=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1 | tr ' ' '-' )
day=$(date -u +%Y-%m-%d)
echo "== $(date -u +%T) card $card, lib $NVFP4_KERNELS_LIB"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,power.limit --format=csv
skip=""
for step in "$@"; do
  # Steps after the first three are optional: skip them when the 10-minute call limit nears.
  case $step in pick-lib|check|sanitize|bench-full|pack) ;; *)
    if [ "$SECONDS" -gt "${OPTIONAL_UNTIL:-9999}" ]; then echo "== skip $step (at ${SECONDS}s)"; continue; fi ;;
  esac
  echo "== $(date -u +%T) step $step (at ${SECONDS}s)"
  case $step in
    pick-lib)
      if timeout 200 python3 scripts/gpu_check.py --report "$out/correctness-$card-$day.txt"; then
        echo "candidate $NVFP4_KERNELS_LIB passes"
      else
        cp "$out/correctness-$card-$day.txt" "$out/extras/correctness-candidate-FAILED.txt" 2>/dev/null
        export NVFP4_KERNELS_LIB=$PWD/build/fb/libnvfp4_kernels.so
        skip="--skip-paths wgmma"
        echo "candidate FAILED: falling back to $NVFP4_KERNELS_LIB"
        timeout 150 python3 scripts/gpu_check.py $skip --report "$out/correctness-$card-$day.txt"
        echo "fallback gpu_check exit $?"
      fi ;;
    pack)
      tar czf "$out/extras.tar.gz" -C "$out" extras && rm -rf "$out/extras" ;;
    sass)
      cuobjdump -sass "$NVFP4_KERNELS_LIB" > /tmp/sass.txt
      awk '/Function :/{f=$3} /HMMA/{h[f]++} /HGMMA/{g[f]++} /LDL|STL/{l[f]++} /FFMA/{m[f]++}
           END{for(k in m) if(!(k in h)) h[k]=0; for(k in h) printf "%5d HMMA %4d HGMMA %5d FFMA %3d LDL/STL  %s\n", h[k], g[k]+0, m[k]+0, l[k]+0, substr(k,1,150)}' /tmp/sass.txt \
        | sort -k9 > "$out/extras/sass-summary.txt"; cut -c1-140 "$out/extras/sass-summary.txt" ;;
    check)
      timeout 300 python3 scripts/gpu_check.py --report "$out/correctness-$card-$day.txt" ;;
    sanitize)
      for tool in memcheck racecheck; do
        timeout 240 compute-sanitizer --tool $tool --target-processes all --print-limit 20 \
          python3 scripts/gpu_check.py --quick $skip > "$out/sanitizer-$tool-$card-$day.txt" 2>&1
        echo "$tool exit $?"; tail -3 "$out/sanitizer-$tool-$card-$day.txt"
      done ;;
    fp4-pack)
      timeout 120 python3 scripts/gpu_check_fp4_pack.py > "$out/fp4-pack-check-$card-$day.txt" 2>&1
      echo "fp4-pack exit $?"; tail -3 "$out/fp4-pack-check-$card-$day.txt" ;;
    racecheck-quick)
      left=$(( ${RACECHECK_UNTIL:-9999} - SECONDS )); [ "$left" -gt 240 ] && left=240
      if [ "$left" -lt 30 ]; then echo "== skip racecheck-quick (at ${SECONDS}s)"; continue; fi
      timeout "$left" compute-sanitizer --tool racecheck --target-processes all --print-limit 20 \
        python3 scripts/gpu_check.py --quick --skip-paths simt,tiled > "$out/sanitizer-racecheck-$card-$day.txt" 2>&1
      echo "racecheck exit $? (timeout $left s)"; tail -3 "$out/sanitizer-racecheck-$card-$day.txt" ;;
    bench-quick)
      timeout 300 python3 scripts/bench_gemm.py --quick --kernels nvfp4_w4a4,nvfp4_w4a16,bf16 --out-dir "$out" --min-replays 20 --max-replays 50 ;;
    bench-variant:*)
      v=${step#bench-variant:}
      NVFP4_KERNELS_LIB=$PWD/build/$v/libnvfp4_kernels.so timeout 200 python3 scripts/bench_gemm.py --quick \
        --kernels nvfp4_w4a4,nvfp4_w4a16 --out-dir "$out/extras" --name "gemm-$v" --min-replays 20 --max-replays 40 2>&1 \
        | grep -E "^ +M=|copy|error|Error" ;;
    ncu)
      for spec in "1 14336 4096 w4a4 gemv" "4096 14336 4096 w4a4 wgmma"; do
        set -- $spec
        timeout 120 ncu --kernel-name "regex:$5" --launch-skip 1 --launch-count 1 --section SpeedOfLight \
          --section Occupancy --section WarpStateStats --section LaunchStats \
          python3 scripts/dev/profile_once.py $1 $2 $3 $4 > "$out/extras/ncu-$5-M$1-$4.txt" 2>&1
        echo "ncu $spec exit $?"; grep -E "Duration|Memory Throughput|DRAM Throughput|Compute \(SM\)|Registers Per|Achieved Occupancy|Theoretical Occupancy" "$out/extras/ncu-$5-M$1-$4.txt" | head -8
      done ;;
    bench-full)
      left=$(( ${BENCH_UNTIL:-9999} - SECONDS )); [ "$left" -gt 330 ] && left=330
      timeout "$left" python3 scripts/bench_gemm.py --out-dir "$out" --emulation-max-m 256 --max-replays 100 ;;
  esac
done
echo "== $(date -u +%T) done"
