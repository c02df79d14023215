#!/usr/bin/env bash
# Seed 000: proximal sync SGD on L1-regularized logistic regression
# (synthetic-logistic: d = 100, 10 true nonzeros, 8192 train samples, drawn
# from the seed) converges to the optimum w* and its support; the averaged
# form sync_sgd_avg, w+ = mean_i Prox(w - eta g_i), stalls at a biased point
# with extra nonzeros, worse under label skew.
# lambda 0.01 (l1), 4 workers; iid shards vs shards:1 (sorted by label, one
# shard per worker: each worker sees about one class). w*: 1 worker, full
# batch 8192, proximal gradient descent, lr 2, 4000 steps. Distances from
# model.npy (l1_optimum.py).
# Part 1: lr 2, 2000 rounds of full-shard gradients (batch 2048 = each
# worker's whole shard: the deterministic setting of the fixed-point argument).
# Part 2: stochastic gradients, batch 64, lr 2, 20000 rounds, constant step
# vs the decaying inv:100 (eta_t = 2 / (1 + t/100); the seed's convergence
# theory is for decaying steps).
source "$(dirname "$0")/lib.sh"
PROBLEM=(--dataset synthetic-logistic --model logistic --reg l1:0.01 --lr 2)
sweep s000-optimum --grid algorithm=sync_sgd --workers 1 --batch 8192 --steps 4000 "${PROBLEM[@]}" \
  --eval-every 4000
sweep s000-fullbatch --grid partition=iid,shards:1 --grid algorithm=sync_sgd,sync_sgd_avg \
  --workers 4 --batch 2048 --steps 2000 --eval-every 20 "${PROBLEM[@]}"
sweep s000-stochastic --grid partition=iid,shards:1 --grid algorithm=sync_sgd,sync_sgd_avg \
  --grid lr-schedule=const,inv:100 --workers 4 --batch 64 --steps 20000 --eval-every 500 \
  "${PROBLEM[@]}"
echo "Part 1: full-shard gradients, constant step"
echo
"$PY" "$ROOT/experiments/l1_optimum.py" --figure "$FIGS/s000_l1_prox.png" \
  --title "L1-logistic, 4 workers, full-shard gradients, 2000 rounds" \
  "$RUNS/s000-optimum" "$RUNS/s000-fullbatch"
"$PY" "$ROOT/experiments/shrink_png.py" "$FIGS/s000_l1_prox.png"
echo
echo "Part 2: batch 64, constant vs decaying step, 20000 rounds"
echo
"$PY" "$ROOT/experiments/l1_optimum.py" --figure "$FIGS/s000_l1_schedule.png" --only lr-schedule=inv \
  --title "L1-logistic, 4 workers, batch 64, eta_t = 2/(1+t/100), 20000 rounds" \
  "$RUNS/s000-optimum" "$RUNS/s000-stochastic"
"$PY" "$ROOT/experiments/shrink_png.py" "$FIGS/s000_l1_schedule.png"
# No chorus plot here: the runs' test loss is the same to 0.01 for every point
# (the data term barely moves between w* and the biased points); what differs
# is the model's coordinates, which l1_optimum.py draws.
