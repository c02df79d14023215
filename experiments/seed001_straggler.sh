#!/usr/bin/env bash
# Seed 001, claim 1: with a straggler, asynchronous SGD reaches a target
# accuracy in less wall time than synchronous SGD (which waits for the slow
# worker every round).
# Fashion-MNIST, mlp:64, 4 workers, worker 3 computes 4x slower (--slow 3:4),
# lr 0.1, batch 64, 3 epochs; both evaluate every 6400 samples (sync: 25
# rounds of 4 gradients, async: 100 gradients); time to test accuracy 0.84 is
# read from metrics.jsonl. Wall times depend on the machine's load: compare
# within one run of the script.
source "$(dirname "$0")/lib.sh"
BASE=(--dataset fashion-mnist --model mlp:64 --workers 4 --slow 3:4 --lr 0.1 --epochs 3)
sweep s001-straggler-sync --grid algorithm=sync_sgd --eval-every 25 "${BASE[@]}"
sweep s001-straggler-async --grid algorithm=async_sgd --grid staleness-bound=-1,4 \
  --eval-every 100 "${BASE[@]}"
plot "$RUNS/s001-straggler-sync" "$RUNS/s001-straggler-async" --x wall_s --y test_acc \
  --title "straggler (worker 3 4x slower): test accuracy vs wall time" \
  --out "$FIGS/s001_straggler.png"
table s001-straggler-sync s001-straggler-async --target 0.84 \
  --col "time to 0.84 (s)=ttt_wall_s:%.2f" --col "wall s (3 epochs)=wall_s:%.2f" \
  --col "test acc=test_acc:%.4f" --col "samples/s=samples_per_s/1e3:%.0fk" \
  --col "staleness mean=staleness_mean:%.2f" --col "dropped=dropped_stale:%.0f"
