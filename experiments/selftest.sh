#!/usr/bin/env bash
# Checks the experiment tools on two tiny sweeps (ctest: experiments.tools):
# table.py's mean ± std, time-to-target and avg: cells, and l1_optimum.py's
# distances: sync_sgd with full-shard gradients must land on the reference
# optimum (the same proximal gradient descent) and sync_sgd_avg off it with
# extra nonzeros; and that run_all.sh lists every experiment script here.
# usage: selftest.sh CHORUS_BINARY
set -euo pipefail
CHORUS=${1:?usage: selftest.sh CHORUS_BINARY}
HERE=$(cd "$(dirname "$0")" && pwd)
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fail() { echo "selftest: $*" >&2; exit 1; }
P=(--dataset synthetic-logistic --model logistic --reg l1:0.01 --lr 2 --steps 300 --eval-every 50)
"$CHORUS" sweep ref --runs-dir "$TMP" --seeds 1,2 --grid algorithm=sync_sgd --workers 1 --batch 8192 \
  "${P[@]}" > "$TMP/ref.log" 2>&1 || fail "reference sweep failed: $(tail -3 "$TMP/ref.log")"
"$CHORUS" sweep pts --runs-dir "$TMP" --seeds 1,2 --grid algorithm=sync_sgd,sync_sgd_avg --workers 2 \
  --batch 4096 "${P[@]}" > "$TMP/pts.log" 2>&1 || fail "sweep failed: $(tail -3 "$TMP/pts.log")"

table=$("$PY" "$HERE/table.py" "$TMP/pts/summary.json" --target 0.5 --col "acc=test_acc:%.3f" \
  --col "steps to 0.5=ttt_step:%.0f" --col "mean acc=avg:test_acc:%.3f")
echo "$table"
grep -q '^| algorithm | acc | steps to 0.5 | mean acc |$' <<< "$table" || fail "table.py: wrong header"
for algo in sync_sgd sync_sgd_avg; do
  grep -Eq "^\| $algo \| 0\.[0-9]{3} ± 0\.[0-9]{3} \| [0-9]+ ± [0-9]+ \| 0\.[0-9]{3} ± 0\.[0-9]{3} \|$" <<< "$table" \
    || fail "table.py: no mean ± std row for $algo"
done

l1=$("$PY" "$HERE/l1_optimum.py" "$TMP/ref" "$TMP/pts")
echo "$l1"
dist() { echo "$l1" | awk -F'|' -v a="$1" '$2 ~ " "a" " { split($3, v, " "); print v[1] }'; }
extra() { echo "$l1" | awk -F'|' -v a="$1" '$2 ~ " "a" " { split($5, v, " "); print v[1] }'; }
awk -v d="$(dist sync_sgd)" 'BEGIN { exit !(d != "" && d + 0 < 1e-4) }' \
  || fail "l1_optimum.py: sync_sgd is $(dist sync_sgd) from the reference, expected < 1e-4"
awk -v d="$(dist sync_sgd_avg)" -v e="$(extra sync_sgd_avg)" 'BEGIN { exit !(d + 0 > 1e-3 && e + 0 > 0) }' \
  || fail "l1_optimum.py: sync_sgd_avg is $(dist sync_sgd_avg) away with $(extra sync_sgd_avg) extra nonzeros; expected a biased point"
# run_all.sh runs every experiment script of this folder: all but the
# helpers (lib.sh, selftest.sh, run_all.sh itself) must be on its list.
listed=$("$HERE/run_all.sh" --list) || fail "run_all.sh --list failed"
for script in "$HERE"/*.sh; do
  name=$(basename "$script")
  case "$name" in lib.sh | selftest.sh | run_all.sh) continue ;; esac
  grep -qx "$name" <<< "$listed" || fail "run_all.sh does not run $name"
done
echo "selftest: ok"
