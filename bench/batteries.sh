#!/usr/bin/env bash
# Server CPU per request of the seed server with and without the batteries, and with its log
# lines written blocking or from their own thread: the same binary, contenders interleaved.
#
# run with: bench/batteries.sh            (ROUNDS=3 DURATION=8 by default; needs wrk and taskset)
#           BREAKDOWN=1 bench/batteries.sh (each battery alone over the seed at log level warn)
#
# Server on CPU 0, wrk (-t1 -c64, GET /items/1, simulated I/O off) on CPU 1. CPU per request is
# the server's utime+stime over the run (from /proc) divided by the requests wrk completed.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-8}
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/perf/callnext"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/callnext-batteries.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
command -v wrk >/dev/null || { echo "wrk is needed (apt-get install wrk)" >&2; exit 1; }
(cd "$ROOT" && cargo build --profile perf -p callnext-server >/dev/null 2>&1)

cat >"$WORK/production.toml" <<TOML
[middleware.request_id]
[middleware.access_log]
path = "$WORK/access.log"
[middleware.security_headers]
[middleware.cors]
allow_origins = ["https://app.example"]
[middleware.timeout]
[middleware.concurrency]
TOML

# shellcheck source=bench/common.sh
source "$HERE/common.sh"

# run NAME ARGS...: prints "NAME requests cpu_us_per_request"
run() {
  local name=$1 port pid ticks0 ticks1 hz out requests
  shift
  port=$(free_port)
  # Its own log lines go to a file, as they would go somewhere in production (a write to
  # /dev/null costs nothing and would hide what a blocking writer costs).
  taskset -c 0 "$BIN" --port "$port" --no-simulated-io --workers 1 "$@" >"$WORK/stdout.log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/items/1" && break; sleep 0.1; done
  taskset -c 1 wrk -t1 -c64 -d2s "http://127.0.0.1:$port/items/1" >/dev/null
  hz=$(getconf CLK_TCK)
  ticks0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  out=$(taskset -c 1 wrk -t1 -c64 -d"${DURATION}s" "http://127.0.0.1:$port/items/1")
  ticks1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  requests=$(echo "$out" | awk '/requests in/ {print $1}')
  python3 -c "print('$name', $requests, round(($ticks1 - $ticks0) / $hz * 1e6 / $requests, 2))"
}

# One battery at a time (BREAKDOWN=1): which part of the production stack costs what.
for kind in request_id access_log security_headers cors timeout concurrency; do
  if [[ $kind == access_log ]]; then
    printf '[middleware.access_log]\npath = "%s"\n' "$WORK/alone.log" >"$WORK/$kind.toml"
  elif [[ $kind == cors ]]; then
    printf '[middleware.cors]\nallow_origins = ["https://app.example"]\n' >"$WORK/$kind.toml"
  else
    printf '[middleware.%s]\n' "$kind" >"$WORK/$kind.toml"
  fi
done

for round in $(seq "$ROUNDS"); do
  if [[ -n ${BREAKDOWN:-} ]]; then
    run seed-warn --log-level warn
    for kind in request_id access_log security_headers cors timeout concurrency; do
      run "only-$kind" --log-level warn --config "$WORK/$kind.toml"
    done
    continue
  fi
  run seed-info-blocking --log-blocking
  run seed-info-nonblocking
  run seed-warn --log-level warn
  run production-warn --log-level warn --config "$WORK/production.toml"
done | tee "$WORK/results"
echo
echo "| contender | CPU µs/req (median of $ROUNDS) |"
echo "|---|---:|"
python3 - "$WORK/results" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    name, _, cpu = line.split()
    rows.setdefault(name, []).append(float(cpu))
for name, cpus in rows.items():
    print(f"| {name} | {statistics.median(cpus):.2f} |")
PY
