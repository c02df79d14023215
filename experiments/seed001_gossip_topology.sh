#!/usr/bin/env bash
# Seed 001, claim 2: in gossip SGD (DSGD) the consensus distance
# mean_i ||x_i - x_bar||^2 follows the graph's spectral gap: ring (gap 0.051
# for n = 16) > one-peer exponential (time-varying, one message per node and
# round) > static exponential (gap 0.400) > complete (exact averaging).
# Fashion-MNIST, softmax, 16 workers, batch 32, lr 0.05, 2 epochs (234
# rounds), iid shards.
source "$(dirname "$0")/lib.sh"
sweep s001-gossip-topology --grid topology=ring,onepeer-exp,exp,complete \
  --algorithm gossip_sgd --dataset fashion-mnist --model softmax --workers 16 --batch 32 \
  --lr 0.05 --epochs 2 --eval-every 10
plot "$RUNS/s001-gossip-topology" --x steps --y consensus_distance \
  --title "gossip SGD, 16 nodes: consensus distance per round" \
  --out "$FIGS/s001_gossip_topology.png"
table s001-gossip-topology --col "consensus distance=consensus_distance:%.2g" \
  --col "MB sent=bytes_sent/1e6:%.0f" --col "test acc=test_acc:%.4f"
