// The replica engine: the actor behind every protocol in which each worker i
// trains its own model x_i and is pulled toward a shared point (leader SGD
// toward the best worker, EASGD toward a centre variable).
//
// A worker knows no algorithm, so someone holds x_i and asks worker i for the
// gradient at x_i; the rule (a value, replica_rule) says what happens to x_i
// with that gradient and at the communication points, and the engine does
// the rest: the request loop (one barrier per round, or none), the proximal
// step, budget, evaluations, metrics and lost workers.
//
// Who holds x_i. In one process the engine does, and hands x_i to worker i
// and takes its gradient back (a buffer handle each way). When the workers
// live in other processes (run_context::beside), an AGENT spawned beside
// each worker, in its process, holds x_i and takes the local steps against
// its own worker with the rule's local_step (the same pure function): each
// step the engine sends it only the step size and gets back the mini-batch's
// loss and size. Models cross the process boundary only at communication
// points (the replicas the rule reads are fetched, the ones it changes and
// the new pull points are pushed) and when the engine evaluates (every live
// x_i, for output() and the metrics). Synchronous runs take the same steps in
// the same order either way, so the result is the same bit for bit.
//
// Bytes: the rule counts what its algorithm communicates (tracker.add_bytes);
// handing x_i to worker i and its gradient back is the agent's local traffic
// and is not counted there. What the engine and the agents send each other
// across processes is added to the node's link counters (beside_site::link),
// the per-node bytes of the summary.
#pragma once

#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <caf/actor_system.hpp>

#include "actors/pending_calls.hpp"
#include "engines/protocol.hpp"

namespace chorus {

struct replica_state;

/// What a replica protocol decides; the engine does the messaging.
class replica_rule {
public:
  virtual ~replica_rule() = default;
  /// Once, when the run starts (every x_i is ctx.initial).
  virtual void start(replica_state&) {}
  /// The points worker i's local steps pull toward now (leader SGD: the
  /// leaders' x; EASGD: none). An agent keeps the last ones it was sent.
  virtual std::vector<buffer> pulls(const replica_state&, size_t) const { return {}; }
  /// out <- the new x_i from x (x_i), the gradient g taken at x, the step
  /// size eta and worker i's pulls; the proximal step for plan.reg follows.
  /// Pure: the engine and an agent beside the worker call it alike.
  virtual void local_step(backend& be, float eta, cview x, cview g, const std::vector<buffer>& pulls,
                          view out) const = 0;
  /// The replicas the next communicate(st, i) reads (agents hold them: the
  /// engine fetches these first). Default: every live one.
  virtual std::vector<size_t> reads(const replica_state& st, int i) const;
  /// The communication point. Synchronous: after every round (i is -1).
  /// Asynchronous: after each applied update, of worker i. It may replace
  /// st.x[j] of what it reads (an agent then gets the new x_j).
  virtual void communicate(replica_state& st, int i) = 0;
  /// Worker i was dropped (it stays out of every later choice); may read
  /// every live x_j.
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

  /// Every live worker's index (what reads() returns by default).
  std::vector<size_t> live() const;

  // Engine bookkeeping.
  std::vector<bool> in_flight;  ///< per worker: a gradient request is out
  size_t pending = 0;           ///< synchronous: replies still due this round
  bool stopping = false;        ///< budget spent or stop asked: no new requests
  bool eval_in_flight = false;

  // Agents (workers in other processes; empty: the engine holds every x_i).
  std::vector<caf::actor> agents;
  std::vector<bool> fresh;          ///< x[i] is agent i's current x_i
  std::vector<buffer> told_x;       ///< the x_i agent i holds as far as the engine knows
  std::vector<std::vector<buffer>> told_pulls;  ///< the pulls agent i was last sent
  std::vector<std::shared_ptr<link_counters>> links;  ///< per agent: its node's bytes (or null)
  bool rule_busy = false;           ///< a rule call is waiting for fetched replicas
  std::deque<std::function<void()>> rule_waiting;  ///< rule calls queued behind it
  bool finishing = false;           ///< the final fetch for the summary is out
  /// Per agent: its fetches still out (by id), each to be counted once.
  std::map<size_t, pending_calls<>> fetches;

  /// The step size of the update being applied: eta_t at t = the engine's
  /// step (sync: the round, from 0; async: the updates applied before it).
  float step_lr() const { return ctx.plan.lr_at(tracker.step()); }
  /// Mean of each worker's last `window` losses (+infinity before its first).
  std::vector<double> recent_losses() const;
  /// Mean over alive workers of ||x_i - y||^2 (how far they are from y).
  double mean_distance_to(cview y) const;
};

/// Spawns, here, the agent that holds x_i beside worker `rank`
/// (ctx.workers[rank], in this process) for the replica engine `engine` in
/// another process: what a node spawns for leader_sgd and easgd (the
/// registry's spawn_agent). It answers (local_atom, local_plan{1, lr, reg})
/// with the step's loss and samples (values empty), (fetch_atom, int64_t)
/// with its x_i, and takes (apply_atom, replica_sync).
caf::actor spawn_replica_agent(caf::actor_system& sys, run_context ctx,
                               std::shared_ptr<const replica_rule> rule, int32_t rank,
                               const caf::actor& engine);

/// Spawns the engine with a rule. `async`: no barrier, each worker loops
/// request -> update -> request on its own. `window`: how many recent losses
/// per worker recent_losses() averages. Throws std::invalid_argument
/// without workers.
protocol_actor spawn_replica_protocol(caf::actor_system& sys, run_context ctx,
                                      std::shared_ptr<replica_rule> rule, bool async,
                                      size_t window);

} // namespace chorus
