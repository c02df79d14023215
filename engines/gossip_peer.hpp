// What the gossip engine's own actors share (see engines/gossip.hpp for the
// engine and what a protocol's rule sees): the coordinator's handle and
// plan, and the machinery of every peer (its wiring, asking its worker for a
// gradient, reporting to the coordinator under the report window, leaving
// the run). Protocols do not include this; the round peer
// (gossip_round_peer.cpp) and the asynchronous peer (gossip_async_peer.cpp)
// do.
#pragma once

#include <algorithm>
#include <chrono>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <caf/all.hpp>

#include "engines/byzantine.hpp"
#include "engines/gossip.hpp"
#include "messages/errors.hpp"

namespace chorus {

// -- the coordinator ------------------------------------------------------------------

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
  /// Reports a peer may have unanswered before it waits (flow control, engines/gossip.hpp).
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

// -- the peers ------------------------------------------------------------------------

/// What every peer holds besides its protocol's variables.
struct peer_base {
  int32_t rank = 0;
  worker_actor worker;
  gossip_coordinator_actor coordinator;
  monitor_actor monitor;
  std::chrono::milliseconds timeout{60000};  ///< longest wait for its worker
  std::unique_ptr<backend> be = make_eigen_backend();
  int64_t samples = 0;  ///< samples its worker processed so far
  int32_t window = 4;   ///< reports it may have unanswered
  int32_t unanswered = 0;
  bool held = false;    ///< waiting for the coordinator to catch up
  /// false: reports carry no model; `recent` keeps the models of the
  /// reports the coordinator may still fetch (run_context::report_models).
  bool report_models = true;
  std::deque<std::pair<int64_t, buffer>> recent;
  /// A Byzantine peer's attack on the models it sends (engines/gossip.hpp);
  /// null for an honest peer (and for a data attack, done by its worker).
  std::shared_ptr<const attack> forger;
  std::mt19937_64 forge_rng;
  /// Robust mixing counts, sent with every report (gossip_vars::rejected, clipped).
  int64_t rejected = 0;
  int64_t clipped = 0;

  void init(int32_t r, const run_context& ctx, gossip_coordinator_actor c, int32_t w) {
    rank = r;
    window = std::max(1, w);
    worker = ctx.workers[static_cast<size_t>(r)];
    coordinator = std::move(c);
    monitor = ctx.monitor;
    timeout = ctx.plan.timeout;
    report_models = ctx.report_models;
    if (!ctx.byzantine.empty()) {
      auto plan = parse_byzantine(ctx.byzantine, static_cast<int32_t>(ctx.workers.size()));
      if (plan.is_byzantine(r) && !plan.atk.data)
        forger = std::make_shared<const attack>(plan.atk);
      forge_rng.seed(static_cast<uint64_t>(ctx.plan.number("seed")) * 7919 + static_cast<uint64_t>(r));
    }
  }

  /// What goes on the wire for the model x: x itself from an honest peer,
  /// the attack's forgery of it from a Byzantine one.
  buffer outgoing(const buffer& x) {
    if (!forger)
      return x;
    return forger->forge(attack_input{x.to_host(), {}, &forge_rng});
  }

  /// The coordinator answered the report of `step`. It fetches a model
  /// only right after counting a report (to evaluate, or at the end), and
  /// it answers every report it counts as it counts it, in order; its
  /// messages to this peer arrive in the order sent. So once the answer to
  /// `step` is here, a fetch of an older step has arrived already (or never
  /// comes): those models are dropped. This keeps at most window + 1 models
  /// (the reports unanswered and the last answered one), where keeping the
  /// last 2 window + 4 held 14 models per peer on the complete graph, each
  /// one of the first rounds' a fresh block: a first touch of 16 MB costs
  /// 100-270 ms on transparent huge pages on the shared VM (allreduce_sgd,
  /// README "Across processes and hosts").
  void answered(int64_t step) {
    while (!recent.empty() && recent.front().first < step)
      recent.pop_front();
  }

  /// The model this peer reported at `step` (the nearest older one it still
  /// keeps when that one is gone, else `current`), for the coordinator's
  /// fetch; the reply's step says which it is.
  peer_state model_at(int64_t step, const buffer& current, int64_t current_step) const {
    const std::pair<int64_t, buffer>* best = nullptr;
    for (auto& r : recent)
      if (r.first <= step && (best == nullptr || r.first > best->first))
        best = &r;
    if (best == nullptr)
      return peer_state{rank, current_step, current, {}, 0, samples};
    return peer_state{rank, best->first, best->second, {}, 0, samples};
  }
};

/// Sends a line to the run's log, prefixed with the peer's rank.
template <class Self>
void peer_log(Self self, const std::string& line) {
  self->send(self->state.monitor, log_atom_v, "peer " + std::to_string(self->state.rank) + ": " + line);
}

/// The peer leaves the run with `reason`: the coordinator and its
/// neighbours see it terminate. The coordinator decides by is_run_failure:
/// errc::worker_lost loses one node; any other Chorus error (NaN, a
/// dimension mismatch) fails the run.
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
  buffer sent = x;
  if (!st.report_models) {
    // Kept for a fetch until the answer to a later report (answered());
    // the cap is a bound the answers keep it far below.
    st.recent.emplace_back(step, x);
    while (st.recent.size() > 2 * static_cast<size_t>(st.window) + 4)
      st.recent.pop_front();
    sent = buffer{};
  }
  self->request(st.coordinator, caf::infinite, report_atom_v,
                peer_state{st.rank, step, sent, {}, loss, st.samples, st.rejected, st.clipped})
    .then(
      [self, go_on, step](ok_atom) mutable {
        auto& st = self->state;
        --st.unanswered;
        st.answered(step);
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
