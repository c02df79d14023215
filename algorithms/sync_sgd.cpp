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

buffer mean_of(backend& be, const std::vector<round_reply>& replies, size_t n) {
  std::vector<cview> xs;
  xs.reserve(replies.size());
  for (auto& r : replies)
    xs.push_back(r.values);
  mutable_buffer out(n);
  be.mean(xs, out.span());
  return std::move(out).freeze();
}

round_rule sync_sgd_rule(const run_plan& plan) {
  round_rule rule;
  rule.ask = [](round_asker& ask, size_t i, const weights& w, int64_t) { ask.gradient(i, w); };
  rule.combine = [lr = plan.lr, reg = plan.reg](backend& be, const buffer& w,
                                                const std::vector<round_reply>& replies, int64_t) {
    // w - eta * mean_i g_i in one pass over memory, then the prox in place.
    std::vector<cview> grads;
    grads.reserve(replies.size());
    for (auto& r : replies)
      grads.push_back(r.values);
    mutable_buffer next(w.size());
    be.mean_axpy(w, grads, -lr, next.span());
    be.prox(reg, lr, next.span());
    return std::move(next).freeze();
  };
  return rule;
}

round_rule sync_sgd_avg_rule(const run_plan& plan) {
  round_rule rule;
  rule.ask = [step = local_plan{1, plan.lr, plan.reg}](round_asker& ask, size_t i,
                                                       const weights& w, int64_t) {
    ask.local(i, w, step);
  };
  rule.combine = [](backend& be, const buffer& w, const std::vector<round_reply>& replies,
                    int64_t) { return mean_of(be, replies, w.size()); };
  return rule;
}

protocol_actor spawn_sync_sgd(caf::actor_system& sys, run_context ctx) {
  auto rule = sync_sgd_rule(ctx.plan);
  return spawn_round_server(sys, std::move(ctx), std::move(rule));
}

protocol_actor spawn_sync_sgd_avg(caf::actor_system& sys, run_context ctx) {
  auto rule = sync_sgd_avg_rule(ctx.plan);
  return spawn_round_server(sys, std::move(ctx), std::move(rule));
}

} // namespace chorus
