// What every protocol actor has in common, so a protocol file holds only its
// message flow and update rule: the wiring (run_context), the run's
// bookkeeping (run_tracker), the pending run_atom promise, and helpers to
// log, evaluate, finish and fail. The helpers are templates over the actor's
// self pointer; its state must derive from protocol_state.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <caf/all.hpp>

#include "actors/interfaces.hpp"
#include "actors/link.hpp"
#include "actors/remote_worker.hpp"
#include "actors/run_tracker.hpp"
#include "data/dataset.hpp"
#include "engines/deadlines.hpp"
#include "gpu/backend.hpp"

namespace chorus {

/// Where the actor kept beside a worker in another process is asked for:
/// the node hosting the worker, and what the node needs to know besides the
/// rank (run_context::beside; tools/cluster.hpp makes these).
struct beside_site {
  node_actor node;     ///< the node process hosting the worker (null: none does)
  caf::actor job;      ///< names the run's job on that node (the job's owner)
  caf::actor monitor;  ///< where the spawned actor logs
  std::string where;   ///< the node, for messages ("node 1 (host:pid at ...)")
  /// The node's payload byte counters (the summary's per-node bytes), for
  /// what the protocol actor and the spawned actor send each other; may be null.
  std::shared_ptr<link_counters> link;
};

/// Everything a protocol actor is wired to.
struct run_context {
  std::vector<worker_actor> workers;
  worker_actor evaluator;  ///< a worker holding the test set
  monitor_actor monitor;
  run_plan plan;
  buffer initial;  ///< w_0
  std::vector<int64_t> shard_sizes;  ///< samples each worker holds (for weighted averaging)
  /// The sample indices each worker trains on, when the builder of the
  /// graph knows them (the runner does); null otherwise.
  std::shared_ptr<const partition> shards;
  /// The protocol actor's own backend ("eigen" or "cuda" on `device`): where
  /// it keeps w and combines replies. Replies in other memory are adopted.
  std::string backend = "eigen";
  int device = 0;
  /// The GPU each worker computes on (-1: the host), when the builder of
  /// the graph knows it; empty otherwise. Protocols that move data between
  /// GPUs themselves (sync_sgd with allreduce=nccl) place their ranks by it.
  std::vector<int> worker_devices;
  /// Set by the runner when the workers all-reduce among themselves where
  /// they are (--allreduce nccl with the workers on nodes: a stage beside
  /// each worker, actors/nccl_nodes.hpp): a protocol with allreduce=nccl
  /// takes the round's mean from it instead of forming a group here.
  reducer_actor reducer;
  /// Set by the runner when the workers live in other processes (--processes,
  /// --nodes): where to ask for the actor a decentralized protocol keeps
  /// beside worker `rank` (a gossip peer) in that worker's process. The
  /// protocol actor asks without blocking (spawn_all_beside below); the node
  /// rebuilds the protocol from the run's flags (spawn_algorithm_peer), so a
  /// peer and its worker share a process and peers talk node to node.
  /// Empty: the protocol spawns its peers here.
  std::function<beside_site(int32_t rank)> beside;
  /// Whether a decentralized protocol's peers put their model in every
  /// report to the protocol actor. In one process a report carries a buffer
  /// handle and costs nothing; a peer on a node sets this to false, keeps
  /// its last models, and the protocol actor fetches them only when it
  /// evaluates, so models do not cross to the coordinator every round.
  bool report_models = true;
  /// True when the builder of the graph already put each worker's uplink
  /// stages (the compression encoder) beside the worker, in the worker's
  /// process (workers on nodes): a protocol then installs only the
  /// receiving ends, so what crosses the network is the encoded form.
  bool uplinks_at_workers = false;
  /// The link model (--link): a decentralized protocol's peers put their
  /// messages on a link_queue of their own; centralized protocols get
  /// their workers already behind link stages (actors/link.hpp) and ignore
  /// it. Off by default.
  link_spec link;
  /// The run's --byzantine spec ("0,3:signflip"; empty: none) for protocols
  /// whose peers carry the attack out themselves: a decentralized protocol's
  /// Byzantine peer forges the models it sends its neighbours
  /// (engines/gossip.hpp). Protocols with a server ignore it: the runner
  /// wraps their workers in attack decorators instead (engines/byzantine.hpp).
  std::string byzantine;
  /// How many slices a round server splits an element-wise combine into
  /// (engines/combiners.hpp): 0 = auto (one per scheduler thread when the
  /// model is large enough to pay for the messages), 1 = never split, K = K
  /// slices whatever the size (tests use it to split tiny models).
  size_t combine_shards = 0;
};

/// Spawns a protocol actor running `fun(self, ctx, xs...)`: detached when its
/// backend is a GPU's (each combine or update ends in a stream
/// synchronization), so those waits never stall a scheduler thread and the
/// actors queued behind it.
template <class Fun, class... Ts>
protocol_actor spawn_protocol(caf::actor_system& sys, Fun fun, run_context ctx, Ts&&... xs) {
  if (ctx.backend == "cuda")
    return sys.spawn<caf::detached>(fun, std::move(ctx), std::forward<Ts>(xs)...);
  return sys.spawn(fun, std::move(ctx), std::forward<Ts>(xs)...);
}

/// The state every protocol actor starts from.
struct protocol_state {
  run_context ctx;
  run_tracker tracker;
  std::unique_ptr<backend> be;  ///< made by init from ctx.backend and ctx.device
  caf::typed_response_promise<run_summary> promise;
  std::vector<bool> alive;  ///< per worker: still taking part
  /// Per worker: when its pending reply is due (engines/deadlines.hpp);
  /// requests to workers go untimed and this stands for their timeout.
  reply_deadlines deadlines;
  caf::actor ticker;  ///< the deadlines' clock, spawned by watch_deadlines

