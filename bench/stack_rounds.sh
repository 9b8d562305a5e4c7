#!/usr/bin/env bash
# Runs `cargo bench --bench stack` ROUNDS times (default 5), keeping each round's criterion
# results, then prints the per-layer table from all of them (bench/per_layer.py: the fastest
# sample of every configuration over all rounds, which a busy machine disturbs least).
#
# run with: bench/stack_rounds.sh          (ROUNDS=3 bench/stack_rounds.sh for a quicker one)
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${ROUNDS:-5}
out=target/stack-rounds
rm -rf "$out"
mkdir -p "$out"
for round in $(seq 1 "$rounds"); do
  echo "== round $round of $rounds" >&2
  cargo bench --bench stack >/dev/null 2>&1
  cp -r target/criterion "$out/round-$round"
done
python3 bench/per_layer.py "$out"/round-*
