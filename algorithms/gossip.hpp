// Decentralized (gossip) protocols and the machinery they share:
//   gossip_sgd         DSGD, adapt-then-combine or combine-then-adapt (gossip_sgd.cpp)
//   async_gossip       AD-PSGD-like asynchronous pairwise averaging (async_gossip.cpp)
//   gradient_tracking  DIGing / gradient tracking (gradient_tracking.cpp)
//
// Shape of every run: one PEER actor per worker holds node i's model x_i and
// talks only to its own worker and to its graph neighbours; no central actor
// is in the data path. A COORDINATOR (the protocol_actor spawn_* returns)
// spawns the peers, takes a small report from each after each of its rounds
// (or local steps), counts the budget, evaluates the average model x_bar and
// ends the run. It never sends weights to anyone, and it takes no part in
// the peers' rounds: reports carry buffer handles, so they cost no copy.
//
// Flow control: a report is a request, and the coordinator answers it once
// it has counted the report (for a round: once every live peer has reported
// that round). A peer with `window` reports unanswered waits before its next
// round or step. The window is wider than the rounds neighbours can drift
// apart, so in steady state nobody waits; it bounds the models the
// coordinator holds (n * window) while it evaluates or lags, and keeps a
// coordinator starved by the scheduler from falling ever further behind.
//
// Lifetime: the coordinator monitors every peer and every worker; when it
// terminates, for whatever reason, it sends every peer an exit, so a run
// always ends with all its peers. A peer whose worker dies (or stops
// answering within plan.timeout) leaves; its neighbours see it go and mix
// without it from then on.
//
// Not here: the mixing matrices (topology.hpp), compression, robust mixing.
#pragma once

#include <algorithm>
#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <caf/all.hpp>

#include "engines/protocol.hpp"
#include "engines/topology.hpp"