  void init(run_context c) {
    ctx = std::move(c);
    be = make_backend(ctx.backend, ctx.device);
    ctx.initial = be->adopt(ctx.initial);
    tracker = run_tracker(ctx.plan);
    alive.assign(ctx.workers.size(), true);
    deadlines.resize(ctx.workers.size());
  }
  size_t live_workers() const {
    size_t n = 0;
    for (bool a : alive)
      n += a ? 1 : 0;
    return n;
  }
  /// Index of the worker with this address, or -1.
  int index_of(const caf::actor_addr& addr) const {
    for (size_t i = 0; i < ctx.workers.size(); ++i)
      if (ctx.workers[i].address() == addr)
        return static_cast<int>(i);
    return -1;
  }
};

/// Sends a line to the run's log.
template <class Self>
void log_line(Self self, std::string line) {
  self->send(self->state.ctx.monitor, log_atom_v, std::move(line));
}

/// Delivers the summary to the run_atom requester and ends the actor.
template <class Self>
void finish_run(Self self, const buffer& w, std::string reason) {
  auto& st = self->state;
  if (!st.tracker.running())
    return;
  // The final weights leave as host memory (they go to files and callers).
  st.promise.deliver(st.tracker.finish(w.to_host(), std::move(reason)));
  self->quit();
}

/// Delivers an error to the run_atom requester and ends the actor.
template <class Self>
void fail_run(Self self, const caf::error& err) {
  auto& st = self->state;
  if (!st.tracker.running())
    return;
  log_line(self, "run failed at step " + std::to_string(st.tracker.step()) + ": " + describe(err));
  st.tracker.finish({}, "failed");
  st.promise.deliver(err);
  self->quit(err);
}

/// Spawns the actor the protocol keeps beside each worker 0..n-1, without
/// blocking this actor: through ctx.beside when the workers live in other
/// processes (one request to each worker's node, answered within
/// plan.timeout), else here with `local(rank)` (returns the actor, null when
/// it could not). Each actor ends when this one does. Once all are there,
/// calls done(actors in rank order). If one cannot be spawned (refused, no
/// answer in time, null), the run fails with "peer i could not be spawned
/// beside its worker: why" and the others get an exit; if the run ended
/// meanwhile, they get an exit and done is not called.
template <class Self, class Local, class Done>
void spawn_all_beside(Self self, const caf::actor& coordinator, Local local, Done done) {
  auto& st = self->state;
  struct gathering {
    std::vector<caf::actor> got;
    size_t left = 0;
    bool over = false;  // failed, or the run ended: nothing more is kept
  };
  auto g = std::make_shared<gathering>();
  g->got.resize(st.ctx.workers.size());
  g->left = g->got.size();
  auto drop_all = [g] {
    g->over = true;
    for (auto& a : g->got)
      if (a)
        caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
  };
  auto fail = [self, drop_all](size_t i, const std::string& why) {
    drop_all();
    fail_run(self, make_error(errc::worker_lost, "peer " + std::to_string(i)
                                                   + " could not be spawned beside its worker"
                                                   + (why.empty() ? "" : ": " + why)));
  };
  auto arrived = [self, g, drop_all, done](size_t i, caf::actor a) mutable {
    self->attach_functor([a] { caf::anon_send_exit(a, caf::exit_reason::user_shutdown); });
    if (g->over || !self->state.tracker.running()) {
      caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
      drop_all();
      return;
    }
    g->got[i] = std::move(a);
    if (--g->left == 0) {
      g->over = true;
      done(std::move(g->got));
    }
  };
  for (size_t i = 0; i < g->got.size() && !g->over; ++i) {
    const auto rank = static_cast<int32_t>(i);
    if (!st.ctx.beside) {
      auto a = local(rank);
      if (a)
        arrived(i, std::move(a));
      else
        fail(i, "");
      continue;
    }
    auto site = st.ctx.beside(rank);
    if (!site.node) {
      fail(i, "no node hosts worker " + std::to_string(i));
      continue;
    }
    self->request(site.node, st.ctx.plan.timeout, peer_atom_v, rank, coordinator, site.monitor, site.job)
      .then(
        [arrived, fail, i, where = site.where](caf::strong_actor_ptr& ptr) mutable {
          auto a = caf::actor_cast<caf::actor>(ptr);
          if (a)
            arrived(i, std::move(a));
          else
            fail(i, where + " sent no peer");
        },
        [fail, i, where = site.where](caf::error& err) { fail(i, where + ": " + describe(err)); });
  }
}

/// Whether a request to a worker failed only because the worker had already
/// ended when the request reached it. CAF closes an ending actor's mailbox
/// before it sends its down messages (monitorable_actor::cleanup runs after
/// the mailbox is closed), so this bounce can overtake the down message that
/// says why the worker ended ("worker 1 on node 1 (...) is gone"). An engine
/// that monitors its workers leaves such a loss to its down handler; the
/// reply's deadline still stands guard.
inline bool ended_before_asked(const caf::error& err) {
  return err == caf::sec::request_receiver_down;
}

/// Gives up on worker i (it died, timed out or became unreachable) and says
/// so in the log. Returns false if it was already given up on.
template <class Self>
bool drop_worker(Self self, size_t i, const std::string& why) {
  auto& st = self->state;
  if (!st.alive[i])
    return false;
  st.alive[i] = false;
  st.tracker.worker_lost();
  log_line(self, "worker " + std::to_string(i) + " lost at step " + std::to_string(st.tracker.step())
                   + " (" + why + "); going on with " + std::to_string(st.live_workers())
                   + " worker(s)");
  return true;
}

/// Starts a run: takes the promise and the clock. Returns the promise for
/// the run_atom handler to return, or an error if a run is under way.
template <class Self>
caf::result<run_summary> begin_run(Self self) {
  auto& st = self->state;
  if (st.tracker.running())
    return make_error(errc::bad_request, "this protocol actor is already running");
  st.promise = self->template make_response_promise<run_summary>();
  st.tracker.start();
  return st.promise;
}

/// Scores `w` on the evaluator, sends the metrics row (with `extra`) to the
/// monitor, then calls `next()` — unless the target was reached, in which
/// case the run finishes with w. A failed evaluation fails the run.
/// `pauses_training`: false for protocols that keep training meanwhile.
template <class Self, class Next>
void evaluate(Self self, const buffer& w, std::map<std::string, double> extra, Next next,
              bool pauses_training = true) {
  auto& st = self->state;
  st.tracker.eval_started(pauses_training);
  self
    ->request(st.ctx.evaluator, st.ctx.plan.timeout, evaluate_atom_v,
              weights{-1, st.tracker.step(), w})
    .then(
      [self, w, extra = std::move(extra), next](evaluation& ev) mutable {
        auto& st = self->state;
        auto row = st.tracker.eval_finished(ev, std::move(extra));
        self->send(st.ctx.monitor, metrics_atom_v, std::move(row));
        if (st.tracker.target_reached())
          finish_run(self, w, "target");
        else
          next();
      },
      [self](caf::error& err) {
        fail_run(self, make_error(errc::compute_failed, "evaluation failed: " + describe(err)));
      });
}

} // namespace chorus
