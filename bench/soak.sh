#!/usr/bin/env bash
# Soak: the seed server (its stack, simulated I/O on) under steady load for DURATION seconds,
# with 256 connections, sampled every 10 s: RSS, open file descriptors, requests, errors and
# latency percentiles of the last 10 s. Prints a table of the samples and a summary: RSS drift
# after warm-up, descriptors, errors, p99 spread.
#
# run with: bench/soak.sh        (DURATION=600 CONNECTIONS=256 WARMUP=60 by default; needs wrk)
#
# wrk runs back to back in windows of 10 s (each opens its 256 connections anew), so every
# sample has its own latency distribution.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
DURATION=${DURATION:-600}
CONNECTIONS=${CONNECTIONS:-256}
WARMUP=${WARMUP:-60}
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/perf/callnext"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/callnext-soak.XXXXXX")
command -v wrk >/dev/null || { echo "wrk is needed (apt-get install wrk)" >&2; exit 1; }
(cd "$ROOT" && cargo build --profile perf -p callnext-server >/dev/null 2>&1)

port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$BIN" --port "$port" --log-level warn --max-connections 1024 >"$WORK/server.log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$WORK"' EXIT
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/items/1" && break; sleep 0.1; done

cat >"$WORK/report.lua" <<'LUA'
done = function(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format("SAMPLE %d %d %d %.3f %.3f %.3f\n",
    summary.requests,
    summary.errors.status,
    errors.connect + errors.read + errors.write + errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
end
LUA

echo "| t (s) | RSS (KiB) | fds | requests | non-2xx | socket errors | p50 (ms) | p99 (ms) | max (ms) |"
echo "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
elapsed=0
while [ "$elapsed" -lt "$DURATION" ]; do
  line=$(wrk -t2 -c"$CONNECTIONS" -d10s --timeout 10s -s "$WORK/report.lua" \
    "http://127.0.0.1:$port/items/1" | awk '/^SAMPLE/ {$1=""; print}')
  elapsed=$((elapsed + 10))
  rss=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
  fds=$(ls "/proc/$pid/fd" | wc -l)
  read -r requests status socket p50 p99 max <<<"$line"
  echo "$elapsed $rss $fds $requests $status $socket $p50 $p99 $max" >>"$WORK/samples"
  echo "| $elapsed | $rss | $fds | $requests | $status | $socket | $p50 | $p99 | $max |"
done

python3 - "$WORK/samples" "$WARMUP" <<'PY'
import statistics, sys
rows = [list(map(float, l.split())) for l in open(sys.argv[1])]
warm = [r for r in rows if r[0] > float(sys.argv[2])] or rows
rss = [r[1] for r in warm]
base = statistics.median(rss)
p99 = [r[7] for r in warm]
print()
print(f"requests: {sum(r[3] for r in rows):,.0f}; non-2xx: {sum(r[4] for r in rows):.0f}; "
      f"socket errors: {sum(r[5] for r in rows):.0f}")
print(f"RSS after warm-up: {min(rss):,.0f}-{max(rss):,.0f} KiB, "
      f"{(min(rss) / base - 1) * 100:+.1f}% / {(max(rss) / base - 1) * 100:+.1f}% around the median "
      f"{base:,.0f} KiB; first sample after warm-up {rss[0]:,.0f}, last {rss[-1]:,.0f}")
print(f"open descriptors: {min(r[2] for r in rows):.0f}-{max(r[2] for r in rows):.0f}")
print(f"p99 after warm-up: median {statistics.median(p99):.1f} ms, "
      f"range {min(p99):.1f}-{max(p99):.1f} ms")
PY
