#!/usr/bin/env bash
# Peer HTTP benchmark for callnext: see docs/benchmarks.md for the method.
#
#   bench/peers/run.sh                       # 6 rounds x 10 s
#   ROUNDS=1 DURATION=3 bench/peers/run.sh   # quick trial
#
# Environment: ROUNDS (6), DURATION seconds per run (10), WARMUP seconds (2),
# SERVER_CPU (0), CLIENT_CPU (1), BASE_PORT (18400), WRK_TIMEOUT (10s),
# IDLE_CONNECTIONS (10000), MEM_CONTENDERS ("callnext hyper axum-mw actix-mw"),
# SKIP_CONCURRENCY=1 / SKIP_MEMORY=1 to leave those parts out,
# CARGO_BUILD_JOBS is passed through to cargo.
#
# Only 127.0.0.1 is used; every wait is bounded; every server this script
# starts is stopped on exit.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)

ROUNDS=${ROUNDS:-6}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
BASE_PORT=${BASE_PORT:-18400}
WRK_TIMEOUT=${WRK_TIMEOUT:-10s}
IDLE_CONNECTIONS=${IDLE_CONNECTIONS:-10000}
MEM_CONTENDERS=${MEM_CONTENDERS:-callnext hyper axum-mw actix-mw}
SKIP_CONCURRENCY=${SKIP_CONCURRENCY:-0}
SKIP_MEMORY=${SKIP_MEMORY:-0}

HOST=127.0.0.1
CONNECTIONS=64
THROUGHPUT_PATH=/items/1
CONCURRENCY_PATH=/
CONCURRENCY_CONTENDERS=(callnext axum-mw actix-mw fastapi)
CONTENDERS=(hyper callnext callnext-off axum-mw axum-bare actix-mw actix-bare fastapi)
NOFILE_TARGET=65536
NOFILE_NEEDED=$((10000 + 1024))

PEER_BIN="$HERE/target/release"
VENV="$HERE/.venv"
CALLNEXT_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/perf/callnext"
CLK_TCK=$(getconf CLK_TCK)

for var in ROUNDS DURATION WARMUP IDLE_CONNECTIONS; do
  if ! [[ ${!var} =~ ^[1-9][0-9]*$ ]]; then
    echo "run.sh: $var must be a positive integer, got '${!var}'" >&2
    exit 2
  fi
done

WORK=$(mktemp -d "${TMPDIR:-/tmp}/callnext-peer-bench.XXXXXX")
RUNS_TSV="$WORK/runs.tsv"
CONC_TSV="$WORK/concurrency.tsv"
MEM_TSV="$WORK/memory.tsv"
NOTES="$WORK/notes.txt"
META="$WORK/meta.md"
: >"$NOTES"

log() { printf '%s\n' "$*" >&2; }
note() {
  log "!! $*"
  printf '%s\n' "$*" >>"$NOTES"
}

# ---------------------------------------------------------------- cleanup --

PIDS=()       # every background process this script started
SERVER_PID=""

alive() { kill -0 "$1" 2>/dev/null; }

# Descendants of a process, depth-first, at most 4 levels (uvicorn workers).
descendants() {
  local pid=$1 depth=${2:-0} child
  ((depth < 4)) || return 0
  for child in $(pgrep -P "$pid" 2>/dev/null || true); do
    echo "$child"
    descendants "$child" $((depth + 1))
  done
}