namespace chorus {

// -- the protocols --------------------------------------------------------------

/// gossip_sgd (DSGD): a local step, then x_i <- sum_j w_ij x_j over
/// in-neighbours. Options: topology, weights, mix_order (atc | cta), seed.
/// Throws std::invalid_argument for a bad option (e.g. an unknown topology).
protocol_actor spawn_gossip_sgd(caf::actor_system& sys, run_context ctx);

/// gossip_sgd with peer i starting from initial[i] instead of ctx.initial
/// (consensus studies and tests; empty: every peer starts at ctx.initial).
protocol_actor spawn_gossip_sgd_from(caf::actor_system& sys, run_context ctx,
                                     std::vector<buffer> initial);

/// async_gossip: after each local step a peer averages its model with one
/// random neighbour, x_i, x_j <- (x_i + x_j) / 2. Options: topology,
/// weights (only the graph's edges matter), seed.
protocol_actor spawn_async_gossip(caf::actor_system& sys, run_context ctx);

/// async_gossip with per-peer initial models (see spawn_gossip_sgd_from).
protocol_actor spawn_async_gossip_from(caf::actor_system& sys, run_context ctx,
                                       std::vector<buffer> initial);

/// gradient_tracking (DIGing): x_i <- sum_j w_ij x_j - eta y_i, with y_i
/// tracking the network's mean gradient. Options: topology, weights, seed.
/// Throws std::invalid_argument for a regularizer (no prox step here).
protocol_actor spawn_gradient_tracking(caf::actor_system& sys, run_context ctx);

/// gradient_tracking with per-peer initial models (see spawn_gossip_sgd_from).
protocol_actor spawn_gradient_tracking_from(caf::actor_system& sys, run_context ctx,
                                            std::vector<buffer> initial);

// -- measures -------------------------------------------------------------------

/// Consensus distance mean_i ||x_i - x_bar||^2 with x_bar = mean_i x_i,
/// computed with `be`; writes x_bar to *mean when given. 0 for no vectors.
double consensus_distance(backend& be, const std::vector<buffer>& xs, buffer* mean = nullptr);

// -- shared machinery -------------------------------------------------------------

/// The graph a gossip run uses, from the plan's options "topology" (spec,
/// default "ring"), "weights" ("uniform" | "metropolis", default uniform)
/// and "seed" (for random graphs, default 1). Throws std::invalid_argument.
topology read_topology(const run_plan& plan, int n);

/// Every node peer i ever exchanges with: its in- and out-neighbours over
/// all phases of `t`, sorted.
std::vector<int32_t> all_neighbours(const topology& t, int i);

/// Peer i's x_i^0: `given` when not empty (it must hold one vector of
/// ctx.initial's length per worker), else ctx.initial for every peer.
/// Throws std::invalid_argument on a length mismatch.
std::vector<buffer> initial_models(const run_context& ctx, std::vector<buffer> given);

/// The coordinator's handle as its peers see it.
using gossip_coordinator_actor = protocol_actor::extend<
  // A peer's state after one of its rounds (or local steps); answered once
  // the coordinator has counted it.
  caf::replies_to<report_atom, peer_state>::with<ok_atom>>;

/// What a coordinator needs to know about its protocol.
struct coordinator_plan {
  /// true: peer_state::step is a round number and one step of the run is a
  /// round that every live peer has reported; false: peer_state::step counts
  /// the peer's local steps, and every local step of every peer is a step.
  bool rounds = true;
  std::shared_ptr<const topology> topo;  ///< shared with the peers (a phase is n x n)
  /// rounds: bytes of one gossip message to one neighbour; steps: bytes
  /// exchanged by one local step (its pairwise average).
  int64_t message_bytes = 0;
  /// x_i^0 for every peer (initial_models).
  std::vector<buffer> initial;
  /// Reports a peer may have unanswered before it waits (see above).
  int32_t window = 4;
  /// Spawns peer `rank`, reporting to `coordinator`. The coordinator then
  /// starts every peer with (run_atom, every peer's handle by rank).
  std::function<caf::actor(caf::actor_system&, int32_t rank, const gossip_coordinator_actor&)>
    spawn_peer;
};

/// Spawns the coordinator of a gossip run. Evaluations carry the extra
/// metrics consensus_distance, bytes_per_worker_per_round, spectral_gap and
/// workers_alive; the final one also worst_worker_acc (each live peer's
/// x_i scored on the evaluator, at the end only: n evaluations).
protocol_actor spawn_gossip_coordinator(caf::actor_system& sys, run_context ctx,
                                        coordinator_plan plan);

/// A peer's variables in a synchronous gossip protocol.
struct gossip_vars {
  buffer x;       ///< the model x_i
  buffer y;       ///< gradient tracking: y_i, sent this round
  buffer y_mix;   ///< gradient tracking: sum_j w_ij y_j of the last round
  buffer g_prev;  ///< gradient tracking: the gradient of the last round
};

/// One round of a synchronous gossip protocol at one peer, cut where the
/// network sits. The peer asks its worker for g = g_i(x_i); `prepare` turns
/// it into the message the peer sends its out-neighbours; once every live
/// in-neighbour's message of the round is in, `mix` writes the variables of
/// the next round. Both run inside the peer, with the peer's backend.
struct gossip_rule {
  /// Messages carry y besides x (for the byte count).
  bool sends_y = false;
  std::function<peer_state(gossip_vars& v, backend& be, const gradient& g, int64_t round)> prepare;
  /// `in[0]` is the peer's own message, then its in-neighbours'; `w` holds
  /// the matching weights of row i of W (summing to 1; a dropped
  /// neighbour's weight is added to w[0]).
  std::function<void(gossip_vars& v, backend& be, const std::vector<const peer_state*>& in,
                     const std::vector<float>& w, const gradient& g)>
    mix;
};

/// A synchronous gossip run (no global barrier: each peer waits only for
/// its in-neighbours' messages of its round): reads topology, weights and
/// seed from the plan, spawns one peer per worker running `rule` and a
/// coordinator in rounds mode. Throws std::invalid_argument for bad options.
protocol_actor spawn_synchronous_gossip(caf::actor_system& sys, run_context ctx, gossip_rule rule,
                                        std::vector<buffer> initial);

/// What every peer holds besides its protocol's variables.
struct peer_base {
  int32_t rank = 0;
  worker_actor worker;
  gossip_coordinator_actor coordinator;
  monitor_actor monitor;
  std::chrono::milliseconds timeout{60000};  ///< longest wait for its worker
  float lr = 0.1f;
  regularizer reg;
  std::unique_ptr<backend> be = make_eigen_backend();
  int64_t samples = 0;  ///< samples its worker processed so far
  int32_t window = 4;   ///< reports it may have unanswered
  int32_t unanswered = 0;
  bool held = false;    ///< waiting for the coordinator to catch up

