#!/usr/bin/env bash
# Seed 002, claim 3 (the seed's third extension): heterogeneous mini-batch
# sizes per worker (--batch 32,64,128,256) for local SGD and RI-SGD, with
# RI-SGD's stated mechanism measured: the gradient diversity of a round's
# model changes u_i = x_i - w, Delta = sum_i ||u_i||^2 / ||sum_i u_i||^2
# (Yin et al. 2018; 1/m when the workers agree, 1 when orthogonal), the
# `grad_diversity` column of metrics.jsonl.
# Fashion-MNIST, mlp:64, 4 workers, Dirichlet(0.1), tau 8, lr 0.05, 4 epochs
# (the same samples: with batches 32,64,128,256 a round takes 3840 samples
# instead of 2048, so there are fewer rounds); RI-SGD redundancy mu = 1/3.
source "$(dirname "$0")/lib.sh"
BASE=(--dataset fashion-mnist --model mlp:64 --workers 4 --partition dirichlet:0.1 --tau 8
      --lr 0.05 --epochs 4 --eval-every 2)
sweep s002-batch-local --grid algorithm=local_sgd --grid 'batch=64;32,64,128,256' "${BASE[@]}"
sweep s002-batch-ri --grid algorithm=ri_sgd --grid 'batch=64;32,64,128,256' --redundancy 0.3334 \
  "${BASE[@]}"
plot "$RUNS/s002-batch-local" "$RUNS/s002-batch-ri" --x epochs --y grad_diversity \
  --title "gradient diversity of the model changes, Dirichlet(0.1), 4 workers" \
  --out "$FIGS/s002_hetero_batch.png"
table s002-batch-local s002-batch-ri --col "rounds=steps:%.0f" --col "test acc=test_acc:%.4f" \
  --col "test loss=test_loss:%.4f" --col "grad diversity (mean over rows)=avg:grad_diversity:%.3f"
