#!/usr/bin/env bash
# Runs each fuzz target (or those named) for DURATION seconds, JOBS targets at a time, growing
# fuzz/corpus/<target>; prints the executions and crashes of each and the total. A crash leaves
# its input in fuzz/artifacts/<target>/ and its log in fuzz/logs/<target>.log: add the input to fuzz/corpus/<target>/ (so
# tests/fuzz_corpus.rs replays it on every test run) once it is fixed.
#
# run with: fuzz/run.sh [target...]      (DURATION=60 seconds a target, JOBS=2 by default)
# needs: cargo-fuzz (cargo install cargo-fuzz); the toolchain's nightly features are enabled
# with RUSTC_BOOTSTRAP=1, so the stable toolchain builds the targets.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${DURATION:-60}
JOBS=${JOBS:-2}
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(forwarded request_id config extract session_cookie)
export RUSTC_BOOTSTRAP=1
cargo fuzz build -O >/dev/null
LOGS=fuzz/logs
mkdir -p "$LOGS"

run() {
  local target=$1
  mkdir -p "fuzz/corpus/$target"
  cargo fuzz run -O "$target" "fuzz/corpus/$target" -- \
    -max_total_time="$DURATION" -print_final_stats=1 -rss_limit_mb=4096 \
    >"$LOGS/$target.log" 2>&1 || true
}

running=0
for target in "${TARGETS[@]}"; do
  run "$target" &
  running=$((running + 1))
  if [ "$running" -ge "$JOBS" ]; then wait -n; running=$((running - 1)); fi
done
wait

total=0
crashes=0
printf '| target | seconds | executions | crashes |\n|---|---:|---:|---:|\n'
for target in "${TARGETS[@]}"; do
  log="$LOGS/$target.log"
  runs=$(awk '/stat::number_of_executed_units/ {print $NF}' "$log" | tail -1)
  found=$(grep -c -E "^==[0-9]+== ERROR|panicked at|deadly signal" "$log" || true)
  total=$((total + ${runs:-0}))
  crashes=$((crashes + found))
  printf '| %s | %s | %s | %s |\n' "$target" "$DURATION" "${runs:-0}" "$found"
  if [ "$found" -gt 0 ]; then grep -E -A20 "panicked at|ERROR" "$log" | head -40 >&2; fi
done
printf '| total | | %s | %s |\n' "$total" "$crashes"
[ "$crashes" -eq 0 ]
