#!/usr/bin/env bash
# Seed 001, claim 4: local SGD (tau local steps between averages) and lazy
# SGD (LAG: a worker skips an upload while its gradient changed little) send
# fewer bytes than synchronous SGD for similar accuracy.
# Part 1 (the figure): Fashion-MNIST, mlp:64, 4 workers, iid shards, batch 64,
# lr 0.1, 3 epochs (the same samples for every protocol); lazy_sgd with
# threshold xi = 4 (at the default xi = 1 mini-batch noise fires the trigger
# almost every round; xi = 10 skips 88% and ends at 0.54 accuracy).
# Part 2: LAG's own setting, full-batch gradients (batch 2048 = each worker's
# whole shard of synthetic-logistic, 4 workers, lr 1, 300 rounds), xi = 1.
source "$(dirname "$0")/lib.sh"
BASE=(--dataset fashion-mnist --model mlp:64 --workers 4 --lr 0.1 --epochs 3)
sweep s001-comm-sync --grid algorithm=sync_sgd "${BASE[@]}" --eval-every 50
sweep s001-comm-lazy --grid algorithm=lazy_sgd --grid lazy-threshold=4 "${BASE[@]}" --eval-every 50
sweep s001-comm-local --grid algorithm=local_sgd --grid tau=4,16 "${BASE[@]}" --eval-every 4
plot "$RUNS/s001-comm-sync" "$RUNS/s001-comm-lazy" "$RUNS/s001-comm-local" --x bytes --y test_acc \
  --title "sync, lazy (LAG) and local SGD: test accuracy vs bytes sent" \
  --out "$FIGS/s001_communication.png"
COLS=(--col "uploads=uploads:%.0f"
      --col "uploads skipped=uploads_skipped:%.0f" --col "test acc=test_acc:%.4f"
      --col "train loss=train_loss:%.4f")
table s001-comm-sync s001-comm-lazy s001-comm-local --col "MB sent=bytes_sent/1e6:%.1f" "${COLS[@]}"
echo
echo "Full-batch (LAG's setting):"
echo
sweep s001-comm-fullbatch --grid algorithm=sync_sgd,lazy_sgd --dataset synthetic-logistic \
  --model logistic --workers 4 --batch 2048 --lr 1 --steps 300
table s001-comm-fullbatch --col "MB sent=bytes_sent/1e6:%.3f" "${COLS[@]}"
