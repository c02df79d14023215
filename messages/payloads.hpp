// The nouns of Chorus's messages: plain structs with public fields, each with
// its inspect() beside it. Every payload says who sent it (`sender`, a worker
// rank or -1 for a protocol actor) and for which step, because staleness and
// Byzantine attribution need both. Float payloads are `buffer`s: shared and
// immutable, never copied per hop inside a process.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <caf/actor_control_block.hpp>
#include <caf/meta/type_name.hpp>

#include "messages/buffer.hpp"
#include "messages/nccl_id.hpp"
#include "messages/regularizer.hpp"

namespace chorus {

/// Model parameters at some step.
struct weights {
  int32_t sender = -1;
  int64_t step = 0;
  buffer values;
  /// True: `values` is a compressed payload of the change since the last
  /// broadcast (--compress-down), which the decoding stage beside the
  /// receiver adds to its replica before the worker sees full weights.
  /// False: `values` are the d floats themselves.
  bool encoded = false;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, weights& x) {
  return f(caf::meta::type_name("weights"), x.sender, x.step, x.values, x.encoded);
}

/// A stochastic gradient computed at the weights of `step`.
struct gradient {
  int32_t sender = -1;
  int64_t step = 0;
  buffer values;
  float loss = 0;       ///< mini-batch loss at those weights
  int32_t samples = 0;  ///< mini-batch size
  /// True: `values` is a compressed payload (engines/compressors.hpp), set
  /// by the sender's encoding link stage; the receiver decodes it before any
  /// rule sees it. False: `values` are the d floats themselves.
  bool encoded = false;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, gradient& x) {
  return f(caf::meta::type_name("gradient"), x.sender, x.step, x.values, x.loss, x.samples,
           x.encoded);
}

/// How to run local steps: k proximal SGD steps with step size lr, or with
/// lrs[j] at step j when lrs is not empty (a step-size schedule, evaluated
/// by the protocol: the worker knows none).
struct local_plan {
  int32_t steps = 1;
  float lr = 0.1f;
  regularizer reg;
  std::vector<float> lrs;  ///< empty, or one step size per local step
  /// Heavy-ball momentum beta in [0, 1) over the local steps (local_sgd's
  /// --local-momentum): m <- beta m + g, x <- Prox(x - lr m), with m kept on
  /// the worker across requests. 0: plain proximal steps, no buffer.
  float momentum = 0;

