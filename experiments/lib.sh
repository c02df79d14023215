# Shared by the experiment scripts (sourced, not run): where the runner is,
# where runs and figures go, and three helpers.
#   sweep NAME ARGS...   chorus sweep NAME over $SEEDS into $RUNS (resumable)
#   plot ARGS...         chorus plot (matplotlib)
#   table NAME... ARGS   markdown table of mean ± std over seeds (table.py)
# Environment: CHORUS (the binary, default build/chorus), RUNS (default
# runs/experiments), SEEDS (default 1,2,3), JOBS (runs at a time, default 1).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CHORUS=${CHORUS:-$ROOT/build/chorus}
RUNS=${RUNS:-$ROOT/runs/experiments}
FIGS=${FIGS:-$ROOT/experiments/figures}
SEEDS=${SEEDS:-1,2,3}
JOBS=${JOBS:-1}
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
if [ ! -x "$CHORUS" ]; then
  echo "experiments: $CHORUS not found; build it first (make, or cmake --build build --target chorus_cli)" >&2
  exit 1
fi
mkdir -p "$RUNS" "$FIGS"

show() { echo "+ $*" >&2; "$@"; }
sweep() {
  local name=$1
  shift
  # A failed run makes chorus sweep exit 1 after writing the summary of the
  # others: the table then says how many seeds finished.
  show nice -n 10 "$CHORUS" sweep "$name" --runs-dir "$RUNS" --seeds "$SEEDS" --jobs "$JOBS" "$@" \
    | grep -v ': started$' || echo "experiments: sweep $name had failures (see above)" >&2
}
# plot ARGS... --out FIG: chorus plot, then the PNG made small (shrink_png.py).
plot() {
  show "$CHORUS" plot "$@"
  local out=${*: -1}
  case $out in *.png) "$PY" "$ROOT/experiments/shrink_png.py" "$out" ;; esac
}
# table NAME [NAME...] [--col ...]: the named sweeps' summaries, one table.
table() {
  local files=()
  while [ $# -gt 0 ] && [ "${1#--}" = "$1" ]; do
    files+=("$RUNS/$1/summary.json")
    shift
  done
  "$PY" "$ROOT/experiments/table.py" "${files[@]}" "$@"
}
