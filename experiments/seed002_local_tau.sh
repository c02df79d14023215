#!/usr/bin/env bash
# Seed 002, claim 1: local SGD's residual error grows with the number of
# local steps tau under non-IID data, and hardly at all on IID shards.
# Fashion-MNIST, mlp:64, 4 workers, batch 64, lr 0.05, 3 epochs (the same
# samples for every tau: tau 64 is 11 rounds), iid vs Dirichlet(0.1); evaluated
# every round. train loss is the workers' mean mini-batch loss on their own
# shards, which falls with tau under skew (each fits its own classes): the
# residual error shows in the test loss.
source "$(dirname "$0")/lib.sh"
sweep s002-local-tau --grid partition=iid,dirichlet:0.1 --grid tau=1,4,16,64 \
  --algorithm local_sgd --dataset fashion-mnist --model mlp:64 --workers 4 --lr 0.05 --epochs 3 \
  --eval-every 1
S=$RUNS/s002-local-tau
plot "$S/partition=dirichlet_0.1,tau=1" "$S/partition=dirichlet_0.1,tau=4" \
  "$S/partition=dirichlet_0.1,tau=16" "$S/partition=dirichlet_0.1,tau=64" "$S/partition=iid,tau=64" \
  --x epochs --y test_loss --title "local SGD, 4 workers, Dirichlet(0.1) (and iid, tau 64): test loss" \
  --out "$FIGS/s002_local_tau.png"
table s002-local-tau --col "rounds=steps:%.0f" --col "MB sent=bytes_sent/1e6:%.0f" \
  --col "test acc=test_acc:%.4f" --col "test loss=test_loss:%.4f" --col "train loss=train_loss:%.4f"
