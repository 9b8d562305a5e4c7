# Shared by the bench scripts: sourced after they set BIN (the server binary) and WORK (a
# scratch directory).

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# instructions NAME CONFIG N [STREAM]: the server's user-space instructions (all its threads)
# after N keep-alive requests of GET /items/1 (curl), with STREAM (a path) read by a second
# curl into $WORK/events all along when given. COLLECT, when set, counts only inside the
# functions it matches (callgrind's --toggle-collect); otherwise counting starts once the server
# answers (instrumentation turned on then), so start-up (the clock's calibration, which runs for a set time and so for more
# instructions the slower valgrind goes) is left out.
# Callgrind counts instructions, not time, so the figures repeat on a busy machine; the
# kernel's share of a request is not in them.
instructions() {
  local name=$1 config=$2 n=$3 stream=${4:-} port pid viewer="" i
  port=$(free_port)
  local counting=(--instr-atstart=no)
  [ -n "${COLLECT:-}" ] && counting=(--toggle-collect="$COLLECT")
  valgrind --tool=callgrind --callgrind-out-file="$WORK/$name.$n" "${counting[@]}" \
    "$BIN" --port "$port" --no-simulated-io --workers 1 --log-level warn --config "$config" \
    >/dev/null 2>&1 &
  pid=$!
  for ((i = 0; i < 600; i++)); do
    curl -s -o /dev/null "http://127.0.0.1:$port/items/1" && break
    sleep 0.2
  done
  [ -n "${COLLECT:-}" ] || callgrind_control -i on "$pid" >/dev/null 2>&1
  if [ -n "$stream" ]; then
    curl -sN "http://127.0.0.1:$port$stream" >"$WORK/events" &
    viewer=$!
  fi
  python3 - "$port" "$n" >"$WORK/curl.cfg" <<'PY'
import sys
port, n = sys.argv[1], int(sys.argv[2])
for _ in range(n):
    print(f'url = "http://127.0.0.1:{port}/items/1"\noutput = "/dev/null"')
PY
  curl -s -K "$WORK/curl.cfg"
  [ -n "$viewer" ] && { kill "$viewer" 2>/dev/null || true; wait "$viewer" 2>/dev/null || true; }
  callgrind_control -d "$pid" >/dev/null 2>&1
  sleep 1
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  grep -h '^summary' "$WORK/$name.$n"* | awk '{s += $2} END {print s}'
}
