"""Turn the raw figures collected by run.sh into markdown tables.

Inputs are tab-separated files with a header line (see run.sh for the
columns). Prints the summary tables to stdout and writes the full report,
including every raw round, to ``--out``.
"""

import argparse
import csv
import math
import statistics
import sys

# Minimum time one request of the seed's `/` takes with simulated I/O on:
# 10 ms + 100 ms + 5 ms of sleeps.
SEED_ROOT_SECONDS = 0.115

CONTENDER_LABELS = {
    "hyper": "hyper (floor)",
    "callnext": "callnext (seed stack)",
    "callnext-off": "callnext, instrumentation and metrics off",
    "axum-mw": "axum + 2 middlewares",
    "axum-bare": "axum, no middleware",
    "actix-mw": "actix + 2 middlewares",
    "actix-bare": "actix, no middleware",
    "fastapi": "FastAPI (uvicorn)",
}


def read_tsv(path):
    if not path:
        return []
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle, delimiter="\t"))


def label(name):
    return CONTENDER_LABELS.get(name, name)


def fmt(value, digits=0, suffix=""):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if digits == 0:
        return f"{value:,.0f}{suffix}"
    return f"{value:,.{digits}f}{suffix}"


def median(values):
    values = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.median(values) if values else None


def table(header, rows, text_columns=1):
    """A markdown table; the first ``text_columns`` columns are left-aligned."""
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" if i < text_columns else "---:"
                            for i in range(len(header))) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def socket_errors(row):
    return sum(int(row[k]) for k in ("connect_errors", "read_errors", "write_errors", "timeouts"))


def throughput_runs(rows):
    """Derive per-run figures, including ratios to hyper in the same round."""
    runs = []
    for row in rows:
        requests = int(row["requests"])
        seconds = int(row["duration_us"]) / 1e6
        cpu_seconds = int(row["cpu_ticks"]) / int(row["clk_tck"])
        runs.append({
            "round": int(row["round"]),
            "contender": row["contender"],
            "requests": requests,
            "rps": requests / seconds if seconds else float("nan"),
            "p50_ms": int(row["p50_us"]) / 1000,
            "p99_ms": int(row["p99_us"]) / 1000,
            "non2xx": int(row["non2xx"]),
            "socket_errors": socket_errors(row),
            "cpu_us": cpu_seconds * 1e6 / requests if requests else float("nan"),
            "cpu_util": 100 * cpu_seconds / seconds if seconds else float("nan"),
        })
    floor = {r["round"]: r for r in runs if r["contender"] == "hyper"}
    for run in runs:
        base = floor.get(run["round"])
        run["rps_x"] = run["rps"] / base["rps"] if base and base["rps"] else None
        run["cpu_x"] = run["cpu_us"] / base["cpu_us"] if base and base["cpu_us"] else None
    return runs


def summary_table(runs, order):
    rows = []
    for name in order:
        mine = [r for r in runs if r["contender"] == name]
        if not mine:
            continue
        rows.append([
            label(name),
            fmt(median(r["rps"] for r in mine)),
            fmt(median(r["rps_x"] for r in mine), 2, "×"),
            fmt(median(r["p50_ms"] for r in mine), 2),
            fmt(median(r["p99_ms"] for r in mine), 2),
            fmt(sum(r["non2xx"] for r in mine)),
            fmt(median(r["cpu_us"] for r in mine), 1),
            fmt(median(r["cpu_x"] for r in mine), 2, "×"),
            fmt(median(r["cpu_util"] for r in mine)),
        ])
    header = ["contender", "req/s", "×hyper", "p50 ms", "p99 ms", "non-2xx (sum)",
              "CPU µs/req", "×hyper CPU", "server CPU %"]
    return table(header, rows)


def raw_table(runs):
    rows = [[
        str(r["round"]), label(r["contender"]), fmt(r["requests"]), fmt(r["rps"]),
        fmt(r["rps_x"], 2, "×"), fmt(r["p50_ms"], 2), fmt(r["p99_ms"], 2), fmt(r["non2xx"]),
        fmt(r["socket_errors"]), fmt(r["cpu_us"], 1), fmt(r["cpu_x"], 2, "×"),
        fmt(r["cpu_util"]),
    ] for r in sorted(runs, key=lambda r: r["round"])]
    header = ["round", "contender", "requests", "req/s", "×hyper", "p50 ms", "p99 ms",
              "non-2xx", "socket errors", "CPU µs/req", "×hyper CPU", "server CPU %"]
    return table(header, rows, text_columns=2)


