#!/usr/bin/env bash
# Regenerates the README tables that come from the example programs
# (examples/*.cpp; sections "Issue 3 experiments" and "Issue 4 experiments"):
# runs each one at its own defaults and prints its table as markdown.
#   experiments/examples.sh                 every example below
#   experiments/examples.sh NAME [NAME...]  only those
# Each example is one run per row with seed 1 (the examples fix it); the
# seed experiments (seed*.sh) are the ones with 3 seeds. ctest's example.*
# tests run each example tiny and check that it prints exactly the columns of
# its README table (example_table.py --readme).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${BIN:-$ROOT/build/examples}
OUT=${OUT:-$ROOT/runs/examples}
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
ALL=(straggler_async local_sgd_tau ri_sgd_crash gossip_topologies gossip_heterogeneous
     leader_vs_easgd)
names=("$@")
[ ${#names[@]} -gt 0 ] || names=("${ALL[@]}")
for name in "${names[@]}"; do
  case " ${ALL[*]} " in
    *" $name "*) ;;
    *) echo "examples.sh: unknown example '$name' (one of: ${ALL[*]})" >&2; exit 2 ;;
  esac
  if [ ! -x "$BIN/$name" ]; then
    echo "examples.sh: $BIN/$name not found; build it (cmake --build build --target example_$name)" >&2
    exit 1
  fi
  # The README's settings where they are not the example's defaults.
  args=(--out="$OUT")
  case $name in gossip_topologies) args+=(--model=softmax) ;; esac
  echo "### $name: build/examples/$name ${args[*]} (load: $(cut -d' ' -f1-3 /proc/loadavg))"
  "$PY" "$ROOT/experiments/example_table.py" -- nice -n 10 "$BIN/$name" "${args[@]}"
  echo
done
