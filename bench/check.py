#!/usr/bin/env python3
"""The speed guard: instructions per request of each kind of stack and of each battery,
counted by callgrind (exact, so a busy machine changes nothing), compared with the committed
baseline `bench/baseline.json`. Fails when any figure grows more than 3 %.

run with: python3 bench/check.py            (compare; exit 1 on a regression)
          python3 bench/check.py --update   (write the baseline: a deliberate commit that says why)

What is counted: `benches/instructions.rs` (release, as `cargo bench` builds it) serving
REQUESTS requests in process, only inside `serve_one` (one whole request: building it, the
stack, the app, dropping the response). Each figure is the mean over the requests. And
`seed_server`: the seed server itself (`--profile perf`, one worker, log level warn) over
keep-alive requests, every thread counted (`bench/server_instructions.py`).
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import instructions  # noqa: E402  (the same build and callgrind run as bench/instructions.py)
import server_instructions  # noqa: E402

BASELINE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "baseline.json")
TOLERANCE = 0.03
REQUESTS = 400

# (group, stack size): the empty stack, each kind of layer four deep, and every battery.
CASES = [("axum", 0), ("fn", 0)]
CASES += [(group, 4) for group in ["fn", "fn_off", "struct", "hook", "hook_off", "tower"]]
CASES += [(f"battery_{b}", 0) for b in instructions.BATTERIES]


def measure():
    exe = instructions.build()
    figures = {}
    for group, n in CASES:
        name = f"{group}/{n}"
        figures[name] = round(instructions.instructions(exe, group, n, REQUESTS) / REQUESTS)
        print(f"  {name:<32} {figures[name]:>8}", flush=True)
    figures["seed_server"] = round(server_instructions.per_request(server_instructions.build()))
    print(f"  {'seed_server':<32} {figures['seed_server']:>8}", flush=True)
    return figures


def main():
    update = "--update" in sys.argv[1:]
    print(f"instructions per request ({REQUESTS} requests a case, callgrind):")
    figures = measure()
    if update:
        with open(BASELINE, "w") as f:
            json.dump(figures, f, indent=2, sort_keys=True)
            f.write("\n")
        print(f"baseline written: {BASELINE}")
        return 0
    with open(BASELINE) as f:
        baseline = json.load(f)
    failed = []
    print(f"\n| case | baseline | now | change |\n|---|---:|---:|---:|")
    for name, now in figures.items():
        was = baseline.get(name)
        if was is None:
            print(f"| {name} | — | {now} | new |")
            continue
        change = (now - was) / was
        mark = " **over 3 %**" if change > TOLERANCE else ""
        print(f"| {name} | {was} | {now} | {change:+.1%}{mark} |")
        if change > TOLERANCE:
            failed.append(name)
    if failed:
        print(f"\nslower than the baseline by more than {TOLERANCE:.0%}: {', '.join(failed)}")
        print("find the cause (python3 bench/instructions.py, callgrind_annotate), or, if the cost "
              "is meant, move the baseline in a commit that says why (bench/check.py --update)")
        return 1
    print("\nno figure grew more than 3 %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
