#!/usr/bin/env bash
# Issue 11 / seed 001's claim: under a slow link, PSGD (sync_sgd: a server
# broadcasts to every worker and gathers every gradient, so its link carries
# 2n messages a round) loses linear speedup, while DSGD (gossip_sgd: each peer
# exchanges with its few neighbours in parallel) scales better.
# Fashion-MNIST softmax (7850 parameters, 31 KB), batch 32 per worker, lr 0.2,
# 2 epochs (the same samples for every n: 1875/n rounds an epoch), iid shards,
# `--link 100mbit` (2.5 ms a model message), workers 1,2,4,8,16 (gossip from
# 2); evaluated every 188/n rounds (about every 6000 samples, the same number
# of evaluations in every run). Speedup over sync_sgd with 1 worker (which
# also pays the link, both ways) in the time of the whole run (2 epochs: the
# same samples; the figure) and in the time to test accuracy TARGET (wall_s of
# metrics.jsonl, evaluations included; noisy: at lr 0.2 the accuracy swings
# by a few points between evaluations). The link delays are simulated in process; the machine has 2 cores,
# so compute does not scale past 2 workers: what scales here is the link.
source "$(dirname "$0")/lib.sh"
TARGET=${TARGET:-0.78}
WORKERS=${WORKERS:-1,2,4,8,16}
BASE=(--dataset fashion-mnist --model softmax --batch 32 --lr 0.2 --epochs 2 --link 100mbit)
for n in ${WORKERS//,/ }; do
  ev=$(( (188 + n / 2) / n ))
  sweep "i11s-sync-w$n" --grid algorithm=sync_sgd --grid workers="$n" "${BASE[@]}" --eval-every "$ev"
  [ "$n" -ge 2 ] || continue
  for topo in ring exp; do
    sweep "i11s-$topo-w$n" --grid algorithm=gossip_sgd --grid topology="$topo" --grid workers="$n" \
      "${BASE[@]}" --eval-every "$ev"
  done
done
LAST=${WORKERS##*,}
plot "$RUNS/i11s-sync-w1" "$RUNS/i11s-sync-w$LAST" "$RUNS/i11s-ring-w$LAST" "$RUNS/i11s-exp-w$LAST" \
  --x wall_s --y test_acc --title "softmax, 100 Mbit/s link: 1 vs $LAST workers, test accuracy vs wall time" \
  --out "$FIGS/i11_speedup_curves.png"
PROTOS=(sync=sync_sgd ring="gossip_sgd ring" exp="gossip_sgd exp")
show "$PY" "$ROOT/experiments/speedup.py" "$RUNS" end "$FIGS/i11_speedup.png" "${PROTOS[@]}" --workers "$WORKERS"
"$PY" "$ROOT/experiments/shrink_png.py" "$FIGS/i11_speedup.png"
echo
show "$PY" "$ROOT/experiments/speedup.py" "$RUNS" "$TARGET" - "${PROTOS[@]}" --workers "$WORKERS"
echo
table $(for n in ${WORKERS//,/ }; do echo "i11s-sync-w$n"; [ "$n" -lt 2 ] || echo "i11s-ring-w$n i11s-exp-w$n"; done) \
  --col "test acc=test_acc:%.4f" --col "MB sent=bytes_sent/1e6:%.1f" --col "wall s=wall_s:%.2f" \
  --col "rounds=steps:%.0f"