# Stop a process and its descendants: TERM, up to 5 s, then KILL. The PID is
# then dropped from PIDS, so a later cleanup cannot hit a reused PID.
stop_pid() {
  local pid=$1 tree i kept=() other
  for other in ${PIDS[@]+"${PIDS[@]}"}; do
    [[ $other == "$pid" ]] || kept+=("$other")
  done
  PIDS=(${kept[@]+"${kept[@]}"})
  alive "$pid" || { wait "$pid" 2>/dev/null || true; return 0; }
  tree="$pid $(descendants "$pid" | tr '\n' ' ')"
  # shellcheck disable=SC2086
  kill -TERM $tree 2>/dev/null || true
  for ((i = 0; i < 50; i++)); do
    alive "$pid" || break
    sleep 0.1
  done
  # shellcheck disable=SC2086
  kill -KILL $tree 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

cleanup() {
  local pid
  for pid in ${PIDS[@]+"${PIDS[@]}"}; do
    stop_pid "$pid"
  done
  return 0
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ------------------------------------------------------------ preparation --

require() {
  command -v "$1" >/dev/null 2>&1 || {
    log "run.sh: '$1' is required but not installed"
    exit 1
  }
}

as_root() {
  if [[ $EUID -eq 0 ]]; then
    "$@"
  else
    sudo "$@"
  fi
}

install_wrk() {
  command -v wrk >/dev/null 2>&1 && return 0
  log "== installing wrk (apt-get)"
  as_root apt-get update
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y wrk
}

install_venv() {
  [[ -x $VENV/bin/uvicorn ]] && return 0
  log "== creating $VENV"
  if ! python3 -m venv "$VENV"; then
    log "python3 -m venv failed; installing python3-venv"
    rm -rf "$VENV"
    as_root apt-get update
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y python3-venv
    python3 -m venv "$VENV"
  fi
  "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$HERE/fastapi/requirements.txt"
}

CALLNEXT_OK=0
build() {
  log "== building peers (cargo build --release in bench/peers)"
  (cd "$HERE" && cargo build --release)
  log "== building callnext (cargo build --profile perf -p callnext-server at the repository root)"
  if (cd "$ROOT" && cargo build --profile perf -p callnext-server) >"$WORK/callnext-build.log" 2>&1 && [[ -x $CALLNEXT_BIN ]]; then
    CALLNEXT_OK=1
  else
    note "callnext: the root crate did not build, so callnext is skipped (log: $WORK/callnext-build.log)"
    tail -n 20 "$WORK/callnext-build.log" >&2 || true
  fi
}

raise_nofile() {
  if ulimit -n "$NOFILE_TARGET" 2>/dev/null; then
    log "== ulimit -n raised to $(ulimit -n)"
    return 0
  fi
  local hard
  hard=$(ulimit -Hn)
  log "!! cannot raise ulimit -n to $NOFILE_TARGET (hard limit: $hard)"
  ulimit -n "$hard" 2>/dev/null || true
  if [[ $(ulimit -n) =~ ^[0-9]+$ ]] && (($(ulimit -n) < NOFILE_NEEDED)); then
    return 1
  fi
  note "ulimit -n could not reach $NOFILE_TARGET; using the hard limit $(ulimit -n), enough for 10,000 connections"
}

# ---------------------------------------------------------------- servers --

PORT_COUNTER=0
next_port() {
  PORT_COUNTER=$((PORT_COUNTER + 1))
  PORT=$((BASE_PORT + PORT_COUNTER))
}

# start_server NAME SIMULATED_IO(0|1): starts NAME on a fresh port (sets PORT
# and SERVER_PID) pinned to SERVER_CPU and waits until it answers.
start_server() {
  local name=$1 sim=$2 log_file cmd nosim=()
  next_port
  [[ $sim == 1 ]] || nosim=(--no-simulated-io)
  log_file="$WORK/$name-$PORT.log"
  case $name in
    hyper) cmd=("$PEER_BIN/hyper-peer" --host "$HOST" --port "$PORT") ;;
    callnext)
      cmd=("$CALLNEXT_BIN" --host "$HOST" --port "$PORT" --workers 1 ${nosim[@]+"${nosim[@]}"} --log-level warn)
      ;;
    callnext-off)
      cmd=("$CALLNEXT_BIN" --host "$HOST" --port "$PORT" --workers 1 ${nosim[@]+"${nosim[@]}"} --log-level warn --no-instrument --metrics-path off)
      ;;
    axum-mw) cmd=("$PEER_BIN/axum-peer" --host "$HOST" --port "$PORT" ${nosim[@]+"${nosim[@]}"}) ;;
    axum-bare) cmd=("$PEER_BIN/axum-peer" --host "$HOST" --port "$PORT" ${nosim[@]+"${nosim[@]}"} --no-middleware) ;;
    actix-mw) cmd=("$PEER_BIN/actix-peer" --host "$HOST" --port "$PORT" ${nosim[@]+"${nosim[@]}"}) ;;
    actix-bare) cmd=("$PEER_BIN/actix-peer" --host "$HOST" --port "$PORT" ${nosim[@]+"${nosim[@]}"} --no-middleware) ;;
    fastapi)
      cmd=("$VENV/bin/uvicorn" main:app --host "$HOST" --port "$PORT" --workers 1 --log-level warning)
      ;;
    *)
      log "unknown contender $name"
      return 1
      ;;
  esac
  if [[ $name == fastapi ]]; then
    (cd "$HERE/fastapi" && SIMULATED_IO=$sim exec taskset -c "$SERVER_CPU" "${cmd[@]}" >/dev/null 2>"$log_file") &
  else
    taskset -c "$SERVER_CPU" "${cmd[@]}" >"$log_file" 2>&1 &
  fi
  SERVER_PID=$!
  PIDS+=("$SERVER_PID")
  local i
  for ((i = 0; i < 150; i++)); do
    if ! alive "$SERVER_PID"; then
      break
    fi
    if curl -s -o /dev/null --max-time 2 "http://$HOST:$PORT$THROUGHPUT_PATH"; then
      return 0
    fi
    sleep 0.1
  done
  log "!! $name did not answer on port $PORT within 15 s; last lines of $log_file:"
  tail -n 10 "$log_file" >&2 || true
  stop_server
  return 1
}

