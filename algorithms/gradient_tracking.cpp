// Gradient tracking (DIGing: Nedic, Olshevsky and Shi 2017; Qu and Li 2018).
// Each node keeps its model x_i and a tracker y_i of the network's mean
// gradient, and gossips both under the round's mixing matrix W_k:
//   x_i^{k+1} = sum_j w_ij x_j^k - eta y_i^k
//   y_i^{k+1} = sum_j w_ij y_j^k + g_i(x_i^{k+1}) - g_i(x_i^k),   y_i^0 = g_i(x_i^0)
// Because W is doubly stochastic, mean_i y_i^k = mean_i g_i(x_i^k) at every
// round: every node steps along an estimate of the *global* gradient rather
// than its own. With exact (full-batch) gradients a constant step size
// therefore converges to the exact optimum even when the nodes' data differ
// completely, where DSGD (gossip_sgd.cpp) stalls at a distance of order
// eta * heterogeneity / spectral gap.
//
// Round k at peer i, on the synchronous gossip engine (engines/gossip.hpp):
// the worker returns g_i(x_i^k); prepare finishes y_i^k = ymix_i^{k-1} +
// g_i(x_i^k) - g_i(x_i^{k-1}) and sends (x_i^k, y_i^k); mix computes
// x_i^{k+1} and ymix_i^k = sum_j w_ij y_j^k, each as one weighted sum. A
// message is twice DSGD's (x and y). A dropped neighbour
// (engines/gossip_round_peer.cpp) breaks the tracking invariant: the
// trackers then follow a slightly wrong mean.
//
// No regularizer: the tracking recursion has no proximal form here, so a
// plan with one is refused. A step is one round.
//
// Options (defaults in registry.cpp): topology, weights (uniform | metropolis), seed.
#include <stdexcept>

#include "algorithms/gossip.hpp"
#include "algorithms/registry.hpp"
#include "engines/gossip.hpp"

namespace chorus {

namespace {

gossip_rule tracking_rule(const run_plan& plan) {
  if (plan.reg.kind != regularizer::kind_none)
    throw std::invalid_argument("gradient_tracking takes no regularizer (got "
                                + plan.reg.to_string() + "); use gossip_sgd for a proximal step");
  gossip_rule rule;
  rule.sends_y = true;
  rule.prepare = [](gossip_vars& v, backend& be, const gradient& g, int64_t) {
    if (v.y_mix.empty()) {
      v.y = g.values;  // y_i^0 = g_i(x_i^0)
    } else {
      mutable_buffer y(g.values.size());
      be.weighted_sum({v.y_mix, g.values, v.g_prev}, {1.0f, 1.0f, -1.0f}, y.span());
      v.y = std::move(y).freeze();
    }
    v.g_prev = g.values;
    return peer_state{-1, 0, v.x, v.y, 0, 0};
  };
  rule.mix = [plan](gossip_vars& v, backend& be, const std::vector<const peer_state*>& in,
                    const std::vector<float>& w, const gradient& g) {
    const float lr = plan.lr_at(g.step);  // t: the round (the peer's local step)
    std::vector<cview> xs, ys;
    for (auto* p : in) {
      xs.push_back(p->x);
      ys.push_back(p->y);
    }
    xs.push_back(v.y);
    auto coeffs = w;
    coeffs.push_back(-lr);
    mutable_buffer x(v.x.size());
    be.weighted_sum(xs, coeffs, x.span());
    mutable_buffer y_mix(v.x.size());
    be.weighted_sum(ys, w, y_mix.span());
    v.x = std::move(x).freeze();
    v.y_mix = std::move(y_mix).freeze();
  };
  return rule;
}

} // namespace

protocol_actor spawn_gradient_tracking_from(caf::actor_system& sys, run_context ctx,
                                            std::vector<buffer> initial) {
  complete_options(find_algorithm("gradient_tracking"), ctx.plan);
  auto rule = tracking_rule(ctx.plan);
  return spawn_synchronous_gossip(sys, std::move(ctx), std::move(rule), std::move(initial));
}

protocol_actor spawn_gradient_tracking(caf::actor_system& sys, run_context ctx) {
  return spawn_gradient_tracking_from(sys, std::move(ctx), {});
}

caf::actor spawn_gradient_tracking_peer(caf::actor_system& sys, run_context ctx, int32_t rank,
                                        const caf::actor& coordinator) {
  complete_options(find_algorithm("gradient_tracking"), ctx.plan);
  auto rule = tracking_rule(ctx.plan);
  return spawn_synchronous_gossip_peer(sys, std::move(ctx), std::move(rule), {}, rank, coordinator);
}

} // namespace chorus
