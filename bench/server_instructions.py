#!/usr/bin/env python3
"""The seed server's user-space instructions per request, counted by callgrind: the server
half of the speed guard (`bench/check.py`), and a quick figure by itself.

run with: python3 bench/server_instructions.py      (builds `--profile perf`, prints the figure)
          PROFILE=release python3 bench/server_instructions.py   (the binary `cargo run --release` runs)
          python3 bench/server_instructions.py peers   (callnext and the peers of bench/peers, counted
                                                        the same way: builds them too)

The release binary as the benchmarks build it (`cargo build --profile perf -p callnext-server`)
runs under callgrind with one worker at log level warn, simulated I/O off; counting starts once
it has answered a first request (start-up, whose clock calibration runs for a set time and so
for a varying number of instructions under valgrind, is left out) and covers every thread. Two
runs, LOW and HIGH keep-alive requests for `GET /items/1` on one connection from this script,
and (I(HIGH) - I(LOW)) / (HIGH - LOW) is one request's cost. The kernel's share is not counted.
"""
import http.client
import os
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOW, HIGH = 300, 1300


def build(profile="perf"):
    subprocess.run(["cargo", "build", "--profile", profile, "-p", "callnext-server"], check=True,
                   cwd=ROOT, stdout=subprocess.DEVNULL)
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    return os.path.join(target, profile, "callnext")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SEED_ARGS = ["--workers", "1", "--log-level", "warn", "--no-simulated-io"]


def counted(command, requests):
    """The server's instructions over `requests` keep-alive requests after its first answer
    (`command`: the executable and its arguments; the address is added)."""
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "cg.out")
        server = subprocess.Popen(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "--instr-atstart=no",
             *command, "--host", "127.0.0.1", "--port", str(port)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            conn = None
            for _ in range(600):
                try:
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
                    conn.request("GET", "/items/1")
                    conn.getresponse().read()
                    break
                except OSError:
                    conn = None
                    time.sleep(0.2)
            if conn is None:
                raise RuntimeError("the server did not answer under valgrind")
            subprocess.run(["callgrind_control", "-i", "on", str(server.pid)], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for _ in range(requests):
                conn.request("GET", "/items/1")
                res = conn.getresponse()
                res.read()
                if res.status != 200:
                    raise RuntimeError(f"GET /items/1 answered {res.status}")
            subprocess.run(["callgrind_control", "-d", str(server.pid)], check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            conn.close()
        finally:
            server.kill()
            server.wait()
        total = 0
        for name in os.listdir(tmp):
            with open(os.path.join(tmp, name)) as f:
                for line in f:
                    if line.startswith("summary:"):
                        total += int(line.split()[1])
        return total


def per_request(exe, args=SEED_ARGS):
    command = [exe, *args]
    return (counted(command, HIGH) - counted(command, LOW)) / (HIGH - LOW)


def peers():
    """| server | instructions per request | ×hyper | for callnext and bench/peers' servers."""
    here = os.path.join(ROOT, "bench", "peers")
    subprocess.run(["cargo", "build", "--release"], check=True, cwd=here, stdout=subprocess.DEVNULL)
    peer = lambda name: os.path.join(here, "target", "release", name)  # noqa: E731
    servers = [
        ("bare hyper", peer("hyper-peer"), []),
        ("callnext seed server", build(), SEED_ARGS),
        ("callnext, instrumentation and metrics off", build(),
         SEED_ARGS + ["--no-instrument", "--metrics-path", "off"]),
        ("axum + 2 middlewares", peer("axum-peer"), ["--no-simulated-io"]),
        ("actix-web + 2 middlewares", peer("actix-peer"), ["--no-simulated-io"]),
    ]
    print("| server | instructions per request | ×hyper |\n|---|---:|---:|")
    hyper = None
    for name, exe, args in servers:
        figure = per_request(exe, args)
        hyper = hyper or figure
        print(f"| {name} | {figure:,.0f} | {figure / hyper:.2f}× |", flush=True)


if __name__ == "__main__":
    if sys.argv[1:] == ["peers"]:
        peers()
        sys.exit(0)
    profile = os.environ.get("PROFILE", "perf")
    print(f"seed server ({profile}): {per_request(build(profile)):.0f} instructions per request")
    sys.exit(0)
