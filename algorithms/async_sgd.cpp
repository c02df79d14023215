// Asynchronous delayed-gradient SGD through a parameter-server actor.
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
#include <algorithm>
#include <cmath>
#include <map>

#include "algorithms/protocols.hpp"

namespace chorus {

namespace {

struct async_state : protocol_state {
  static inline const char* name = "chorus.async_sgd";
  buffer w;
  int64_t bound = -1;       // staleness bound; < 0: none
  bool staleness_lr = false;
  bool eval_in_flight = false;
  bool stopping = false;    // budget spent or stop asked: hand out no more work
  int64_t dropped = 0;
  double staleness_sum = 0;
  int64_t max_staleness = 0;
  std::map<int64_t, int64_t> histogram;
  std::vector<bool> in_flight;  // per worker: a request is out
  std::vector<int64_t> applied;  // per worker: updates applied from it

  // Marks worker i's request as answered (or never to be); false if it was
  // already settled (a down message and an error reply can both arrive).
  bool settle(size_t i) {
    if (!in_flight[i])
      return false;
    in_flight[i] = false;
    return true;
  }

  std::map<std::string, double> metrics() const {
    std::map<std::string, double> m;
    const int64_t updates = tracker.step();
    m["staleness_mean"] = updates > 0 ? staleness_sum / updates : 0.0;
    m["staleness_max"] = static_cast<double>(max_staleness);
    m["dropped_stale"] = static_cast<double>(dropped);
    m["workers_alive"] = static_cast<double>(live_workers());
    for (auto& [tau, count] : histogram)
      m["staleness_hist_" + std::to_string(tau)] = static_cast<double>(count);
    // How evenly the workers got their gradients in: a slow worker shows
    // up as updates_min, a starved one too.
    if (!applied.empty()) {
      m["updates_min"] = static_cast<double>(*std::min_element(applied.begin(), applied.end()));
      m["updates_max"] = static_cast<double>(*std::max_element(applied.begin(), applied.end()));
    }
    return m;
  }
};

using async_pointer = protocol_actor::stateful_pointer<async_state>;

void ask(async_pointer self, size_t i);

// Ends the run once the budget is spent (or a stop was asked) and no
// evaluation is pending. Gradients still in flight are not waited for: a
// straggler must not hold the end of the run hostage, and its late reply
// goes to a terminated actor, which is harmless.
void maybe_finish(async_pointer self) {
  auto& st = self->state;
  if (!st.stopping || st.eval_in_flight || !st.tracker.running())
    return;
  // A final evaluation if the last one was not of the final weights.
  if (st.tracker.eval_due()) {
    st.eval_in_flight = true;
    evaluate(self, st.w, st.metrics(), [self] {
      self->state.eval_in_flight = false;
      maybe_finish(self);
    });
    return;
  }
  auto& extra = st.tracker.summary_extra();
  for (auto& [k, v] : st.metrics())
    extra[k] = v;
  std::string hist;
  for (auto& [tau, count] : st.histogram)
    hist += (hist.empty() ? "" : " ") + std::to_string(tau) + ":" + std::to_string(count);
  log_line(self, "staleness histogram (tau:count): " + hist);
  finish_run(self, st.w, st.tracker.budget_spent() ? "budget" : "stopped");
}

void on_gradient(async_pointer self, size_t i, gradient& g) {
  auto& st = self->state;
  if (!st.settle(i))
    return;
  st.tracker.add_bytes(static_cast<int64_t>(g.values.wire_bytes()));
  if (st.stopping) {
    maybe_finish(self);
    return;
  }
  const int64_t tau = st.tracker.step() - g.step;
  st.tracker.add_work(g.samples, g.loss, 1);
  if (st.bound >= 0 && tau > st.bound) {
    ++st.dropped;
  } else {
    const float eta = st.staleness_lr ? st.ctx.plan.lr / (1.0f + static_cast<float>(tau))
                                      : st.ctx.plan.lr;
    // w - eta g written straight into the new block (no copy pass), then
    // the prox in place (a no-op without a regularizer).
    auto next = st.be->allocate(st.w.size());
    st.be->mean_axpy(st.w, {st.be->adopt(g.values)}, -eta, next.span());
    st.be->prox(st.ctx.plan.reg, eta, next.span());
    if (!st.be->all_finite(next.span())) {
      fail_run(self, make_error(errc::non_finite, "weights after step "
                                                    + std::to_string(st.tracker.step())
                                                    + " contain NaN or Inf (learning rate too large?)"));
      return;
    }
    st.w = std::move(next).freeze();
    st.tracker.step_done();
    ++st.histogram[tau];
    st.staleness_sum += static_cast<double>(tau);
    st.max_staleness = std::max(st.max_staleness, tau);
    ++st.applied[i];
  }
  if (st.tracker.budget_spent())
    st.stopping = true;
  if (!st.stopping)
    ask(self, i);
  if (!st.eval_in_flight && !st.stopping && st.tracker.eval_due()) {
    // The evaluator scores a snapshot (buffers are immutable) while the
    // workers go on: evaluation costs the protocol no barrier.
    st.eval_in_flight = true;
    evaluate(
      self, st.w, st.metrics(),
      [self] {
        self->state.eval_in_flight = false;
        maybe_finish(self);
      },
      /*pauses_training=*/false);
  }
  maybe_finish(self);
}

void ask(async_pointer self, size_t i) {
  auto& st = self->state;
  if (!st.alive[i] || st.in_flight[i])
    return;
  st.in_flight[i] = true;
  weights w{-1, st.tracker.step(), st.w};
  st.tracker.add_bytes(static_cast<int64_t>(w.values.wire_bytes()));
  self->request(st.ctx.workers[i], st.ctx.plan.timeout, compute_atom_v, std::move(w))
    .then([self, i](gradient& g) { on_gradient(self, i, g); },
          [self, i](caf::error& err) {
            auto& st = self->state;
            if (!st.settle(i))
              return;
            if (is_run_failure(err)) {
              fail_run(self, err);
              return;
            }
            drop_worker(self, i, describe(err));
            if (st.live_workers() == 0)
              fail_run(self, make_error(errc::no_workers_left, "every worker is gone"));
            else
              maybe_finish(self);
          });
}

protocol_actor::behavior_type async_sgd_behavior(async_pointer self, run_context ctx) {
  auto& st = self->state;
  st.init(std::move(ctx));
  st.w = st.ctx.initial;
  st.in_flight.assign(st.ctx.workers.size(), false);
  st.applied.assign(st.ctx.workers.size(), 0);
  st.bound = static_cast<int64_t>(st.ctx.plan.number("staleness_bound", -1));
  st.staleness_lr = st.ctx.plan.number("staleness_lr", 0) != 0;
  for (auto& worker : st.ctx.workers)
    self->monitor(worker);
  self->set_down_handler([self](caf::down_msg& dm) {
    auto& st = self->state;
    int i = st.index_of(dm.source);
    if (i >= 0 && drop_worker(self, static_cast<size_t>(i), "terminated: " + describe(dm.reason))) {
      st.settle(static_cast<size_t>(i));  // its request will never be answered
      if (st.live_workers() == 0)
        fail_run(self, make_error(errc::no_workers_left, "every worker is gone"));
      else
        maybe_finish(self);
    }
  });
  return {
    [self](run_atom) -> caf::result<run_summary> {
      if (self->state.tracker.running())
        return begin_run(self);
      auto result = begin_run(self);
      auto& st = self->state;
      if (st.bound >= 0)
        log_line(self, "bounded staleness " + std::to_string(st.bound)
                         + ": older gradients are dropped, workers never wait");
      for (size_t i = 0; i < st.ctx.workers.size(); ++i)
        ask(self, i);
      return result;
    },
    [self](stop_atom) {
      self->state.stopping = true;
      maybe_finish(self);
    },
  };
}

} // namespace

protocol_actor spawn_async_sgd(caf::actor_system& sys, run_context ctx) {
  return spawn_protocol(sys, async_sgd_behavior, std::move(ctx));
}

} // namespace chorus
