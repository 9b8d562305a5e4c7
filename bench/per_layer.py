#!/usr/bin/env python3
"""Prints ns per request and ns per added layer from criterion's results of `cargo bench --bench stack`.

run with: python3 bench/per_layer.py [criterion result folders...] [--median]

Each figure is the fastest of criterion's samples (a sample is the mean of many iterations)
over every folder given (one per round, see bench/stack_rounds.sh; target/criterion when none):
on a shared machine other tenants only ever add time, so the fastest sample is the one least
disturbed. `--median` prints the lowest of criterion's per-round medians instead.
"""
import json
import pathlib
import sys

args = [a for a in sys.argv[1:] if not a.startswith("--")]
use_median = "--median" in sys.argv
roots = [pathlib.Path(a) for a in args] or [pathlib.Path("target/criterion")]
groups = [
    "callnext_fn",
    "callnext_fn_uninstrumented",
    "callnext_struct",
    "callnext_hook",
    "callnext_hook_uninstrumented",
    "callnext_hook_async_ready",
    "callnext_tower",
    "axum_from_fn_service_builder",
    "axum_from_fn_router_layer",
    "tower_hand_written",
]
sizes = [0, 1, 4, 16]


def one_root(root, group, n):
    base = root / group / str(n) / "new"
    if use_median:
        path = base / "estimates.json"
        if not path.exists():
            return None
        return json.loads(path.read_text())["median"]["point_estimate"]
    path = base / "sample.json"
    if not path.exists():
        return None
    sample = json.loads(path.read_text())
    return min(t / i for t, i in zip(sample["times"], sample["iters"]))


def median_ns(group, n):
    values = [v for v in (one_root(r, group, n) for r in roots) if v is not None]
    return min(values) if values else None


print("| stack | " + " | ".join(f"N={n} (ns)" for n in sizes) + " | ns per layer (slope 0→4) | ns per layer (slope 0→16) |")
print("|---|" + "---|" * (len(sizes) + 2))
for group in groups:
    values = [median_ns(group, n) for n in sizes]
    if all(v is None for v in values):
        continue
    cells = ["—" if v is None else f"{v:.0f}" for v in values]
    slopes = []
    for i in (2, 3):
        if values[0] is not None and values[i] is not None:
            slopes.append(f"{(values[i] - values[0]) / sizes[i]:.1f}")
        else:
            slopes.append("—")
    print(f"| {group} | " + " | ".join(cells) + f" | {slopes[0]} | {slopes[1]} |")

on = [median_ns("callnext_fn", n) for n in sizes]
off = [median_ns("callnext_fn_uninstrumented", n) for n in sizes]
if None not in (on[0], on[-1], off[0], off[-1]):
    per_layer = ((on[-1] - on[0]) - (off[-1] - off[0])) / sizes[-1]
    print(f"\ninstrumentation cost: {per_layer:.1f} ns per layer, {on[0] - off[0]:.0f} ns per request at N=0")
axum = median_ns("tower_hand_written", 0)
if on[0] is not None and axum is not None:
    print(f"empty stack over the bare axum Router: {on[0] - axum:.0f} ns (instrumented), {off[0] - axum:.0f} ns (uninstrumented)")
