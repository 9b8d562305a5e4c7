#!/usr/bin/env bash
# Server CPU per request of the seed server with its remote sinks on, against the same server
# without them: the access log shipped over HTTP (gzipped JSON lines in batches of 1,000)
# against no access log and a file; OpenTelemetry traces (OTLP/HTTP protobuf, every request
# sampled, the middlewares as child spans or as events) against none. The same binary,
# contenders interleaved; both receivers are one Python process on 127.0.0.1.
#
# run with: bench/sinks.sh   (ROUNDS=3 DURATION=8 by default; needs wrk, taskset, python3)
#           CONTENDERS="none otel otel-events" bench/sinks.sh   to measure some of them
#           (otel-sampled, traces with sampling_ratio = 0.1, is not in the default list)
#           MODE=instructions bench/sinks.sh   (callgrind instead of wrk; needs valgrind)
#
# Server on CPU 0; wrk (-t1 -c64, GET /items/1, simulated I/O off) and the receiver on CPU 1.
# CPU per request is the server's utime+stime over the run (from /proc, so the threads that
# batch, compress and send are counted) divided by the requests wrk completed.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
ROUNDS=${ROUNDS:-3}
CONTENDERS=${CONTENDERS:-none file http otel otel-events}
DURATION=${DURATION:-8}
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/perf/callnext"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/callnext-shipping.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
command -v wrk >/dev/null || { echo "wrk is needed (apt-get install wrk)" >&2; exit 1; }
(cd "$ROOT" && cargo build --profile perf -p callnext-server >/dev/null 2>&1)

# shellcheck source=bench/common.sh
source "$HERE/common.sh"

RECEIVER_PORT=$(free_port)
taskset -c 1 python3 "$HERE/log_receiver.py" "$RECEIVER_PORT" >"$WORK/received" &
RECEIVER=$!
trap 'kill $RECEIVER 2>/dev/null || true; rm -rf "$WORK"' EXIT

printf '' >"$WORK/none.toml"
printf '[middleware.access_log]\npath = "%s"\n' "$WORK/access.log" >"$WORK/file.toml"
printf '[middleware.access_log]\nsink = "http"\nurl = "http://127.0.0.1:%s/ingest"\n' "$RECEIVER_PORT" >"$WORK/http.toml"
printf '[telemetry]\nendpoint = "http://127.0.0.1:%s"\n' "$RECEIVER_PORT" >"$WORK/otel.toml"
printf '[telemetry]\nendpoint = "http://127.0.0.1:%s"\nmiddleware_spans = "events"\n' "$RECEIVER_PORT" >"$WORK/otel-events.toml"
printf '[telemetry]\nendpoint = "http://127.0.0.1:%s"\nsampling_ratio = 0.1\n' "$RECEIVER_PORT" >"$WORK/otel-sampled.toml"

# run NAME CONFIG: prints "NAME requests cpu_us_per_request"
run() {
  local name=$1 config=$2 port pid ticks0 ticks1 hz out requests
  port=$(free_port)
  taskset -c 0 "$BIN" --port "$port" --no-simulated-io --workers 1 --log-level warn \
    --config "$config" >"$WORK/stdout.log" 2>&1 &
  pid=$!
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/items/1" && break; sleep 0.1; done
  taskset -c 1 wrk -t1 -c64 -d2s "http://127.0.0.1:$port/items/1" >/dev/null
  hz=$(getconf CLK_TCK)
  ticks0=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  out=$(taskset -c 1 wrk -t1 -c64 -d"${DURATION}s" "http://127.0.0.1:$port/items/1")
  ticks1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  # A benchmark whose spans or lines were dropped measured less work: say so.
  grep -h "dropped" "$WORK/stdout.log" >&2 || true
  requests=$(echo "$out" | awk '/requests in/ {print $1}')
  python3 -c "print('$name', $requests, round(($ticks1 - $ticks0) / $hz * 1e6 / $requests, 2))"
}

if [ "${MODE:-wrk}" = instructions ]; then
  # User-space instructions per request, from the difference between two runs of LOW and HIGH
  # requests (start-up and the first requests cancel out); the exporter's thread is counted,
  # the kernel's work (the posts' sends) is not.
  command -v valgrind >/dev/null || { echo "valgrind is needed (apt-get install valgrind)" >&2; exit 1; }
  LOW=${LOW:-500}
  HIGH=${HIGH:-5500}
  declare -A per
  for name in $CONTENDERS; do
    low=$(instructions "$name" "$WORK/$name.toml" "$LOW")
    high=$(instructions "$name" "$WORK/$name.toml" "$HIGH")
    per[$name]=$(( (high - low) / (HIGH - LOW) ))
    echo "$name: ${per[$name]} instructions per request"
  done
  for name in $CONTENDERS; do
    [ "$name" = none ] || [ -z "${per[none]:-}" ] ||
      python3 -c "print(f'$name / none: {${per[$name]} / ${per[none]}:.3f}x')"
  done
  exit 0
fi

for round in $(seq "$ROUNDS"); do
  for name in $CONTENDERS; do
    run "$name" "$WORK/$name.toml"
  done
done | tee "$WORK/results"
kill -TERM "$RECEIVER"; wait "$RECEIVER" 2>/dev/null || true
python3 - "$WORK/results" "$WORK/received" <<'PY'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
cpu = {}
for name, _, us in rows:
    cpu.setdefault(name, []).append(float(us))
med = {k: statistics.median(v) for k, v in cpu.items()}
for k in med:
    print(f"{k:11} median CPU/request {med[k]:.2f} us  ({', '.join(str(x) for x in cpu[k])})")
# Each round's contenders ran one after the other: a round's ratio is paired, so the drift of
# a shared machine between rounds cancels out of it.
for k, base in (("file", "none"), ("http", "none"), ("http", "file"), ("otel", "none"), ("otel-events", "none"), ("otel-sampled", "none")):
    if k in med and base in med:
        paired = [a / b for a, b in zip(cpu[k], cpu[base])]
        print(f"{k} / {base}: {med[k] / med[base]:.3f}x of the medians, "
              f"{statistics.median(paired):.3f}x the median of the rounds' ratios "
              f"({', '.join(f'{r:.2f}' for r in paired)})")
received = open(sys.argv[2]).read().strip()
print(f"requests the receiver got: {received}")
PY
