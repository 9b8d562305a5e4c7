#!/usr/bin/env bash
# Server CPU per request of the seed server with its batteries, the live stack page off against
# on with one viewer reading its event stream. The same binary and configuration but for
# `[admin] page`, contenders interleaved round by round.
#
# run with: bench/live_page.sh   (ROUNDS=5 DURATION=8 by default; needs wrk, taskset, curl)
#           MODE=instructions bench/live_page.sh   (callgrind instead of wrk; needs valgrind)
#
# Server on CPU 0 (one worker); wrk (-t1 -c64, GET /items/1, simulated I/O off) and the viewer
# (curl reading /_callnext/api/events) on CPU 1. CPU per request is the server's utime+stime
# over the run (from /proc) divided by the requests wrk completed; the viewer's snapshots are
# made by the server, so their cost is in it.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-8}
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/perf/callnext"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/callnext-live.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
command -v wrk >/dev/null || { echo "wrk is needed (apt-get install wrk)" >&2; exit 1; }
(cd "$ROOT" && cargo build --profile perf -p callnext-server >/dev/null 2>&1)

# shellcheck source=bench/common.sh
source "$HERE/common.sh"

cat >"$WORK/off.toml" <<TOML
[middleware.request_id]
[middleware.access_log]
path = "$WORK/access.log"
[middleware.cors]
allow_origins = ["https://app.example"]
[middleware.security_headers]
[middleware.rate_limit]
limit = "1000000/second"
TOML
cp "$WORK/off.toml" "$WORK/on.toml"
printf '[admin]\npage = true\n' >>"$WORK/on.toml"

# run NAME CONFIG: prints "NAME requests cpu_us_per_request snapshots_seen"
run() {
  local name=$1 config=$2 port pid ticks0 ticks1 hz out requests viewer=""
  port=$(free_port)
  taskset -c 0 "$BIN" --port "$port" --no-simulated-io --workers 1 --log-level warn \
    --config "$config" >"$WORK/stdout.log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/items/1" && break; sleep 0.1; done
  if [ "$name" = on ]; then
    taskset -c 1 curl -sN "http://127.0.0.1:$port/_callnext/api/events" >"$WORK/events" &
    viewer=$!
  fi
  taskset -c 1 wrk -t1 -c64 -d2s "http://127.0.0.1:$port/items/1" >/dev/null
  hz=$(getconf CLK_TCK)
  ticks0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  out=$(taskset -c 1 wrk -t1 -c64 -d"${DURATION}s" "http://127.0.0.1:$port/items/1")
  ticks1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  [ -n "$viewer" ] && { kill "$viewer" 2>/dev/null || true; wait "$viewer" 2>/dev/null || true; }
  kill "$pid"; wait "$pid" 2>/dev/null || true
  requests=$(echo "$out" | awk '/requests in/ {print $1}')
  local seen=0
  [ -n "$viewer" ] && seen=$(grep -c '^event: snapshot' "$WORK/events" || true)
  python3 -c "print('$name', $requests, round(($ticks1 - $ticks0) / $hz * 1e6 / $requests, 3), $seen)"
}

if [ "${MODE:-wrk}" = instructions ]; then
  # Under valgrind the server runs some fifty times slower while the viewer's snapshots still
  # come once a second, so a viewer's cost is measured apart: instructions inside the
  # snapshot code per snapshot sent, which a real server spreads over a second's requests.
  command -v valgrind >/dev/null || { echo "valgrind is needed (apt-get install valgrind)" >&2; exit 1; }
  LOW=${LOW:-500}
  HIGH=${HIGH:-5500}
  declare -A per
  for name in off on; do
    low=$(instructions "$name" "$WORK/$name.toml" "$LOW")
    high=$(instructions "$name" "$WORK/$name.toml" "$HIGH")
    per[$name]=$(( (high - low) / (HIGH - LOW) ))
    echo "page $name (no viewer): ${per[$name]} instructions per request"
  done
  python3 -c "print(f'recording, on / off: {${per[on]} / ${per[off]}:.4f}x  ({(${per[on]} / ${per[off]} - 1) * 100:+.2f} %)')"
  total=$(COLLECT='*live*snapshot*' instructions snapshot "$WORK/on.toml" "$HIGH" /_callnext/api/events)
  sent=$(grep -c '^event: snapshot' "$WORK/events" || true)
  echo "one viewer: $sent snapshots, $(( total / sent )) instructions each (made and sent)"
  python3 -c "print(f'at 40,000 requests/s: {$total / $sent / 40000:.1f} instructions per request')"
  exit 0
fi

for round in $(seq "$ROUNDS"); do
  for name in off on; do
    run "$name" "$WORK/$name.toml"
  done
done | tee "$WORK/results"
python3 - "$WORK/results" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
cpu = {}
for name, _, us, _ in rows:
    cpu.setdefault(name, []).append(float(us))
med = {k: statistics.median(v) for k, v in cpu.items()}
for k in ("off", "on"):
    print(f"page {k:3} median CPU/request {med[k]:.3f} us  ({', '.join(str(x) for x in cpu[k])})")
print(f"on / off: {med['on'] / med['off']:.4f}x  ({(med['on'] / med['off'] - 1) * 100:+.2f} %)")
PY
