#!/usr/bin/env bash
# User-space instructions per request of each server, counted by callgrind: a companion to
# run.sh whose figures repeat on a busy machine (callgrind counts instructions, not time; the
# kernel's share of a request is not in them).
#
# run with: bench/peers/instructions.sh        (after run.sh has built the peers and callnext)
#           ONLY='hyper|callnext|axum-mw' bench/peers/instructions.sh   (some servers only)
#
# Each server runs under `valgrind --tool=callgrind`, answers LOW and then, in a fresh process,
# HIGH keep-alive requests for `GET /items/1` from curl; (I(HIGH) - I(LOW)) / (HIGH - LOW) is
# one request's cost with start-up taken out. Under valgrind quanta reads the clock through the
# vDSO instead of the TSC, which overstates callnext's instrumentation (the
# "instrumentation and metrics off" line shows the rest).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
LOW=${LOW:-500}
HIGH=${HIGH:-5500}
PEER_BIN="$HERE/target/release"
CALLNEXT_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/perf/callnext"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/callnext-instructions.XXXXXX")
trap 'rm -rf "$WORK"' EXIT

command -v valgrind >/dev/null || { echo "valgrind is needed (apt-get install valgrind)" >&2; exit 1; }

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# instructions NAME REQUESTS CMD...: total instructions after REQUESTS requests.
instructions() {
  local name=$1 n=$2 port pid i
  shift 2
  port=$(free_port)
  valgrind --tool=callgrind --callgrind-out-file="$WORK/$name.$n" "$@" --host 127.0.0.1 --port "$port" \
    >/dev/null 2>&1 &
  pid=$!
  for ((i = 0; i < 600; i++)); do
    curl -s -o /dev/null "http://127.0.0.1:$port/items/1" && break
    sleep 0.2
  done
  python3 - "$port" "$n" >"$WORK/curl.cfg" <<'PY'
import sys
port, n = sys.argv[1], int(sys.argv[2])
for _ in range(n):
    print(f'url = "http://127.0.0.1:{port}/items/1"\noutput = "/dev/null"')
PY
  curl -s -K "$WORK/curl.cfg"
  callgrind_control -d "$pid" >/dev/null 2>&1
  sleep 1
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  grep -h '^summary' "$WORK/$name.$n"* | awk '{s += $2} END {print s}'
}

echo "| server | instructions per request | ×hyper |"
echo "|---|---:|---:|"
hyper=""
while read -r name cmd; do
  [[ -z ${ONLY:-} || $name =~ ^(${ONLY})$ ]] || continue
  # shellcheck disable=SC2086
  low=$(instructions "$name" "$LOW" $cmd)
  # shellcheck disable=SC2086
  high=$(instructions "$name" "$HIGH" $cmd)
  per=$(( (high - low) / (HIGH - LOW) ))
  [[ -n $hyper ]] || hyper=$per
  echo "| $name | $per | $(python3 -c "print(f'{$per / $hyper:.2f}×')") |"
done <<EOF2
hyper $PEER_BIN/hyper-peer
callnext $CALLNEXT_BIN --workers 1 --no-simulated-io --log-level warn
callnext-off $CALLNEXT_BIN --workers 1 --no-simulated-io --log-level warn --no-instrument --metrics-path off
axum-mw $PEER_BIN/axum-peer --no-simulated-io
axum-bare $PEER_BIN/axum-peer --no-simulated-io --no-middleware
actix-mw $PEER_BIN/actix-peer --no-simulated-io
actix-bare $PEER_BIN/actix-peer --no-simulated-io --no-middleware
EOF2
