#!/usr/bin/env bash
# Server CPU per request of the seed server with its remote sinks on, against the same server
# without them: the access log shipped over HTTP (gzipped JSON lines in batches of 1,000)
# against no access log and a file; OpenTelemetry traces (OTLP/HTTP protobuf, every request
# sampled, the middlewares as child spans or as events) against none. The same binary,
# contenders interleaved; both receivers are one Python process on 127.0.0.1.
#
# run with: bench/sinks.sh   (ROUNDS=3 DURATION=8 by default; needs wrk, taskset, python3)
#
# Server on CPU 0; wrk (-t1 -c64, GET /items/1, simulated I/O off) and the receiver on CPU 1.
# CPU per request is the server's utime+stime over the run (from /proc, so the threads that
# batch, compress and send are counted) divided by the requests wrk completed.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-8}
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/release/callnext"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/callnext-shipping.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
command -v wrk >/dev/null || { echo "wrk is needed (apt-get install wrk)" >&2; exit 1; }
(cd "$ROOT" && cargo build --release -p callnext-server >/dev/null 2>&1)

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

RECEIVER_PORT=$(free_port)
taskset -c 1 python3 "$HERE/log_receiver.py" "$RECEIVER_PORT" >"$WORK/received" &
RECEIVER=$!
trap 'kill $RECEIVER 2>/dev/null || true; rm -rf "$WORK"' EXIT

printf '' >"$WORK/none.toml"
printf '[middleware.access_log]\npath = "%s"\n' "$WORK/access.log" >"$WORK/file.toml"
printf '[middleware.access_log]\nsink = "http"\nurl = "http://127.0.0.1:%s/ingest"\n' "$RECEIVER_PORT" >"$WORK/http.toml"
printf '[telemetry]\nendpoint = "http://127.0.0.1:%s"\n' "$RECEIVER_PORT" >"$WORK/otel.toml"
printf '[telemetry]\nendpoint = "http://127.0.0.1:%s"\nmiddleware_spans = "events"\n' "$RECEIVER_PORT" >"$WORK/otel-events.toml"

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
  requests=$(echo "$out" | awk '/requests in/ {print $1}')
  python3 -c "print('$name', $requests, round(($ticks1 - $ticks0) / $hz * 1e6 / $requests, 2))"
}

for round in $(seq "$ROUNDS"); do
  for name in none file http otel otel-events; do
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
for k in ("none", "file", "http", "otel", "otel-events"):
    print(f"{k:11} median CPU/request {med[k]:.2f} us  ({', '.join(str(x) for x in cpu[k])})")
print(f"http / none: {med['http'] / med['none']:.3f}x   http / file: {med['http'] / med['file']:.3f}x")
print(f"otel / none: {med['otel'] / med['none']:.3f}x   otel-events / none: {med['otel-events'] / med['none']:.3f}x")
received = open(sys.argv[2]).read().strip()
print(f"requests the receiver got: {received}")
PY
