// Decentralized SGD (DSGD): every node takes a local stochastic gradient step
// and averages with its in-neighbours under the round's mixing matrix W_k
// (topology.at(k); doubly stochastic, time-varying for onepeer-exp):
//   atc (adapt-then-combine, default):  x_i <- sum_j w_ij Prox(x_j - eta g_j(x_j))
//   cta (combine-then-adapt):           x_i <- Prox(sum_j w_ij x_j - eta g_i(x_i))
// atc sends the half-stepped model Prox(x_j - eta g_j) and mixes with one
// weighted sum; cta sends x_j itself and adds -eta g_i as one more term of
// the sum before the prox.
// With eta = 0 both are pure gossip, x <- W x: the mean is kept and the
// consensus distance mean_i ||x_i - x_bar||^2 shrinks by |lambda_2(W)|^2 per
// round asymptotically (lambda_2 the second-largest eigenvalue modulus).
// With a constant eta and heterogeneous data DSGD stops at a distance of
// order eta * heterogeneity / spectral gap from the optimum; gradient
// tracking (gradient_tracking.cpp) removes that bias.
//
// This file is the rule; the synchronous gossip engine
// (engines/gossip_round_peer.cpp) runs it: a step is one round, a peer waits
// only for its in-neighbours' messages of its round, and each message to
// each out-neighbour costs wire_bytes of x.
//
// Robust mixing (--aggregator, with --pre and --f; algorithms/robust_gossip.hpp):
// the weighted sum sum_j w_ij x_j of the messages becomes a robust
// combination of them, e.g. ClippedGossip (cc:TAU | cc:auto)
//   x_i <- x_i + sum_{j != i} w_ij clip_tau(x_j - x_i)
// on the messages (atc: the half-stepped models; cta: the models, then
// -eta g_i and the prox), or a rule such as median on the 1 + in-degree
// messages. Non-finite neighbour messages are then set aside and counted
// per peer instead of failing the run.
//
// Options (defaults in registry.cpp): topology, weights (uniform | metropolis),
//          mix_order (atc | cta), seed (random graphs), aggregator, pre, f.
#include "algorithms/gossip.hpp"
#include "algorithms/registry.hpp"

#include <stdexcept>
#include <string>

#include "algorithms/robust_gossip.hpp"
#include "engines/gossip.hpp"

namespace chorus {

namespace {

// The mix of `in` (own message first) with W's row `w`: the weighted sum,
// or the robust mix when one is set.
buffer combine(const robust_mix* robust, gossip_vars& v, backend& be,
               const std::vector<const peer_state*>& in, const std::vector<float>& w) {
  if (robust == nullptr) {
    std::vector<cview> xs;
    for (auto* p : in)
      xs.push_back(p->x);
    mutable_buffer next(v.x.size());
    be.weighted_sum(xs, w, next.span());
    return std::move(next).freeze();
  }
  std::vector<buffer> xs;
  std::vector<int32_t> senders;
  for (auto* p : in) {
    xs.push_back(p->x);
    senders.push_back(p->sender);
  }
  return (*robust)(v, xs, senders, w, in[0]->step);
}

gossip_rule dsgd_rule(const run_plan& plan, size_t workers) {
  const std::string& order = plan.text("mix_order");
  if (order != "atc" && order != "cta")
    throw std::invalid_argument("option mix_order: '" + order
                                + "' is not a mixing order; valid: atc (adapt then combine), "
                                  "cta (combine then adapt)");
  auto robust = robust_mix::make(plan, fewest_mix_inputs(read_topology(plan, static_cast<int>(workers))));
  gossip_rule rule;
  if (order == "atc") {
    // Send the half-stepped model; mixing is then one weighted sum.
    rule.prepare = [plan](gossip_vars& v, backend& be, const gradient& g, int64_t round) {
      auto half = mutable_buffer::copy_of(v.x);
      // t: the round (each peer's local step), from 0.
      be.prox_step(plan.reg, plan.lr_at(round), g.values, half.span());
      return peer_state{-1, 0, std::move(half).freeze(), {}, 0, 0};
    };
    rule.mix = [robust](gossip_vars& v, backend& be, const std::vector<const peer_state*>& in,
                        const std::vector<float>& w, const gradient&) {
      v.x = combine(robust.get(), v, be, in, w);
    };
  } else {
    // Send x_i itself; the gradient joins the weighted sum as one more term.
    rule.prepare = [](gossip_vars& v, backend&, const gradient&, int64_t) {
      return peer_state{-1, 0, v.x, {}, 0, 0};
    };
    rule.mix = [robust, plan](gossip_vars& v, backend& be, const std::vector<const peer_state*>& in,
                              const std::vector<float>& w, const gradient& g) {
      const float lr = plan.lr_at(g.step);  // g.step: the round
      const regularizer& reg = plan.reg;
      if (robust) {
        auto next = mutable_buffer::copy_of(combine(robust.get(), v, be, in, w));
        be.axpy(-lr, g.values, next.span());
        be.prox(reg, lr, next.span());
        v.x = std::move(next).freeze();
        return;
      }
      std::vector<cview> xs;
      for (auto* p : in)
        xs.push_back(p->x);
      xs.push_back(g.values);
      auto coeffs = w;
      coeffs.push_back(-lr);
      mutable_buffer next(v.x.size());
      be.weighted_sum(xs, coeffs, next.span());
      be.prox(reg, lr, next.span());
      v.x = std::move(next).freeze();
    };
  }
  return rule;
}

} // namespace

void check_gossip_sgd(const run_plan& plan, size_t workers) {
  robust_mix::make(plan, fewest_mix_inputs(read_topology(plan, static_cast<int>(workers))));
}

protocol_actor spawn_gossip_sgd_from(caf::actor_system& sys, run_context ctx,
                                     std::vector<buffer> initial) {
  complete_options(find_algorithm("gossip_sgd"), ctx.plan);
  auto rule = dsgd_rule(ctx.plan, ctx.workers.size());
  return spawn_synchronous_gossip(sys, std::move(ctx), std::move(rule), std::move(initial));
}

protocol_actor spawn_gossip_sgd(caf::actor_system& sys, run_context ctx) {
  return spawn_gossip_sgd_from(sys, std::move(ctx), {});
}

caf::actor spawn_gossip_sgd_peer(caf::actor_system& sys, run_context ctx, int32_t rank,
                                 const caf::actor& coordinator) {
  complete_options(find_algorithm("gossip_sgd"), ctx.plan);
  auto rule = dsgd_rule(ctx.plan, ctx.workers.size());
  return spawn_synchronous_gossip_peer(sys, std::move(ctx), std::move(rule), {}, rank, coordinator);
}

} // namespace chorus
