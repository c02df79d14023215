// Lazy (event-triggered) communication, in the spirit of LAG (Chen et al.,
// NeurIPS 2018): a worker uploads a fresh gradient only when it differs
// enough from the one it last uploaded; otherwise the server reuses that one.
//
//   worker i uploads at round k  iff  ||g_i(w_k) - g_i^last||^2 > xi * ||w_k - w_{k-1}||^2 / eta^2
//   server:  w+ = Prox(w - eta * mean_i g_i^last)
//
// (LAG-WK's condition with one look-back term; xi is option `lazy_threshold`,
// its default in registry.cpp. The right side shrinks as the model settles, so uploads get rarer
// exactly when they carry least news.) The trigger compares a worker's own
// gradients, so the decision belongs on the worker's side of the link: each
// worker gets a LAZY UPLINK, a decorator actor with the worker interface that
// forwards every request and, on gradients, answers with an empty gradient
// ("reuse the last one") when the trigger does not fire. The worker itself is
// unchanged; the server counts the bytes that actually cross the link.
// The condition is written for deterministic (full-batch) gradients, as in
// LAG; with small mini-batches the sampling noise alone usually fires it.
#include <algorithm>
#include <memory>

#include "algorithms/protocols.hpp"
#include "algorithms/registry.hpp"

namespace chorus {

namespace {

struct uplink_state {
  static inline const char* name = "chorus.lazy_uplink";
  worker_actor worker;
  float xi = 1;
  run_plan plan;  // the step sizes: ||w - w_prev|| is eta_{t-1} g
  buffer last_sent;     // g_i^last
  buffer last_weights;  // w_{k-1}
  std::unique_ptr<backend> be = make_eigen_backend();
};

worker_actor::behavior_type lazy_uplink(worker_actor::stateful_pointer<uplink_state> self,
                                        worker_actor worker, float xi, run_plan plan) {
  self->state.worker = worker;
  self->state.xi = xi;
  self->state.plan = std::move(plan);
  // The uplink lives and dies with its worker.
  self->link_to(worker);
  return {
    [self](compute_atom, weights w) -> caf::result<gradient> {
      auto rp = self->make_response_promise<gradient>();
      self->request(self->state.worker, caf::infinite, compute_atom_v, w)
        .then(
          [self, rp, w](gradient& g) mutable {
            auto& st = self->state;
            bool upload = st.last_sent.empty() || st.last_weights.empty();
            if (!upload) {
              double change = st.be->squared_distance(g.values, st.last_sent);
              double moved = st.be->squared_distance(w.values, st.last_weights);
              // w.step: the rounds done, so w_prev -> w was step t = w.step - 1.
              const double lr = st.plan.lr_at(std::max<int64_t>(0, w.step - 1));
              upload = change > st.xi * moved / (lr * lr);
            }
            st.last_weights = w.values;
            if (upload) {
              st.last_sent = g.values;
              rp.deliver(std::move(g));
            } else {
              rp.deliver(gradient{g.sender, g.step, buffer{}, g.loss, g.samples});
            }
          },
          [rp](caf::error& err) mutable { rp.deliver(std::move(err)); });
      return rp;
    },
    [self](local_atom, weights w, local_plan p) {
      return self->delegate(self->state.worker, local_atom_v, std::move(w), p);
    },
    [self](evaluate_atom, weights w) {
      return self->delegate(self->state.worker, evaluate_atom_v, std::move(w));
    },
    [self](apply_atom, weights w) {
      return self->delegate(self->state.worker, apply_atom_v, std::move(w));
    },
    [self](fetch_atom) { return self->delegate(self->state.worker, fetch_atom_v); },
  };
}

} // namespace

protocol_actor spawn_lazy_sgd(caf::actor_system& sys, run_context ctx) {
  complete_options(find_algorithm("lazy_sgd"), ctx.plan);
  const float xi = static_cast<float>(ctx.plan.number("lazy_threshold"));
  if (!(xi >= 0))
    throw std::invalid_argument("--lazy-threshold must be >= 0");
  for (auto& w : ctx.workers)
    w = sys.spawn(lazy_uplink, w, xi, ctx.plan);
  // The server keeps each worker's last uploaded gradient and reuses it.
  auto last = std::make_shared<std::vector<buffer>>(ctx.workers.size());
  auto counts = std::make_shared<std::pair<int64_t, int64_t>>(0, 0);  // uploads, skipped
  round_rule rule;
  rule.ask = [](round_asker& ask, size_t i, const weights& w, int64_t) { ask.gradient(i, w); };
  rule.combine = [last, counts, plan = ctx.plan](backend& be, const buffer& w,
                                                const std::vector<round_reply>& replies,
                                                int64_t round) {
    const float lr = plan.lr_at(round - 1);  // t: the server's step, from 0
    const regularizer& reg = plan.reg;
    std::vector<cview> grads;
    for (auto& r : replies) {
      auto& slot = (*last)[static_cast<size_t>(r.sender)];
      if (!r.values.empty()) {
        slot = r.values;
        ++counts->first;
      } else {
        ++counts->second;
      }
      if (!slot.empty())
        grads.push_back(slot);
    }
    auto next = mutable_buffer::copy_of(w);
    if (!grads.empty()) {
      mutable_buffer g(w.size());
      be.mean(grads, g.span());
      be.prox_step(reg, lr, g.span(), next.span());
    }
    return std::move(next).freeze();
  };
  rule.metrics = [counts] {
    return std::map<std::string, double>{{"uploads", double(counts->first)},
                                         {"uploads_skipped", double(counts->second)}};
  };
  return spawn_round_server(sys, std::move(ctx), std::move(rule));
}

} // namespace chorus