stop_server() {
  [[ -n $SERVER_PID ]] && stop_pid "$SERVER_PID"
  SERVER_PID=""
}

# Sum of utime + stime (clock ticks) over the server process tree.
cpu_ticks() {
  local pid stat fields total=0
  for pid in "$@"; do
    stat=$(cat "/proc/$pid/stat" 2>/dev/null) || continue
    # Field 2 (comm) may hold spaces: split after its closing parenthesis.
    read -r -a fields <<<"${stat##*) }"
    # fields[0] is field 3, so fields 14 and 15 are at 11 and 12.
    total=$((total + fields[11] + fields[12]))
  done
  echo "$total"
}

# Sum of a /proc/PID/status field (kB) over the given processes.
status_kib() {
  local key=$1 pid value total=0
  shift
  for pid in "$@"; do
    value=$(awk -v k="$key:" '$1 == k { print $2 }' "/proc/$pid/status" 2>/dev/null || true)
    total=$((total + ${value:-0}))
  done
  echo "$total"
}

server_tree() {
  echo "$SERVER_PID"
  descendants "$SERVER_PID"
}

# wrk pinned to CLIENT_CPU; prints the WRK_RESULT fields as TSV.
run_wrk() {
  local connections=$1 seconds=$2 path=$3 out line kv
  out=$(taskset -c "$CLIENT_CPU" wrk -t1 -c"$connections" -d"${seconds}s" --timeout "$WRK_TIMEOUT" \
    -s "$HERE/wrk_report.lua" "http://$HOST:$PORT$path") || return 1
  line=$(grep '^WRK_RESULT ' <<<"$out") || return 1
  local values=()
  for kv in ${line#WRK_RESULT }; do
    values+=("${kv#*=}")
  done
  (IFS=$'\t' && echo "${values[*]}")
}
WRK_COLUMNS=$'requests\tduration_us\tp50_us\tp99_us\tnon2xx\tconnect_errors\tread_errors\twrite_errors\ttimeouts'

warm_up() {
  local path=$1
  taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNECTIONS" -d"${WARMUP}s" --timeout "$WRK_TIMEOUT" \
    "http://$HOST:$PORT$path" >/dev/null || true
}

# ------------------------------------------------------------ smoke tests --

# Checks that each contender answers like the seed app; drops the ones that
# do not start at all.
AVAILABLE=()
smoke_test() {
  local name body headers
  for name in "${CONTENDERS[@]}"; do
    if [[ $name == callnext* && $CALLNEXT_OK != 1 ]]; then
      continue
    fi
    if ! start_server "$name" 0; then
      note "$name: did not start or did not answer; skipped"
      continue
    fi
    AVAILABLE+=("$name")
    body=$(curl -s --max-time 5 "http://$HOST:$PORT/items/1" || true)
    if [[ $name == hyper ]]; then
      [[ $body == '{"message":"Hello World"}' ]] || note "$name: unexpected body '$body'"
    else
      [[ $body == '{"item_id":1}' ]] || note "$name: /items/1 answered '$body'"
      body=$(curl -s --max-time 5 "http://$HOST:$PORT/" || true)
      [[ $body == '{"message":"Hello World"}' ]] || note "$name: / answered '$body'"
      body=$(curl -s --max-time 5 -w ' %{http_code}' "http://$HOST:$PORT/items/99" || true)
      [[ $body == '{"detail":"Item 99 not found"} 404' ]] || note "$name: /items/99 answered '$body'"
    fi
    if [[ $name == callnext* || $name == *-mw || $name == fastapi ]]; then
      headers=$(curl -s -o /dev/null -D - --max-time 5 "http://$HOST:$PORT/items/1" | tr 'A-Z' 'a-z' || true)
      local header
      for header in x-process-time x-custom-middleware-header x-another-middleware; do
        grep -q "^$header: " <<<"$headers" || note "$name: response lacks $header"
      done
    fi
    stop_server
  done
}

# ------------------------------------------------------------- throughput --

throughput() {
  local round name start n i before after result tree=()
  echo -e "round\tcontender\t$WRK_COLUMNS\tcpu_ticks\tclk_tck" >"$RUNS_TSV"
  n=${#AVAILABLE[@]}
  for ((round = 1; round <= ROUNDS; round++)); do
    # Rotate the order each round so no contender always runs first or last.
    start=$(((round - 1) % n))
    for ((i = 0; i < n; i++)); do
      name=${AVAILABLE[$(((start + i) % n))]}
      log "-- round $round/$ROUNDS: $name"
      if ! start_server "$name" 0; then
        note "round $round: $name failed to start"
        continue
      fi
      warm_up "$THROUGHPUT_PATH"
      mapfile -t tree < <(server_tree)
      before=$(cpu_ticks "${tree[@]}")
      if ! result=$(run_wrk "$CONNECTIONS" "$DURATION" "$THROUGHPUT_PATH"); then
        note "round $round: wrk failed against $name"
        stop_server
        continue
      fi
      mapfile -t tree < <(server_tree)
      after=$(cpu_ticks "${tree[@]}")
      stop_server
      echo -e "$round\t$name\t$result\t$((after - before))\t$CLK_TCK" >>"$RUNS_TSV"
    done
  done
}

# ------------------------------------------------------------ concurrency --

concurrency() {
  local connections name result hwm levels=(1000) tree=()
  echo -e "contender\tconnections\t$WRK_COLUMNS\tpeak_rss_kib" >"$CONC_TSV"
  if [[ $NOFILE_OK == 1 ]]; then
    levels+=(10000)
  fi
  for connections in "${levels[@]}"; do
    for name in "${CONCURRENCY_CONTENDERS[@]}"; do
      [[ " ${AVAILABLE[*]} " == *" $name "* ]] || continue
      log "-- concurrency $connections: $name (simulated I/O on)"
      if ! start_server "$name" 1; then
        note "concurrency $connections: $name failed to start"
        continue
      fi
      warm_up "$CONCURRENCY_PATH"
      if ! result=$(run_wrk "$connections" "$DURATION" "$CONCURRENCY_PATH"); then
        note "concurrency $connections: wrk failed against $name"
        stop_server
        continue
      fi
      mapfile -t tree < <(server_tree)
      hwm=$(status_kib VmHWM "${tree[@]}")
      stop_server
      echo -e "$name\t$connections\t$result\t$hwm" >>"$CONC_TSV"
    done
  done
}

# ----------------------------------------------------------------- memory --

memory() {
  local name ready_line before after i open still failed helper out fds_before fds_after tree=()
  echo -e "contender\trequested\topen\tstill_open\tfailed\trss_before_kib\trss_after_kib\tfds_before\tfds_after" >"$MEM_TSV"
  for name in $MEM_CONTENDERS; do
    [[ " ${AVAILABLE[*]} " == *" $name "* ]] || continue
    log "-- memory: $IDLE_CONNECTIONS idle connections to $name"
    if ! start_server "$name" 0; then
      note "memory: $name failed to start"
      continue
    fi
    warm_up "$THROUGHPUT_PATH"
    sleep 0.5
    mapfile -t tree < <(server_tree)
    before=$(status_kib VmRSS "${tree[@]}")
    fds_before=$(find "/proc/$SERVER_PID/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
    out="$WORK/idle-$name.out"
    taskset -c "$CLIENT_CPU" python3 "$HERE/idle_conns.py" --port "$PORT" --count "$IDLE_CONNECTIONS" \
      --deadline 60 --hold 90 >"$out" 2>"$WORK/idle-$name.err" &
    helper=$!
    PIDS+=("$helper")
    ready_line=""
    for ((i = 0; i < 800; i++)); do
      ready_line=$(grep '^READY ' "$out" 2>/dev/null || true)
      [[ -n $ready_line ]] && break
      alive "$helper" || break
      sleep 0.1
    done
    if [[ -z $ready_line ]]; then
      note "memory: the idle-connection helper did not get ready against $name"
      tail -n 5 "$WORK/idle-$name.err" >&2 || true
      stop_pid "$helper"
      stop_server
      continue
    fi
    mapfile -t tree < <(server_tree)
    after=$(status_kib VmRSS "${tree[@]}")
    fds_after=$(find "/proc/$SERVER_PID/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)
    stop_pid "$helper"
    stop_server
    open=$(sed -E 's/.* open=([0-9]+).*/\1/' <<<"$ready_line")
    still=$(sed -E 's/.* still_open=([0-9]+).*/\1/' <<<"$ready_line")
    failed=$(sed -E 's/.* failed=([0-9]+).*/\1/' <<<"$ready_line")
    echo -e "$name\t$IDLE_CONNECTIONS\t$open\t$still\t$failed\t$before\t$after\t$fds_before\t$fds_after" >>"$MEM_TSV"
  done
}

# ------------------------------------------------------------------- main --

write_meta() {
  {
    echo "- date (UTC): $(date -u '+%Y-%m-%d %H:%M:%S')"
    echo "- host: $(uname -srm), $(nproc) CPUs, $(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)"
    echo "- pinning: servers on CPU $SERVER_CPU, wrk on CPU $CLIENT_CPU"
    echo "- rounds: $ROUNDS, duration: ${DURATION} s per run, warm-up: ${WARMUP} s, wrk timeout: $WRK_TIMEOUT"
    echo "- throughput: wrk -t1 -c$CONNECTIONS on $THROUGHPUT_PATH, simulated I/O off"
    echo "- tools: $(wrk -v 2>&1 | head -n 1 | cut -d' ' -f1-2), $(rustc --version), $("$VENV/bin/python" --version 2>&1)"
    echo "- python packages: $("$VENV/bin/pip" freeze 2>/dev/null | grep -Ei '^(fastapi|starlette|uvicorn|uvloop|httptools)==' | tr '\n' ' ')"
    if git -C "$ROOT" rev-parse --verify --quiet HEAD >/dev/null 2>&1; then
      echo "- callnext commit: $(git -C "$ROOT" rev-parse --short HEAD)$(git -C "$ROOT" diff --quiet HEAD || echo ' (plus uncommitted changes)')"
    else
      echo "- callnext commit: none yet (working tree)"
    fi
    echo "- load average at start: $LOAD_START; at end: $(cut -d' ' -f1-3 /proc/loadavg)"
  } >"$META"
}

main() {
  require cargo
  require python3
  require curl
  require taskset
  install_wrk
  install_venv
  if (($(nproc) < 2)) && [[ $SERVER_CPU == "$CLIENT_CPU" || $CLIENT_CPU == 1 ]]; then
    log "!! only one CPU: server and wrk share CPU 0"
    CLIENT_CPU=0
  fi
  LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
  build
  NOFILE_OK=1
  raise_nofile || {
    NOFILE_OK=0
    note "ulimit -n cannot be raised to $NOFILE_TARGET (hard limit $(ulimit -Hn)); 10,000-connection tests skipped"
  }

  log "== smoke tests"
  smoke_test
  [[ " ${AVAILABLE[*]} " == *" hyper "* ]] || {
    log "run.sh: the hyper floor does not run; cannot compute ratios"
    exit 1
  }
  log "== throughput: ${#AVAILABLE[@]} contenders x $ROUNDS rounds x ${DURATION} s"
  throughput
  if [[ $SKIP_CONCURRENCY != 1 ]]; then
    log "== concurrency (simulated I/O on)"
    concurrency
  fi
  if [[ $SKIP_MEMORY != 1 ]]; then
    if [[ $NOFILE_OK == 1 ]]; then
      log "== memory per idle connection"
      memory
    else
      note "memory test skipped: not enough file descriptors for $IDLE_CONNECTIONS connections"
    fi
  fi

  write_meta
  mkdir -p "$HERE/results"
  local out
  out="$HERE/results/$(date -u '+%Y-%m-%dT%H%M%SZ').md"
  local optional=()
  [[ -f $CONC_TSV ]] && optional+=(--concurrency "$CONC_TSV")
  [[ -f $MEM_TSV ]] && optional+=(--memory "$MEM_TSV")
  echo
  python3 "$HERE/report.py" --runs "$RUNS_TSV" ${optional[@]+"${optional[@]}"} --meta "$META" \
    --notes "$NOTES" --order "${CONTENDERS[*]}" --out "$out"
  echo
  echo "Raw rounds written to ${out#"$ROOT"/}; logs in $WORK; took $((SECONDS / 60)) min $((SECONDS % 60)) s"
}

main "$@"
