// Asynchronous gossip SGD (AD-PSGD-like, Lian et al. 2018): no rounds and no
// barrier. Each peer loops on its own:
//   g   <- g_i(x_i)                     (its worker, at x_i as it is now)
//   x_i <- Prox(x_i - eta g)            (x_i may have been averaged meanwhile:
//                                        the gradient is then slightly stale)
//   j   <- a uniformly random neighbour (seeded per peer)
//   x_i, x_j <- (x_i + x_j) / 2         (a pairwise average, request/reply)
// The average is made atomic without locks: i sends s = x_i and j replies
// with its x_j, setting x_j <- (x_j + s)/2; i then applies the same change
// with the opposite sign, x_i <- x_i + (x_j - s)/2. Whatever else touched
// x_i in between (averages other peers started with i, its own steps), the
// pair's sum is kept (up to float rounding), so with eta = 0 the network's
// mean does not move.
// A peer answers average requests at any time, also while its own is out, so
// two peers averaging with each other at once cannot deadlock.
//
// Neighbours are those of the topology's graph (in- and out-neighbours, over
// all its phases: a time-varying graph counts as the union of its phases).
// A neighbour that does not answer within plan.timeout (or is gone) is
// dropped for the rest of the run (a timed-out average may have been applied
// on the other side only: then the sum is off by that one exchange). A step
// is one local step of one peer; bytes count both directions of one pairwise
// average per step (also for a peer left without neighbours, which sends
// nothing: an overcount only after losses).
//
// Options: topology (default ring), weights (unused: only the graph's edges
//          matter), seed (neighbour choice; random graphs).
#include <algorithm>
#include <random>

#include "algorithms/gossip.hpp"

