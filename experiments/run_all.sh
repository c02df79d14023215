#!/usr/bin/env bash
# Runs every seed experiment (seed*.sh) in turn and the example tables
# (examples.sh); each is resumable (finished runs are skipped). About 15
# minutes of runs on an idle 2-core machine; figures go to experiments/figures/.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
status=0
for script in "$here"/seed*.sh "$here"/examples.sh; do
  echo "## $(basename "$script")"
  "$script" || { echo "run_all.sh: $(basename "$script") failed" >&2; status=1; }
  echo
done
exit $status
