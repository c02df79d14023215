#!/usr/bin/env bash
# Seed 000: proximal sync SGD on L1-regularized logistic regression
# (synthetic-logistic: d = 100, 10 true nonzeros, 8192 train samples, drawn
# from the seed) converges to the optimum w* and its support; the averaged
# form sync_sgd_avg, w+ = mean_i Prox(w - eta g_i), stalls at a biased point
# with extra nonzeros, worse under label skew.
# lambda 0.01 (l1), 4 workers, lr 2, 2000 rounds of full-shard gradients
# (batch 2048 = each worker's whole shard: the deterministic setting of the
# fixed-point argument); iid shards vs shards:1 (sorted by label, one shard per
# worker: each worker sees about one class). w*: 1 worker, full batch 8192,
# proximal gradient descent, 4000 steps. Distances from model.npy
# (l1_optimum.py).
source "$(dirname "$0")/lib.sh"
PROBLEM=(--dataset synthetic-logistic --model logistic --reg l1:0.01 --lr 2)
sweep s000-optimum --grid algorithm=sync_sgd --workers 1 --batch 8192 --steps 4000 "${PROBLEM[@]}" \
  --eval-every 4000
sweep s000-fullbatch --grid partition=iid,shards:1 --grid algorithm=sync_sgd,sync_sgd_avg \
  --workers 4 --batch 2048 --steps 2000 --eval-every 20 "${PROBLEM[@]}"
"$PY" "$ROOT/experiments/l1_optimum.py" --figure "$FIGS/s000_l1_prox.png" \
  --title "L1-logistic, 4 workers, full-shard gradients, 2000 rounds" \
  "$RUNS/s000-optimum" "$RUNS/s000-fullbatch"
"$PY" "$ROOT/experiments/shrink_png.py" "$FIGS/s000_l1_prox.png"
echo
table s000-fullbatch --col "train loss=train_loss:%.5f" --col "test acc=test_acc:%.4f"