  void init(int32_t r, const run_context& ctx, gossip_coordinator_actor c, int32_t w) {
    rank = r;
    window = std::max(1, w);
    worker = ctx.workers[static_cast<size_t>(r)];
    coordinator = std::move(c);
    monitor = ctx.monitor;
    timeout = ctx.plan.timeout;
    lr = ctx.plan.lr;
    reg = ctx.plan.reg;
  }
};

/// Sends a line to the run's log, prefixed with the peer's rank.
template <class Self>
void peer_log(Self self, const std::string& line) {
  self->send(self->state.monitor, log_atom_v, "peer " + std::to_string(self->state.rank) + ": " + line);
}

/// The peer leaves the run with `reason`: the coordinator and its
/// neighbours see it terminate. errc::worker_lost loses one node; any other
/// reason (NaN, a dimension mismatch) fails the run.
template <class Self>
void peer_leave(Self self, const caf::error& reason) {
  peer_log(self, "leaves the run: " + describe(reason));
  self->quit(reason);
}

/// True (and the peer leaves) if `dm` says the peer's worker terminated.
template <class Self>
bool on_worker_down(Self self, const caf::down_msg& dm) {
  if (dm.source != self->state.worker.address())
    return false;
  peer_leave(self, make_error(errc::worker_lost, "its worker terminated: " + describe(dm.reason)));
  return true;
}

/// Asks the peer's worker for a gradient at `x` (the worker's step is
/// `step`, which also drives injected crashes) and calls next(gradient&).
/// A timeout or a lost worker makes the peer leave with worker_lost; a
/// Chorus error from the worker (NaN, ...) makes it leave with that error.
template <class Self, class Next>
void ask_gradient(Self self, const buffer& x, int64_t step, Next next) {
  auto& st = self->state;
  self->request(st.worker, st.timeout, compute_atom_v, weights{st.rank, step, x})
    .then(
      [self, next](gradient& g) mutable {
        self->state.samples += g.samples;
        next(g);
      },
      [self](caf::error& err) {
        if (is_run_failure(err))
          peer_leave(self, err);
        else
          peer_leave(self, make_error(errc::worker_lost, "no gradient from its worker: " + describe(err)));
      });
}

/// Tells the coordinator where the peer stands after `step`: its model x
/// and the loss of its last mini-batch. Returns true if the peer may go on;
/// false if `window` reports are unanswered, and then `go_on()` is called
/// once the coordinator has answered enough of them.
template <class Self, class GoOn>
bool report(Self self, int64_t step, const buffer& x, double loss, GoOn go_on) {
  auto& st = self->state;
  ++st.unanswered;
  self->request(st.coordinator, caf::infinite, report_atom_v,
                peer_state{st.rank, step, x, {}, loss, st.samples})
    .then(
      [self, go_on](ok_atom) mutable {
        auto& st = self->state;
        --st.unanswered;
        if (st.held && st.unanswered < st.window) {
          st.held = false;
          go_on();
        }
      },
      [](caf::error&) {
        // The coordinator ended the run; this peer's exit is on its way.
      });
  st.held = st.unanswered >= st.window;
  return !st.held;
}

} // namespace chorus
