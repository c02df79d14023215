// Synchronous parallel (proximal) SGD. Each step the server sends the same
// weights w to all N workers and waits for all of them (the barrier).
//
//   sync_sgd       server form:   w+ = Prox_{r,eta}(w - eta * mean_i g_i(w))
//                  With r = 0 and equal batches this is exactly one worker on
//                  an N-times larger batch: the mean of N batch-mean gradients
//                  over disjoint equal batches is the mean over their union.
//   sync_sgd_avg   averaged form: w+ = mean_i Prox_{r,eta}(w - eta * g_i(w))
//                  Each worker takes one proximal step itself (a local step
//                  with k = 1) and the server averages the models. For r = 0
//                  both forms coincide; for L1 they differ: averaging sparse
//                  vectors is not sparse, so the server form is the one whose
//                  iterates stay sparse.
//
// Cost per step: N weight broadcasts (one shared buffer in-process) and N
// replies of the model's size; one pass over N buffers to aggregate.
#include "algorithms/protocols.hpp"

namespace chorus {

round_rule sync_sgd_rule() {
  round_rule rule;
  rule.ask = [](round_asker& ask, size_t i, const weights& w, const run_plan&) {
    ask.gradient(i, w);
  };
  rule.combine = [](backend& be, const buffer& w, const std::vector<round_reply>& replies,
                    const run_plan& plan) {
    std::vector<cview> grads;
    grads.reserve(replies.size());
    for (auto& r : replies)
      grads.push_back(r.values);
    auto g = be.zeros(w.size());
    be.mean(grads, g.span());
    auto next = mutable_buffer::copy_of(w);
    be.prox_step(plan.reg, plan.lr, g.span(), next.span());
    return std::move(next).freeze();
  };
  return rule;
}

round_rule sync_sgd_avg_rule() {
  round_rule rule;
  rule.ask = [](round_asker& ask, size_t i, const weights& w, const run_plan& plan) {
    ask.local(i, w, local_plan{1, plan.lr, plan.reg});
  };
  rule.combine = [](backend& be, const buffer& w, const std::vector<round_reply>& replies,
                    const run_plan&) {
    std::vector<cview> models;
    models.reserve(replies.size());
    for (auto& r : replies)
      models.push_back(r.values);
    mutable_buffer next(w.size());
    be.mean(models, next.span());
    return std::move(next).freeze();
  };
  return rule;
}

protocol_actor spawn_sync_sgd(caf::actor_system& sys, run_context ctx) {
  return spawn_round_server(sys, std::move(ctx), sync_sgd_rule());
}

protocol_actor spawn_sync_sgd_avg(caf::actor_system& sys, run_context ctx) {
  return spawn_round_server(sys, std::move(ctx), sync_sgd_avg_rule());
}

} // namespace chorus
