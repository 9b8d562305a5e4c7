#!/usr/bin/env python3
"""Instructions per request through each kind of stack, counted by callgrind.

run with: python3 bench/instructions.py [groups...]
          python3 bench/instructions.py batteries   (each battery alone, and the production stack)

Builds `benches/instructions.rs` (release, as `cargo bench` does), runs each configuration under
`valgrind --tool=callgrind`, counting only inside `serve_one` (one whole request: building it,
the stack, the app, dropping the response), and prints instructions per request. Callgrind
counts instructions, not time, so the figures repeat on a busy machine; they rank costs, they
are not nanoseconds.
"""
import glob
import os
import re
import subprocess
import sys
import tempfile

GROUPS = ["axum", "fn", "fn_off", "struct", "hook", "hook_off", "hook_ready", "tower"]
SIZES = [0, 1, 4, 16]
BATTERIES = ["request_id", "access_log", "security_headers", "cors", "timeout", "concurrency",
             "body_limit", "rate_limit", "noop_hook", "session", "production", "production_live"]
REQUESTS = 1000


def build():
    out = subprocess.run(
        ["cargo", "bench", "--bench", "instructions", "--no-run", "--message-format=json"],
        check=True, capture_output=True, text=True,
    ).stdout
    for line in out.splitlines():
        m = re.search(r'"executable":"([^"]+instructions-[^"]+)"', line)
        if m:
            return m.group(1)
    return sorted(glob.glob("target/release/deps/instructions-*"), key=os.path.getmtime)[-1]


def instructions(exe, group, n, requests):
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "cg.out")
        subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", "--toggle-collect=*serve_one*",
             exe, group, str(n), str(requests)],
            check=True, capture_output=True,
        )
        with open(out) as f:
            for line in f:
                if line.startswith("summary:") or line.startswith("totals:"):
                    return int(line.split()[1])
    raise RuntimeError("no totals in callgrind output")


def main():
    exe = build()
    groups = sys.argv[1:] or GROUPS
    if groups == ["batteries"]:
        base = instructions(exe, "fn", 0, REQUESTS) / REQUESTS
        print("| battery | instructions per request | over the empty stack |")
        print("|---|---:|---:|")
        print(f"| (empty stack) | {base:.0f} | — |")
        for battery in BATTERIES:
            per = instructions(exe, f"battery_{battery}", 0, REQUESTS) / REQUESTS
            print(f"| {battery} | {per:.0f} | +{per - base:.0f} |", flush=True)
        return
    print("| stack | " + " | ".join(f"N={n}" for n in SIZES) + " | per layer (0→4) | per layer (0→16) |")
    print("|---|" + "---:|" * (len(SIZES) + 2))
    for group in groups:
        sizes = [0] if group == "axum" else SIZES
        per = [instructions(exe, group, n, REQUESTS) / REQUESTS for n in sizes]
        cells = [f"{v:.0f}" for v in per] + ["—"] * (len(SIZES) - len(per))
        slopes = ["—", "—"]
        if len(per) == len(SIZES):
            slopes = [f"{(per[2] - per[0]) / 4:.0f}", f"{(per[3] - per[0]) / 16:.0f}"]
        print(f"| {group} | " + " | ".join(cells) + f" | {slopes[0]} | {slopes[1]} |", flush=True)


if __name__ == "__main__":
    main()
