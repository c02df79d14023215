#!/usr/bin/env bash
# Runs every seed experiment (seed*.sh), the issue experiments (issue*_*.sh,
# e.g. issue11_compression.sh) and the example tables (examples.sh) in turn;
# each is resumable (finished runs are skipped). About 15 minutes of runs for
# the seeds and examples on an idle 2-core machine, and about 14 more for the
# two issue 11 scripts; figures go to experiments/figures/.
# usage: run_all.sh [--list]   (--list: print the scripts it would run, one a line)
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
scripts=("$here"/seed*.sh "$here"/issue*_*.sh "$here"/examples.sh)
if [ "${1:-}" = "--list" ]; then
  for script in "${scripts[@]}"; do
    [ -e "$script" ] && basename "$script"
  done
  exit 0
elif [ $# -gt 0 ]; then
  echo "usage: run_all.sh [--list]" >&2
  exit 2
fi
status=0
for script in "${scripts[@]}"; do
  [ -e "$script" ] || continue  # a pattern that matched nothing
  echo "## $(basename "$script")"
  "$script" || { echo "run_all.sh: $(basename "$script") failed" >&2; status=1; }
  echo
done
exit $status