  float lr_of(int32_t step) const { return lrs.empty() ? lr : lrs[static_cast<size_t>(step)]; }
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, local_plan& x) {
  return f(caf::meta::type_name("local_plan"), x.steps, x.lr, x.reg, x.lrs,
           x.momentum);
}

/// The weights a worker reached after local steps.
struct local_result {
  int32_t sender = -1;
  int64_t step = 0;
  buffer values;
  float loss = 0;       ///< mean mini-batch loss over the local steps
  int32_t samples = 0;  ///< samples processed by the local steps
  /// True: `values` is a compressed payload of the model CHANGE x - w over
  /// the local steps (w: the weights the steps started from), set by the
  /// sender's encoding link stage; the receiver decodes it and adds w.
  /// False: `values` are the new weights themselves.
  bool encoded = false;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, local_result& x) {
  return f(caf::meta::type_name("local_result"), x.sender, x.step, x.values, x.loss,
           x.samples, x.encoded);
}

/// Loss and accuracy of some weights on a worker's shard.
struct evaluation {
  int32_t sender = -1;
  int64_t step = 0;
  double loss = 0;
  double accuracy = 0;
  int64_t samples = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, evaluation& x) {
  return f(caf::meta::type_name("evaluation"), x.sender, x.step, x.loss, x.accuracy,
           x.samples);
}

/// One row of a run's metrics (one per evaluation). Fields a protocol does
/// not have stay NaN; protocol-specific values go in `extra`.
struct metrics_row {
  int64_t step = 0;
  double epoch = 0;
  double wall_s = 0;
  double train_loss = 0;
  double test_loss = 0;
  double test_acc = 0;
  int64_t bytes_sent = 0;
  std::map<std::string, double> extra;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, metrics_row& x) {
  return f(caf::meta::type_name("metrics_row"), x.step, x.epoch, x.wall_s, x.train_loss,
           x.test_loss, x.test_acc, x.bytes_sent, x.extra);
}

/// A decentralized node's state at a round: its model x and, for gradient
/// tracking, its tracking variable y (empty otherwise).
struct peer_state {
  int32_t sender = -1;
  int64_t step = 0;  ///< the round
  buffer x;
  buffer y;
  double loss = 0;      ///< mean mini-batch loss of the sender's recent steps
  int64_t samples = 0;  ///< samples the sender processed so far
  /// Reports: in-neighbour models the sender's robust mix set aside so far
  /// (non-finite or malformed), and those it clipped or down-weighted.
  int64_t rejected = 0;
  int64_t clipped = 0;
  /// Messages of allreduce_sgd: the mini-batch size behind the gradient in
  /// x (the mean weights by it); 0 elsewhere.
  int32_t batch = 0;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, peer_state& x) {
  return f(caf::meta::type_name("peer_state"), x.sender, x.step, x.x, x.y, x.loss, x.samples,
           x.rejected, x.clipped, x.batch);
}

/// What a protocol reports when its run ends.
struct run_summary {
  std::string algorithm;
  int64_t steps = 0;
  double epochs = 0;
  double wall_s = 0;        ///< from the first request to the end
  double eval_s = 0;        ///< part of wall_s spent evaluating
  int64_t samples = 0;      ///< training samples processed
  int64_t bytes_sent = 0;   ///< payload bytes sent by every actor
  double train_loss = 0;    ///< mean mini-batch loss since the last evaluation
  double test_loss = 0;
  double test_acc = 0;
  double time_to_target_s = -1;  ///< -1: no target, or never reached
  bool reached_target = false;
  int32_t workers_lost = 0;
  std::string stop_reason;  ///< "budget", "target", "stopped"
  buffer final_weights;
  std::map<std::string, double> extra;  ///< protocol-specific totals (staleness, skipped uploads, ...)
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, run_summary& x) {
  return f(caf::meta::type_name("run_summary"), x.algorithm, x.steps, x.epochs, x.wall_s,
           x.eval_s, x.samples, x.bytes_sent, x.train_loss, x.test_loss, x.test_acc,
           x.time_to_target_s, x.reached_target, x.workers_lost, x.stop_reason,
           x.final_weights, x.extra);
}

/// One rank's share of a weighted all-reduce over an NCCL group: the rank
/// contributes `weight * mean(parts)` (zeros when it has no parts) and gets
/// back the mean over ranks of the contributions. With weight_r = R k_r / K
/// (R ranks, k_r of K buffers at rank r) that is the plain mean of all K
/// buffers, however unevenly they sit on the GPUs.
struct reduce_share {
  int32_t sender = -1;  ///< -1: sent by the group's front
  int64_t step = 0;     ///< the group's collective number
  std::vector<buffer> parts;
  float weight = 1;
  int64_t size = 0;  ///< floats per buffer (the length when parts is empty)
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, reduce_share& x) {
  return f(caf::meta::type_name("reduce_share"), x.sender, x.step, x.parts, x.weight, x.size);
}

/// Coordinator -> node: host these workers of this run. `args` are the
/// run's options as `chorus train` flags (the node parses them as the
/// coordinator did, loads the data itself and builds the same seeded
/// partition); `ranks` are the workers it hosts.
struct node_job {
  std::vector<std::string> args;
  std::vector<int32_t> ranks;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, node_job& x) {
  return f(caf::meta::type_name("node_job"), x.args, x.ranks);
}

/// Node -> coordinator: the workers it spawned for a node_job (in the
/// job's rank order) and the fingerprint of the data it loaded. With
/// --allreduce nccl also one NCCL rank per worker (same order) and, from
/// the node that hosts rank 0, the communicator's unique id
/// (actors/nccl_nodes.hpp).
struct hosted_workers {
  std::string node;         ///< "host:pid" of the node process
  std::string fingerprint;  ///< data fingerprint (data/dataset.hpp)
  std::vector<caf::strong_actor_ptr> workers;
  std::vector<caf::strong_actor_ptr> nccl_ranks;  ///< empty without --allreduce nccl
  std::vector<nccl_unique_id> nccl_id;            ///< one id from rank 0's node, else none
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, hosted_workers& x) {
  return f(caf::meta::type_name("hosted_workers"), x.node, x.fingerprint, x.workers, x.nccl_ranks,
           x.nccl_id);
}

/// Node -> coordinator, in the handshake: the GPUs this node gives its
/// workers (its --devices; empty: it takes the coordinator's list).
struct node_devices {
  std::vector<int32_t> devices;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, node_devices& x) {
  return f(caf::meta::type_name("node_devices"), x.devices);
}

/// Replica engine -> the agent beside worker i (engines/replicas.hpp), at a
/// communication point: its new x_i and/or the points its local steps pull
/// toward from now on (leader SGD: the leaders' models).
struct replica_sync {
  int64_t step = 0;           ///< updates of x_i the engine has counted
  buffer x;                   ///< the new x_i; empty: keep its own
  bool new_pulls = false;     ///< pulls replaces the agent's
  std::vector<buffer> pulls;
};

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, replica_sync& x) {
  return f(caf::meta::type_name("replica_sync"), x.step, x.x, x.new_pulls, x.pulls);
}

} // namespace chorus
