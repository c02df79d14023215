#!/usr/bin/env bash
# Seed 002, claim 2: RI-SGD (local SGD where each worker also holds copies of
# other workers' shards, redundancy mu) reaches local SGD's accuracy in fewer
# rounds under label skew, and survives a crash: the survivors still hold the
# crashed worker's samples.
# Fashion-MNIST, mlp:64, 4 workers, Dirichlet(0.1), tau 8, batch 64, lr 0.05,
# 4 epochs (117 rounds); redundancy mu = 1/3 (one other shard per worker);
# the crash runs lose worker 1 at round 58. Rounds to 0.80 test accuracy from
# metrics.jsonl (evaluated every 2 rounds).
source "$(dirname "$0")/lib.sh"
BASE=(--dataset fashion-mnist --model mlp:64 --workers 4 --partition dirichlet:0.1 --tau 8
      --lr 0.05 --epochs 4 --eval-every 2)
sweep s002-ri --grid algorithm=local_sgd "${BASE[@]}"
sweep s002-ri-mu --grid algorithm=ri_sgd --grid redundancy=0.3334 "${BASE[@]}"
sweep s002-ri-crash --grid algorithm=local_sgd "${BASE[@]}" --crash 1:58
sweep s002-ri-mu-crash --grid algorithm=ri_sgd --grid redundancy=0.3334 "${BASE[@]}" --crash 1:58
plot "$RUNS/s002-ri" "$RUNS/s002-ri-mu" "$RUNS/s002-ri-crash" "$RUNS/s002-ri-mu-crash" \
  --x steps --y test_acc --title "local SGD vs RI-SGD (mu 1/3), Dirichlet(0.1); crash of worker 1 at round 58" \
  --out "$FIGS/s002_ri_sgd.png"
table s002-ri s002-ri-mu s002-ri-crash s002-ri-mu-crash --target 0.80 \
  --col "rounds to 0.80=ttt_step:%.0f" --col "rounds=steps:%.0f" --col "test acc=test_acc:%.4f" \
  --col "test loss=test_loss:%.4f" --col "workers lost=workers_lost:%.0f" --col "coverage=coverage:%.2f"
