#!/usr/bin/env bash
# Seed 001, claim 3: label skew hurts decentralized SGD (DSGD: each node is
# pulled toward its own classes) and gradient tracking (DIGing) corrects it.
# Fashion-MNIST, mlp:64, 8 workers on a ring, lr 0.05, 3 epochs; iid shards
# against Dirichlet(0.1) label skew. test acc is the averaged model's; worst
# worker is the lowest test accuracy of a single node's model.
source "$(dirname "$0")/lib.sh"
sweep s001-label-skew --grid partition=iid,dirichlet:0.1 \
  --grid algorithm=gossip_sgd,gradient_tracking --topology ring --dataset fashion-mnist \
  --model mlp:64 --workers 8 --lr 0.05 --epochs 3 --eval-every 20
plot "$RUNS/s001-label-skew" --x steps --y test_acc \
  --title "ring of 8, iid vs Dirichlet(0.1): averaged model test accuracy" \
  --out "$FIGS/s001_label_skew.png"
table s001-label-skew --col "test acc (x_bar)=test_acc:%.4f" \
  --col "worst worker acc=worst_worker_acc:%.4f" --col "consensus=consensus_distance:%.3g" \
  --col "MB sent=bytes_sent/1e6:%.0f"
