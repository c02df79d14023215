// The synchronous round server: the actor behind every protocol that moves
// in lock-step rounds (sync SGD in both forms, and later local SGD / FedAvg).
//
// Each round it sends the current weights to every live worker, waits for all
// replies (the barrier), and lets a `round_rule` turn them into new weights.
// Around the rounds it does what every run needs: evaluations on a schedule,
// metrics to the monitor, the target-accuracy stop, byte accounting, and
// survival when a worker dies (it is noticed by a down message or a timeout,
// logged, and the round goes on with the survivors).
//
// The server knows the worker's interface, not the algorithm: which verb a
// round uses and how replies combine is the rule's business.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <caf/actor_system.hpp>

#include "actors/interfaces.hpp"
#include "gpu/assert.hpp"
#include "gpu/backend.hpp"

namespace chorus {

/// What a run is asked to do; protocol-independent.
struct run_plan {
  std::string algorithm;
  int64_t steps = 100;       ///< rounds (sync) or applied updates (async)
  int64_t eval_every = 0;    ///< evaluate every this many steps; 0: only at the end
  double target_acc = -1;    ///< stop at the first evaluation reaching it; <0: none
  float lr = 0.1f;           ///< step size eta
  regularizer reg;           ///< r(w), applied by a proximal step
  int64_t train_size = 1;    ///< training samples in total (for epochs)
  std::chrono::milliseconds timeout{60000};  ///< longest wait for one reply
  std::map<std::string, std::string> options;  ///< protocol-specific (--tau, ...)
};

/// A worker's reply to one round, whatever verb the round used.
struct round_reply {
  int32_t sender = -1;
  buffer values;        ///< a gradient or new weights
  double loss = 0;      ///< the worker's mini-batch loss
  int32_t samples = 0;  ///< samples it processed
};

/// Lets a rule ask one worker with either worker verb; the server wires the
/// reply or the error back into the round.
class round_asker {
public:
  virtual ~round_asker() = default;
  /// Ask worker `i` for a gradient at `w`.
  virtual void gradient(size_t i, const weights& w) = 0;
  /// Ask worker `i` for `plan.steps` local steps from `w`.
  virtual void local(size_t i, const weights& w, const local_plan& plan) = 0;
};

/// A synchronous protocol's update, as a value.
struct round_rule {
  /// Sends this round's request to worker i.
  std::function<void(round_asker&, size_t i, const weights& w, const run_plan&)> ask;
  /// New weights from the current ones and the replies (in rank order).
  std::function<buffer(backend&, const buffer& w, const std::vector<round_reply>&,
                       const run_plan&)>
    combine;
};

/// Everything a protocol actor is wired to.
struct run_context {
  std::vector<worker_actor> workers;
  worker_actor evaluator;  ///< a worker holding the test set
  monitor_actor monitor;
  run_plan plan;
  buffer initial;  ///< w_0
};

/// Spawns the round server for `rule`.
protocol_actor spawn_round_server(caf::actor_system& sys, run_context ctx, round_rule rule);

} // namespace chorus
