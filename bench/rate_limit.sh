#!/usr/bin/env bash
# Requests per second of the seed server with a rate limit in memory and in Redis, the same
# binary, contenders interleaved; and Redis round trips per request from INFO commandstats.
#
# run with: bench/rate_limit.sh     (ROUNDS=3 DURATION=8 by default; needs wrk, taskset and
#                                    redis-server, and starts a Redis of its own)
#           BEFORE=path/to/callnext bench/rate_limit.sh   (adds `redis_before`: that binary, an
#                                    earlier commit's `--profile perf` build, on the same Redis,
#                                    interleaved with the others)
#
# Server on CPU 0, wrk (-t1 -c64, GET /items/1, simulated I/O off) and Redis on CPU 1. Every
# request is allowed (1,000,000/s), so each one runs the whole check.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-8}
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/perf/callnext"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/callnext-rate-limit.XXXXXX")
command -v wrk >/dev/null || { echo "wrk is needed (apt-get install wrk)" >&2; exit 1; }
(cd "$ROOT" && cargo build --profile perf -p callnext-server >/dev/null 2>&1)

# shellcheck source=bench/common.sh
source "$HERE/common.sh"

REDIS_PORT=$(free_port)
taskset -c 1 redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
  --daemonize yes --pidfile "$WORK/redis.pid" --logfile "$WORK/redis.log"
trap 'kill "$(cat "$WORK/redis.pid")" 2>/dev/null || true; rm -rf "$WORK"' EXIT
for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done

printf '[middleware.rate_limit]\nlimit = "1000000/s"\n' >"$WORK/memory.toml"
printf '[middleware.rate_limit]\nlimit = "1000000/s"\nstore = "redis://127.0.0.1:%s"\n' \
  "$REDIS_PORT" >"$WORK/redis.toml"

# run NAME CONFIG [BINARY]: prints "NAME requests_per_second evalsha_per_request"
run() {
  local name=$1 config=$2 bin=${3:-$BIN} port pid out rps requests calls
  port=$(free_port)
  taskset -c 0 "$bin" --port "$port" --no-simulated-io --workers 1 --log-level warn \
    --config "$config" >/dev/null 2>&1 &
  pid=$!
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/items/1" && break; sleep 0.1; done
  taskset -c 1 wrk -t1 -c64 -d2s "http://127.0.0.1:$port/items/1" >/dev/null
  redis-cli -p "$REDIS_PORT" config resetstat >/dev/null
  out=$(taskset -c 1 wrk -t1 -c64 -d"${DURATION}s" "http://127.0.0.1:$port/items/1")
  calls=$(redis-cli -p "$REDIS_PORT" info commandstats | tr -d '\r' \
    | awk -F'[=,:]' '/^cmdstat_evalsha:/ {print $3}')
  kill "$pid"; wait "$pid" 2>/dev/null || true
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  requests=$(echo "$out" | awk '/requests in/ {print $1}')
  python3 -c "print('$name', $rps, round(${calls:-0} / $requests, 3))"
}

for round in $(seq "$ROUNDS"); do
  run memory "$WORK/memory.toml"
  run redis "$WORK/redis.toml"
  if [ -n "${BEFORE:-}" ]; then run redis_before "$WORK/redis.toml" "$BEFORE"; fi
done | tee "$WORK/results"
echo
echo "| store | requests/s (median of $ROUNDS) | EVALSHA per request | vs memory |"
echo "|---|---:|---:|---:|"
python3 - "$WORK/results" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    name, rps, trips = line.split()
    rows.setdefault(name, []).append((float(rps), float(trips)))
base = statistics.median(r for r, _ in rows["memory"])
for name, runs in rows.items():
    rps = statistics.median(r for r, _ in runs)
    trips = statistics.median(t for _, t in runs)
    print(f"| {name} | {rps:,.0f} | {trips:.3f} | {rps / base:.2f}x |")
PY