namespace chorus {

namespace {

using async_peer_actor = caf::typed_actor<
  // Start: every peer's handle, by rank.
  caf::reacts_to<run_atom, std::vector<caf::actor>>,
  // A neighbour's model; replies with this peer's model, and both move to their average.
  caf::replies_to<gossip_atom, peer_state>::with<peer_state>,
  // Self: take the next local step.
  caf::reacts_to<caf::tick_atom>>;

struct async_peer_state : peer_base {
  static inline const char* name = "chorus.async_gossip_peer";
  buffer x;
  std::vector<async_peer_actor> peers;
  std::vector<int32_t> neighbours;  // the ones still answering
  std::mt19937_64 rng;
  int64_t steps = 0;
};

using async_peer_pointer = async_peer_actor::stateful_pointer<async_peer_state>;

void local_step(async_peer_pointer self);

// Reports the step, then yields: the next step begins from a self message
// sent through the actor clock. CAF 0.17's work-stealing scheduler runs an
// actor woken from its own worker thread next (LIFO), so a few peers
// averaging with one another and asking their workers can keep every thread
// to themselves while the other peers starve (seen: one peer of 8 took no
// step during 70,000 averages of the others). The clock's enqueue puts the
// peer at the back of a queue instead: the peers take turns.
void yield(async_peer_pointer self) {
  self->delayed_send(self, std::chrono::microseconds(0), caf::tick_atom_v);
}

void step_done(async_peer_pointer self, double loss) {
  if (report(self, self->state.steps, self->state.x, loss, [self] { yield(self); }))
    yield(self);
}

void average(async_peer_pointer self, double loss) {
  auto& st = self->state;
  if (st.neighbours.empty()) {
    step_done(self, loss);
    return;
  }
  std::uniform_int_distribution<size_t> pick(0, st.neighbours.size() - 1);
  const int32_t j = st.neighbours[pick(st.rng)];
  buffer sent = st.x;
  self
    ->request(st.peers[static_cast<size_t>(j)], st.timeout, gossip_atom_v,
              peer_state{st.rank, st.steps, sent, {}, loss, st.samples})
    .then(
      [self, sent, loss](peer_state& theirs) {
        auto& st = self->state;
        mutable_buffer next(st.x.size());
        st.be->weighted_sum({st.x, theirs.x, sent}, {1.0f, 0.5f, -0.5f}, next.span());
        st.x = std::move(next).freeze();
        step_done(self, loss);
      },
      [self, j, loss](caf::error& err) {
        auto& st = self->state;
        peer_log(self, "drops neighbour " + std::to_string(j) + " after " + std::to_string(st.steps)
                         + " steps (" + describe(err) + ")");
        st.neighbours.erase(std::remove(st.neighbours.begin(), st.neighbours.end(), j),
                            st.neighbours.end());
        step_done(self, loss);
      });
}

void local_step(async_peer_pointer self) {
  auto& st = self->state;
  ask_gradient(self, st.x, st.steps, [self](gradient& g) {
    auto& st = self->state;
    auto next = mutable_buffer::copy_of(st.x);
    st.be->prox_step(st.reg, st.lr, g.values, next.span());
    if (!st.be->all_finite(next.span())) {
      peer_leave(self, make_error(errc::non_finite, "peer " + std::to_string(st.rank) + ": model after step "
                                                      + std::to_string(st.steps)
                                                      + " contains NaN or Inf (learning rate too large?)"));
      return;
    }
    st.x = std::move(next).freeze();
    ++st.steps;
    average(self, g.loss);
  });
}

async_peer_actor::behavior_type async_peer(async_peer_pointer self, int32_t rank,
                                           std::shared_ptr<const run_context> ctx,
                                           gossip_coordinator_actor coordinator, int32_t window,
                                           buffer x0, std::vector<int32_t> neighbours) {
  auto& st = self->state;
  st.init(rank, *ctx, std::move(coordinator), window);
  st.x = std::move(x0);
  st.neighbours = std::move(neighbours);
  st.rng.seed(static_cast<uint64_t>(ctx->plan.number("seed", 1)) * 1000003 + static_cast<uint64_t>(rank));
  self->set_down_handler([self](caf::down_msg& dm) { on_worker_down(self, dm); });
  return {
    [self](run_atom, std::vector<caf::actor>& all) {
      auto& st = self->state;
      for (auto& a : all)
        st.peers.push_back(caf::actor_cast<async_peer_actor>(a));
      self->monitor(st.worker);
      local_step(self);
    },
    [self](gossip_atom, peer_state& theirs) -> peer_state {
      auto& st = self->state;
      peer_state mine{st.rank, st.steps, st.x, {}, 0, st.samples};
      mutable_buffer next(st.x.size());
      st.be->weighted_sum({st.x, theirs.x}, {0.5f, 0.5f}, next.span());
      st.x = std::move(next).freeze();
      return mine;
    },
    [self](caf::tick_atom) { local_step(self); },
  };
}

} // namespace

protocol_actor spawn_async_gossip_from(caf::actor_system& sys, run_context ctx,
                                       std::vector<buffer> initial) {
  if (ctx.workers.empty())
    throw std::invalid_argument("async_gossip: no workers");
  const int n = static_cast<int>(ctx.workers.size());
  coordinator_plan cp;
  cp.rounds = false;
  cp.topo = std::make_shared<const topology>(read_topology(ctx.plan, n));
  cp.initial = initial_models(ctx, std::move(initial));
  cp.message_bytes = 2 * static_cast<int64_t>(cp.initial[0].wire_bytes());
  // The coordinator counts a step as soon as it sees it: a few reports in
  // flight per peer are enough.
  cp.window = 4;
  std::vector<std::vector<int32_t>> neighbours;
  for (int i = 0; i < n; ++i)
    neighbours.push_back(all_neighbours(*cp.topo, i));
  auto shared_ctx = std::make_shared<const run_context>(ctx);
  cp.spawn_peer = [shared_ctx, neighbours, xs = cp.initial, window = cp.window](
                    caf::actor_system& sys, int32_t rank, const gossip_coordinator_actor& c) {
    auto i = static_cast<size_t>(rank);
    return caf::actor_cast<caf::actor>(
      sys.spawn(async_peer, rank, shared_ctx, c, window, xs[i], neighbours[i]));
  };
  return spawn_gossip_coordinator(sys, std::move(ctx), std::move(cp));
}

protocol_actor spawn_async_gossip(caf::actor_system& sys, run_context ctx) {
  return spawn_async_gossip_from(sys, std::move(ctx), {});
}

} // namespace chorus
