#!/usr/bin/env bash
# Seed 003: leader SGD (LSGD: every worker pulled toward the best worker,
# re-elected every tau steps) against EASGD (elastic pull toward a centre
# variable every tau steps) at the SAME communication period tau and the same
# budget (3 epochs: every protocol sees the same samples), plus multi-leader
# LSGD (2 groups of 4) and the asynchronous forms; sync SGD as the reference.
# Fashion-MNIST, mlp:64, 8 workers, iid shards, batch 64, lr 0.05, lambda 0.1
# (LSGD's pull, every step), alpha 0.1 (EASGD's, every tau steps),
# lambda_global 0.05. Evaluated every quarter epoch.
source "$(dirname "$0")/lib.sh"
BASE=(--dataset fashion-mnist --model mlp:64 --workers 8 --lr 0.05 --epochs 3)
sweep s003-sync --grid algorithm=leader_sgd,easgd --grid tau=4,16 "${BASE[@]}" --eval-every 29
sweep s003-multi --grid algorithm=leader_sgd --grid groups=2 --grid tau=4,16 "${BASE[@]}" \
  --eval-every 29
sweep s003-async --grid algorithm=leader_sgd,easgd --grid tau=4,16 --async "${BASE[@]}" \
  --eval-every 234
sweep s003-reference --grid algorithm=sync_sgd "${BASE[@]}" --eval-every 29
S=$RUNS/s003-sync
plot "$S/algorithm=leader_sgd,tau=16" "$S/algorithm=easgd,tau=16" \
  "$RUNS/s003-multi/algorithm=leader_sgd,groups=2,tau=16" \
  "$RUNS/s003-async/algorithm=leader_sgd,tau=16" "$RUNS/s003-async/algorithm=easgd,tau=16" \
  "$RUNS/s003-reference" --x epochs --y test_acc \
  --title "LSGD vs EASGD at tau = 16, 8 workers: test accuracy" --out "$FIGS/s003_leader_easgd.png"
table s003-sync s003-multi s003-async s003-reference --col "test acc=test_acc:%.4f" \
  --col "test loss=test_loss:%.4f" --col "MB sent=bytes_sent/1e6:%.0f" \
  --col "leader changes=leader_changes:%.0f" --col "wall s=wall_s:%.2f"