def concurrency_table(rows):
    out = []
    for row in rows:
        connections = int(row["connections"])
        requests = int(row["requests"])
        seconds = int(row["duration_us"]) / 1e6
        rps = requests / seconds if seconds else float("nan")
        ideal = connections / SEED_ROOT_SECONDS
        # wrk has no latency sample when nothing completed within the run.
        p50 = int(row["p50_us"]) / 1000 if requests else None
        p99 = int(row["p99_us"]) / 1000 if requests else None
        out.append([
            label(row["contender"]), fmt(connections), fmt(rps), fmt(ideal),
            fmt(100 * rps / ideal, 1, "%"), fmt(p50, 1), fmt(p99, 1),
            fmt(int(row["non2xx"])), fmt(socket_errors(row)),
            fmt(int(row["peak_rss_kib"]) / 1024, 1),
        ])
    header = ["contender", "connections", "req/s", "ideal req/s", "% of ideal", "p50 ms",
              "p99 ms", "non-2xx", "socket errors", "peak RSS MiB"]
    return table(header, out)


def memory_table(rows):
    out = []
    for row in rows:
        opened = int(row["open"])
        delta_kib = int(row["rss_after_kib"]) - int(row["rss_before_kib"])
        per_conn = delta_kib * 1024 / opened if opened else float("nan")
        out.append([
            label(row["contender"]), fmt(int(row["requested"])), fmt(opened),
            fmt(int(row["still_open"])), fmt(int(row["rss_before_kib"]) / 1024, 1),
            fmt(int(row["rss_after_kib"]) / 1024, 1), fmt(per_conn),
            fmt(int(row["fds_after"]) - int(row["fds_before"])),
        ])
    header = ["contender", "requested", "opened", "still open at RSS read", "RSS before MiB",
              "RSS after MiB", "bytes / idle connection", "server fds added"]
    return table(header, out)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", required=True)
    parser.add_argument("--concurrency")
    parser.add_argument("--memory")
    parser.add_argument("--meta", help="markdown lines describing the run")
    parser.add_argument("--notes", help="one note per line (skips, failures)")
    parser.add_argument("--order", required=True, help="space-separated contender order")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    order = args.order.split()
    runs = throughput_runs(read_tsv(args.runs))
    concurrency = read_tsv(args.concurrency)
    memory = read_tsv(args.memory)
    notes = []
    if args.notes:
        with open(args.notes) as handle:
            notes = [line.strip() for line in handle if line.strip()]

    summary = ["## Throughput and CPU per request: `GET /items/1`, 64 connections, "
               "simulated I/O off (medians over rounds)", "", summary_table(runs, order), ""]
    if concurrency:
        summary += ["## Concurrency with simulated I/O on: `GET /`, ideal = connections / "
                    f"{SEED_ROOT_SECONDS} s", "", concurrency_table(concurrency), ""]
    if memory:
        summary += ["## Memory per idle keep-alive connection", "", memory_table(memory), ""]
    if any(int(row["requests"]) == 0 for row in concurrency):
        notes.append("a concurrency run at 0 req/s completed no request within DURATION: "
                     "every request was still in flight when wrk stopped (latency n/a); "
                     "a longer DURATION shows its real latency")
    if notes:
        summary += ["## Notes", ""] + [f"- {note}" for note in notes] + [""]
    summary_text = "\n".join(summary)
    sys.stdout.write(summary_text)

    meta = ""
    if args.meta:
        with open(args.meta) as handle:
            meta = handle.read()
    with open(args.out, "w") as handle:
        handle.write("# Peer benchmark run\n\n")
        handle.write(meta.rstrip() + "\n\n")
        handle.write(summary_text)
        handle.write("\n## Raw rounds (throughput)\n\n")
        handle.write(raw_table(runs) + "\n")


if __name__ == "__main__":
    main()
