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
//
// This file is the rule; the asynchronous gossip engine
// (engines/gossip_async_peer.cpp) runs it: the message loop, neighbours
// that stop answering, the step and byte counts.
//
// Options (defaults in registry.cpp): topology, weights (unused: only the
//          graph's edges matter), seed (neighbour choice; random graphs).
#include <random>

#include "algorithms/gossip.hpp"
#include "algorithms/registry.hpp"
#include "engines/gossip.hpp"

namespace chorus {

namespace {

pairwise_rule ad_psgd_rule(const run_plan& plan) {
  pairwise_rule rule;
  rule.step = [plan](backend& be, const buffer& x, const gradient& g) {
    auto next = mutable_buffer::copy_of(x);
    // t: the peer's own local steps (g.step); plan.clock shares the run's
    // steps out over the peers for cosine's horizon.
    be.prox_step(plan.reg, plan.lr_at(g.step), g.values, next.span());
    return std::move(next).freeze();
  };
  rule.pick = [](const std::vector<int32_t>& live, std::mt19937_64& rng) {
    std::uniform_int_distribution<size_t> pick(0, live.size() - 1);
    return live[pick(rng)];
  };
  // j: x_j <- (x_j + s) / 2.
  rule.answer = [](backend& be, const buffer& mine, const buffer& theirs) {
    mutable_buffer next(mine.size());
    be.weighted_sum({mine, theirs}, {0.5f, 0.5f}, next.span());
    return std::move(next).freeze();
  };
  // i: x_i <- x_i + (x_j - s) / 2, the opposite of j's change.
  rule.complete = [](backend& be, const buffer& mine, const buffer& sent, const buffer& theirs) {
    mutable_buffer next(mine.size());
    be.weighted_sum({mine, theirs, sent}, {1.0f, 0.5f, -0.5f}, next.span());
    return std::move(next).freeze();
  };
  return rule;
}

} // namespace

protocol_actor spawn_async_gossip_from(caf::actor_system& sys, run_context ctx,
                                       std::vector<buffer> initial) {
  complete_options(find_algorithm("async_gossip"), ctx.plan);
  ctx.plan.clock.peers = static_cast<int64_t>(ctx.workers.size());  // t: a peer's own steps
  auto rule = ad_psgd_rule(ctx.plan);
  return spawn_asynchronous_gossip(sys, std::move(ctx), std::move(rule), std::move(initial));
}

protocol_actor spawn_async_gossip(caf::actor_system& sys, run_context ctx) {
  return spawn_async_gossip_from(sys, std::move(ctx), {});
}

caf::actor spawn_async_gossip_peer(caf::actor_system& sys, run_context ctx, int32_t rank,
                                   const caf::actor& coordinator) {
  complete_options(find_algorithm("async_gossip"), ctx.plan);
  ctx.plan.clock.peers = static_cast<int64_t>(ctx.workers.size());  // t: a peer's own steps
  auto rule = ad_psgd_rule(ctx.plan);
  return spawn_asynchronous_gossip_peer(sys, std::move(ctx), std::move(rule), {}, rank, coordinator);
}

} // namespace chorus
