#!/usr/bin/env bash
# Read-modify-write per request with sessions in memory and in Redis: the seed server's session
# demo (`POST /session/items/{id}` reads the session's list, appends, writes it back), the same
# binary, contenders interleaved; and Redis commands per request from INFO commandstats.
#
# run with: bench/session.sh     (ROUNDS=3 DURATION=8 SESSIONS=256 by default; needs wrk,
#                                 taskset, curl and redis-server)
#
# Server on CPU 0, wrk (-t1 -c64) and Redis on CPU 1. SESSIONS sessions are made first; wrk
# sends each request with the next one's cookie in turn, so the 64 requests in flight touch
# different sessions (conflicts are rare but merged when they happen). The demo keeps the 100
# most recent items, so every session holds about 100 numbers once warm.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-8}
SESSIONS=${SESSIONS:-256}
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/perf/callnext"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/callnext-session.XXXXXX")
command -v wrk >/dev/null || { echo "wrk is needed (apt-get install wrk)" >&2; exit 1; }
(cd "$ROOT" && cargo build --profile perf -p callnext-server >/dev/null 2>&1)

# shellcheck source=bench/common.sh
source "$HERE/common.sh"

REDIS_PORT=$(free_port)
taskset -c 1 redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no \
  --daemonize yes --pidfile "$WORK/redis.pid" --logfile "$WORK/redis.log"
trap 'kill "$(cat "$WORK/redis.pid")" 2>/dev/null || true; rm -rf "$WORK"' EXIT
for _ in $(seq 50); do redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1 && break; sleep 0.1; done

SECRET=$(python3 -c 'print("b" * 64)')
printf '[middleware.session]\nsecret = "%s"\n' "$SECRET" >"$WORK/memory.toml"
printf '[middleware.session]\nsecret = "%s"\nstore = "redis://127.0.0.1:%s"\n' \
  "$SECRET" "$REDIS_PORT" >"$WORK/redis.toml"

# run NAME CONFIG: prints "NAME requests_per_second redis_commands_per_request non_2xx"
run() {
  local name=$1 config=$2 port pid out rps requests calls errors
  port=$(free_port)
  taskset -c 0 "$BIN" --port "$port" --no-simulated-io --workers 1 --log-level warn \
    --config "$config" >/dev/null 2>&1 &
  pid=$!
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/session" && break; sleep 0.1; done
  # The sessions, each made by one request; their cookies go to wrk's script.
  {
    echo 'local cookies = {'
    for _ in $(seq "$SESSIONS"); do
      curl -s -o /dev/null -D - -X POST "http://127.0.0.1:$port/session/items/0" \
        | tr -d '\r' | awk -F'[ ;]' 'tolower($1) == "set-cookie:" {printf "  \"%s\",\n", $2}'
    done
    echo '}'
    cat <<'LUA'
local n = 0
request = function()
  n = n + 1
  local headers = { ["Cookie"] = cookies[n % #cookies + 1] }
  return wrk.format("POST", "/session/items/" .. (n % 1000), headers, "")
end
LUA
  } >"$WORK/rmw.lua"
  taskset -c 1 wrk -t1 -c64 -d2s -s "$WORK/rmw.lua" "http://127.0.0.1:$port" >/dev/null
  redis-cli -p "$REDIS_PORT" config resetstat >/dev/null
  out=$(taskset -c 1 wrk -t1 -c64 -d"${DURATION}s" -s "$WORK/rmw.lua" "http://127.0.0.1:$port")
  calls=$(redis-cli -p "$REDIS_PORT" info commandstats | tr -d '\r' \
    | awk -F'[=,:]' '/^cmdstat_/ && !/config|info|ping/ {n += $3} END {print n + 0}')
  kill "$pid"; wait "$pid" 2>/dev/null || true
  rps=$(echo "$out" | awk '/Requests\/sec/ {print $2}')
  requests=$(echo "$out" | awk '/requests in/ {print $1}')
  errors=$(echo "$out" | awk '/Non-2xx/ {print $NF}')
  python3 -c "print('$name', $rps, round(${calls:-0} / $requests, 3), ${errors:-0})"
}

for round in $(seq "$ROUNDS"); do
  run memory "$WORK/memory.toml"
  run redis "$WORK/redis.toml"
done | tee "$WORK/results"
echo
echo "| store | requests/s (median of $ROUNDS) | Redis commands per request | non-2xx | vs memory |"
echo "|---|---:|---:|---:|---:|"
python3 - "$WORK/results" <<'PY'
import statistics, sys
rows = {}
for line in open(sys.argv[1]):
    name, rps, trips, errors = line.split()
    rows.setdefault(name, []).append((float(rps), float(trips), int(errors)))
base = statistics.median(r for r, _, _ in rows["memory"])
for name, runs in rows.items():
    rps = statistics.median(r for r, _, _ in runs)
    trips = statistics.median(t for _, t, _ in runs)
    errors = sum(e for _, _, e in runs)
    print(f"| {name} | {rps:,.0f} | {trips:.3f} | {errors} | {rps / base:.2f}x |")
PY
