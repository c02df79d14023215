// Protocols over per-worker replicas: leader SGD (LSGD, with groups) and its
// baseline, elastic averaging SGD (EASGD).
//
// In both, every worker i trains its own model x_i and is pulled toward a
// shared point: the leader's model (LSGD) or a centre variable (EASGD). A
// worker knows no algorithm, so the protocol actor holds every x_i and asks
// worker i for the gradient at x_i; the rule (a value, replica_rule) says
// what happens to x_i with that gradient and at the communication points,
// and the engine (replicas.cpp) does the rest: the request loop (one barrier
// per round, or none), budget, evaluations, metrics and lost workers.
//
// Bytes: the protocol actor stands in for an agent beside each worker, so
// handing x_i to worker i and its gradient back is local traffic and is not
// counted; bytes_sent counts what the algorithm itself communicates (leader
// broadcasts, elastic exchanges with the centre).
//
// Not here: compression of those exchanges, or a remote centre actor.
#pragma once

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <caf/actor_system.hpp>

#include "engines/protocol.hpp"

namespace chorus {

// -- entry points ---------------------------------------------------------------

/// leader_sgd: x_i <- Prox(x_i - eta (g_i + lambda (x_i - x_leader))), the
/// leader re-elected by lowest recent loss (leader_sgd.cpp). Options: lambda,
/// tau, groups, lambda_global, async. Throws std::invalid_argument for a bad
/// option value before any actor exists.
protocol_actor spawn_leader_sgd(caf::actor_system& sys, run_context ctx);

/// easgd: local SGD steps, and every tau steps the elastic exchange
/// x_i <- x_i - alpha (x_i - x~), x~ <- x~ + alpha sum_i (x_i - x~)
/// (easgd.cpp). Options: alpha, tau, async. Throws std::invalid_argument
/// for a bad option value before any actor exists.
protocol_actor spawn_easgd(caf::actor_system& sys, run_context ctx);

// -- the pure pieces (tested on their own) ---------------------------------------

/// The rank of the alive worker with the lowest recent loss (NaN counts as
/// +infinity); ties go to the lowest rank; -1 when no worker is alive.
int select_leader(const std::vector<double>& recent_losses, const std::vector<bool>& alive);

/// The group of worker `rank` when `workers` workers form `groups` groups of
/// contiguous ranks: rank * groups / workers. Group sizes differ by at most
/// one and none is empty when 1 <= groups <= workers; neighbours in rank
/// (often neighbours in a machine) share a group.
int group_of(int rank, int workers, int groups);

/// Each group's leader: select_leader restricted to the group's members
/// (-1 for a group with no alive member).
std::vector<int> select_group_leaders(const std::vector<double>& recent_losses,
                                      const std::vector<bool>& alive, int groups);

/// out <- x - eta (g + sum_k lambda_k (x - y_k)), in one pass over memory:
/// an SGD step pulled toward the points y_k. `out` must not overlap the inputs.
void pulled_sgd_step(backend& be, float eta, cview g, cview x,
                     const std::vector<std::pair<float, cview>>& pulls, view out);

/// Multi-leader step:
///   out <- x - eta (g + lambda_local (x - x_local_leader)
///                     + lambda_global (x - x_global_leader)).
/// `out` must not overlap the inputs.
void multi_leader_step(backend& be, float eta, float lambda_local, float lambda_global, cview g,
                       cview x_local_leader, cview x_global_leader, cview x, view out);

/// out <- x - alpha (x - target): one side of an elastic exchange (a worker
/// moving toward the centre, or the asynchronous centre toward one worker).
void elastic_move(backend& be, float alpha, cview x, cview target, view out);

/// out <- centre + alpha sum_k (xs_k - centre): the synchronous centre update.
void elastic_center(backend& be, float alpha, cview centre, const std::vector<cview>& xs,
                    view out);

// -- the engine both protocols share (replicas.cpp) ------------------------------

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

  /// Mean of each worker's last `window` losses (+infinity before its first).
  std::vector<double> recent_losses() const;
  /// Mean over alive workers of ||x_i - y||^2 (how far they are from y).
  double mean_distance_to(cview y) const;
};

/// Spawns the engine with a rule. `window`: how many recent losses per
/// worker recent_losses() averages.
protocol_actor spawn_replica_protocol(caf::actor_system& sys, run_context ctx,
                                      std::shared_ptr<replica_rule> rule, bool async,
                                      size_t window);

/// options[key] as a bool ("0"/"1", default 0); throws std::invalid_argument otherwise.
bool option_flag(const run_plan& plan, const std::string& key);

/// options[key] as a whole number >= `lowest` (or `fallback` when absent);
/// throws std::invalid_argument naming the key otherwise.
int64_t option_count(const run_plan& plan, const std::string& key, int64_t fallback,
                     int64_t lowest);

/// options[key] as a number >= 0 (or `fallback` when absent); throws
/// std::invalid_argument naming the key otherwise.
float option_weight(const run_plan& plan, const std::string& key, double fallback);

} // namespace chorus
