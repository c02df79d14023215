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
// Options (defaults in registry.cpp): topology, weights (uniform | metropolis),
//          mix_order (atc | cta), seed (random graphs).
#include "algorithms/gossip.hpp"
#include "algorithms/registry.hpp"

#include <stdexcept>
#include <string>

#include "engines/gossip.hpp"

namespace chorus {

namespace {

gossip_rule dsgd_rule(const run_plan& plan) {
  const std::string& order = plan.text("mix_order");
  if (order != "atc" && order != "cta")
    throw std::invalid_argument("option mix_order: '" + order
                                + "' is not a mixing order; valid: atc (adapt then combine), "
                                  "cta (combine then adapt)");
  const float lr = plan.lr;
  const regularizer reg = plan.reg;
  auto mix_x = [](const std::vector<const peer_state*>& in, std::vector<cview>& xs) {
    for (auto* p : in)
      xs.push_back(p->x);
  };
  gossip_rule rule;
  if (order == "atc") {
    // Send the half-stepped model; mixing is then one weighted sum.
    rule.prepare = [lr, reg](gossip_vars& v, backend& be, const gradient& g, int64_t) {
      auto half = mutable_buffer::copy_of(v.x);
      be.prox_step(reg, lr, g.values, half.span());
      return peer_state{-1, 0, std::move(half).freeze(), {}, 0, 0};
    };
    rule.mix = [mix_x](gossip_vars& v, backend& be, const std::vector<const peer_state*>& in,
                       const std::vector<float>& w, const gradient&) {
      std::vector<cview> xs;
      mix_x(in, xs);
      mutable_buffer next(v.x.size());
      be.weighted_sum(xs, w, next.span());
      v.x = std::move(next).freeze();
    };
  } else {
    // Send x_i itself; the gradient joins the weighted sum as one more term.
    rule.prepare = [](gossip_vars& v, backend&, const gradient&, int64_t) {
      return peer_state{-1, 0, v.x, {}, 0, 0};
    };
    rule.mix = [mix_x, lr, reg](gossip_vars& v, backend& be, const std::vector<const peer_state*>& in,
                                const std::vector<float>& w, const gradient& g) {
      std::vector<cview> xs;
      mix_x(in, xs);
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

protocol_actor spawn_gossip_sgd_from(caf::actor_system& sys, run_context ctx,
                                     std::vector<buffer> initial) {
  complete_options(find_algorithm("gossip_sgd"), ctx.plan);
  auto rule = dsgd_rule(ctx.plan);
  return spawn_synchronous_gossip(sys, std::move(ctx), std::move(rule), std::move(initial));
}

protocol_actor spawn_gossip_sgd(caf::actor_system& sys, run_context ctx) {
  return spawn_gossip_sgd_from(sys, std::move(ctx), {});
}

caf::actor spawn_gossip_sgd_peer(caf::actor_system& sys, run_context ctx, int32_t rank,
                                 const caf::actor& coordinator) {
  complete_options(find_algorithm("gossip_sgd"), ctx.plan);
  auto rule = dsgd_rule(ctx.plan);
  return spawn_synchronous_gossip_peer(sys, std::move(ctx), std::move(rule), {}, rank, coordinator);
}

} // namespace chorus
