// The replica engine: the actor behind every protocol in which each worker i
// trains its own model x_i and is pulled toward a shared point (leader SGD
// toward the best worker, EASGD toward a centre variable).
//
// A worker knows no algorithm, so the engine holds every x_i and asks worker
// i for the gradient at x_i; the rule (a value, replica_rule) says what
// happens to x_i with that gradient and at the communication points, and the
// engine does the rest: the request loop (one barrier per round, or none),
// the proximal step, budget, evaluations, metrics and lost workers.
//
// Bytes: the engine stands in for an agent beside each worker, so handing
// x_i to worker i and its gradient back is local traffic and is not counted;
// the rule counts what its algorithm communicates (tracker.add_bytes).
#pragma once

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <caf/actor_system.hpp>

#include "engines/protocol.hpp"

namespace chorus {

struct replica_state;

/// What a replica protocol decides; the engine does the messaging.
class replica_rule {
public:
  virtual ~replica_rule() = default;
  /// Once, when the run starts (every x_i is ctx.initial).
  virtual void start(replica_state&) {}
  /// out <- worker i's new x_i from st.x[i] and its gradient g (taken at
  /// st.x[i]); the engine then applies the proximal step for plan.reg.
  virtual void local_step(replica_state& st, size_t i, const gradient& g, view out) = 0;
  /// The communication point. Synchronous: after every round (i is -1).
  /// Asynchronous: after each applied update, of worker i.
  virtual void communicate(replica_state& st, int i) = 0;
  /// Worker i was dropped (it stays out of every later choice).
  virtual void lost(replica_state&, size_t) {}
  /// The model the protocol outputs: evaluated, and the final weights.
  virtual buffer output(const replica_state& st) const = 0;
  /// Protocol values for every metrics row and the summary.
  virtual std::map<std::string, double> metrics(const replica_state& st) const = 0;
};

/// The engine's state: the replicas, and what a rule may read or use.
struct replica_state : protocol_state {
  static inline const char* name = "chorus.replicas";
  std::shared_ptr<replica_rule> rule;
  bool async = false;                    ///< no barrier: each worker loops on its own
  std::vector<buffer> x;                 ///< x_i, one immutable snapshot per worker
  std::vector<int64_t> updates;          ///< updates applied to x_i
  std::vector<std::deque<double>> losses;  ///< worker i's last `window` mini-batch losses
  size_t window = 1;
  std::function<void(std::string)> log;  ///< a line to the run's log (set by the engine)

  // Engine bookkeeping.
  std::vector<bool> in_flight;  ///< per worker: a gradient request is out
  size_t pending = 0;           ///< synchronous: replies still due this round
  bool stopping = false;        ///< budget spent or stop asked: no new requests
  bool eval_in_flight = false;

  /// The step size of the update being applied: eta_t at t = the engine's
  /// step (sync: the round, from 0; async: the updates applied before it).
  float step_lr() const { return ctx.plan.lr_at(tracker.step()); }
  /// Mean of each worker's last `window` losses (+infinity before its first).
  std::vector<double> recent_losses() const;
  /// Mean over alive workers of ||x_i - y||^2 (how far they are from y).
  double mean_distance_to(cview y) const;
};

/// Spawns the engine with a rule. `async`: no barrier, each worker loops
/// request -> update -> request on its own. `window`: how many recent losses
/// per worker recent_losses() averages. Throws std::invalid_argument
/// without workers.
protocol_actor spawn_replica_protocol(caf::actor_system& sys, run_context ctx,
                                      std::shared_ptr<replica_rule> rule, bool async,
                                      size_t window);

} // namespace chorus
