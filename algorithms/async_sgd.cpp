// Asynchronous delayed-gradient SGD through a parameter server
// (engines/async_server.hpp runs the loop; this file is the rule).
//
// Every worker loops pull -> compute -> push with no barrier: the server
// hands worker i the current weights (version t - tau by the time its
// gradient comes back), and applies each gradient the moment it arrives:
//   w <- Prox_{r, eta_tau}(w - eta_tau * g_i(w_{t - tau})),
//   eta_tau = eta              (default)
//           = eta / (1 + tau)  (option staleness_lr = 1)
// tau, the staleness, is the number of updates applied since the worker's
// copy was taken; every update's tau is recorded (histogram and mean).
//
// Bounded staleness (option staleness_bound = s >= 0): a gradient older than
// s updates is DROPPED (counted as `dropped_stale`) and the worker is handed
// fresh weights at once; it is never made to wait. A slow worker therefore
// still contributes whenever it manages to be within s updates.
//
// A step is one applied update (one worker's mini-batch). With one worker
// and no delay tau is always 0 and this is plain SGD, step for step.
#include "algorithms/protocols.hpp"
#include "algorithms/registry.hpp"
#include "engines/async_server.hpp"

namespace chorus {

namespace {

async_rule async_sgd_rule(const run_plan& plan) {
  const auto bound = static_cast<int64_t>(plan.number("staleness_bound"));  // < 0: none
  const bool staleness_lr = plan.number("staleness_lr") != 0;
  const float lr = plan.lr;
  const regularizer reg = plan.reg;
  async_rule rule;
  if (bound >= 0) {
    rule.accept = [bound](int64_t tau) { return tau <= bound; };
    rule.note = "bounded staleness " + std::to_string(bound)
                + ": older gradients are dropped, workers never wait";
  }
  rule.apply = [lr, reg, staleness_lr](backend& be, cview w, cview g, int64_t tau, view out) {
    const float eta = staleness_lr ? lr / (1.0f + static_cast<float>(tau)) : lr;
    // w - eta g written straight into the new block (no copy pass), then
    // the prox in place (a no-op without a regularizer).
    be.mean_axpy(w, {g}, -eta, out);
    be.prox(reg, eta, out);
  };
  return rule;
}

} // namespace

protocol_actor spawn_async_sgd(caf::actor_system& sys, run_context ctx) {
  complete_options(find_algorithm("async_sgd"), ctx.plan);
  auto rule = async_sgd_rule(ctx.plan);
  return spawn_async_server(sys, std::move(ctx), std::move(rule));
}

} // namespace chorus
