// The asynchronous parameter server (see async_server.hpp for what it does).
//
// Per worker: ask (w out, in_flight) -> on_gradient (settle, the rule's
// accept and apply, bookkeeping) -> ask again, until the budget is spent or
// a stop is asked. Evaluations score a snapshot of w (buffers are immutable)
// without pausing the workers. A worker that dies (down message, timeout,
// unreachable) is dropped and the others go on; which errors fail the run
// instead is is_run_failure's decision (messages/errors.hpp).
#include "engines/async_server.hpp"

#include <algorithm>
#include <map>
#include <stdexcept>

#include "engines/compressors.hpp"
#include "gpu/assert.hpp"

namespace chorus {

namespace {

struct async_state : protocol_state {
  static inline const char* name = "chorus.async_server";
  async_rule rule;
  buffer w;
  bool eval_in_flight = false;
  bool stopping = false;    // budget spent or stop asked: hand out no more work
  int64_t dropped = 0;
  double staleness_sum = 0;
  int64_t max_staleness = 0;
  std::map<int64_t, int64_t> histogram;
  std::vector<bool> in_flight;  // per worker: a request is out
  std::vector<int64_t> applied;  // per worker: updates applied from it
  std::vector<bool> parked;      // per worker: its gradient waits in the rule's window

  // Marks worker i's request as answered (or never to be); false if it was
  // already settled (a down message and an error reply can both arrive).
  bool settle(size_t i) {
    if (!in_flight[i])
      return false;
    in_flight[i] = false;
    deadlines.clear(i);
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
    if (rule.metrics)
      for (auto& [k, v] : rule.metrics())
        m[k] = v;
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

// The rule's update of w with a gradient `tau` updates stale; false if the
// run failed.
bool apply(async_pointer self, size_t i, const gradient& g, int64_t tau) {
  auto& st = self->state;
  // The new weights are written straight into a new block of the server's
  // memory; a gradient in other memory is adopted first.
  auto next = st.be->allocate(st.w.size());
  try {
    st.rule.apply(*st.be, st.w, st.be->adopt(g.values), tau, st.tracker.step(), next.span());
  } catch (const std::exception& e) {
    fail_run(self, make_error(errc::compute_failed, e.what()));
    return false;
  }
  if (!st.be->all_finite(next.span())) {
    fail_run(self, make_error(errc::non_finite, "weights after step "
                                                  + std::to_string(st.tracker.step())
                                                  + " contain NaN or Inf (learning rate too large?)"));
    return false;
  }
  st.w = std::move(next).freeze();
  st.tracker.step_done();
  ++st.histogram[tau];
  st.staleness_sum += static_cast<double>(tau);
  st.max_staleness = std::max(st.max_staleness, tau);
  ++st.applied[i];
  return true;
}

// A window closed: every worker that waited on it gets fresh weights.
void unpark(async_pointer self) {
  auto& st = self->state;
  for (size_t j = 0; j < st.parked.size(); ++j)
    if (st.parked[j]) {
      st.parked[j] = false;
      if (!st.stopping)
        ask(self, j);
    }
}

// When every live worker waits on the rule's window and none is computing
// (workers died, so fewer than a window's worth are left), the window is
// closed with what it holds. False if the run failed.
bool flush_if_stuck(async_pointer self) {
  auto& st = self->state;
  if (!st.rule.flush || st.stopping)
    return true;
  for (size_t j = 0; j < st.alive.size(); ++j)
    if (st.alive[j] && !st.parked[j])
      return true;
  buffer closed;
  try {
    closed = st.rule.flush(st.w.size());
  } catch (const std::exception& e) {
    fail_run(self, make_error(errc::compute_failed, e.what()));
    return false;
  }
  if (!closed.empty()) {
    size_t any = 0;
    if (!apply(self, any, gradient{-1, st.tracker.step(), std::move(closed), 0, 0}, 0))
      return false;
    --st.applied[any];  // an update of the window, not of worker 0
  }
  unpark(self);
  return true;
}

void on_gradient(async_pointer self, size_t i, gradient& g) {
  auto& st = self->state;
  if (!st.settle(i))
    return;
  st.tracker.add_bytes(static_cast<int64_t>(g.values.wire_bytes()));
  if (g.encoded) {
    // Decoded on arrival, even when stopping: an ef21 receiver must apply
    // every payload its sender applied.
    try {
      g.values = st.rule.decode ? st.rule.decode(i, g.values, st.w.size())
                                : chorus::decode(g.values, st.w.size());
      g.encoded = false;
    } catch (const std::exception& e) {
      log_line(self, "worker " + std::to_string(i) + ": gradient set aside at step "
                       + std::to_string(st.tracker.step()) + ": " + e.what());
      if (!st.stopping)
        ask(self, i);
      maybe_finish(self);
      return;
    }
  }
  if (st.stopping) {
    maybe_finish(self);
    return;
  }
  const int64_t tau = st.tracker.step() - g.step;
  st.tracker.add_work(g.samples, g.loss, 1);
  if (st.rule.accept && !st.rule.accept(tau)) {
    ++st.dropped;
  } else if (st.rule.gather) {
    buffer closed;
    try {
      closed = st.rule.gather(static_cast<int32_t>(i), g.values, st.w.size());
    } catch (const std::exception& e) {
      fail_run(self, make_error(errc::compute_failed, e.what()));
      return;
    }
    if (st.rule.take_log)
      for (auto& line : st.rule.take_log())
        log_line(self, std::move(line));
    if (closed.empty()) {
      st.parked[i] = true;
    } else {
      if (!apply(self, i, gradient{-1, g.step, std::move(closed), 0, 0}, tau))
        return;
      unpark(self);
    }
  } else if (!apply(self, i, g, tau)) {
    return;
  }
  if (st.tracker.budget_spent())
    st.stopping = true;
  if (!st.stopping && !st.parked[i])
    ask(self, i);
  if (!flush_if_stuck(self))
    return;
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

// Gives up on worker i; the run goes on with the others.
void lose(async_pointer self, size_t i, const std::string& why) {
  auto& st = self->state;
  if (!drop_worker(self, i, why))
    return;
  st.parked[i] = false;
  if (st.live_workers() == 0)
    fail_run(self, make_error(errc::no_workers_left, "every worker is gone"));
  else if (flush_if_stuck(self))
    maybe_finish(self);
}

// Worker i's request failed (or its deadline passed: deadlines.hpp).
void on_ask_error(async_pointer self, size_t i, const caf::error& err) {
  auto& st = self->state;
  if (ended_before_asked(err))
    return;  // the down handler drops it, saying why
  if (st.rule.reject_non_finite && st.in_flight[i] && err.category() == errc_category
      && err.code() == static_cast<uint8_t>(errc::non_finite)) {
    log_line(self, "worker " + std::to_string(i) + " rejected at step "
                     + std::to_string(st.tracker.step()) + ": " + describe(err));
    gradient rejected{static_cast<int32_t>(i), st.tracker.step(), buffer{}, 0, 0};
    on_gradient(self, i, rejected);
    return;
  }
  if (!st.settle(i))
    return;
  if (is_run_failure(err))
    fail_run(self, err);
  else
    lose(self, i, describe(err));
}

void ask(async_pointer self, size_t i) {
  auto& st = self->state;
  if (!st.alive[i] || st.in_flight[i])
    return;
  st.in_flight[i] = true;
  weights w{-1, st.tracker.step(), st.w};
  st.tracker.add_bytes(static_cast<int64_t>(w.values.wire_bytes()));
  // Untimed: the deadline stands for the timeout (engines/deadlines.hpp).
  st.deadlines.expect(i, self->clock().now(), st.ctx.plan.timeout);
  self->request(st.ctx.workers[i], caf::infinite, compute_atom_v, std::move(w))
    .then([self, i](gradient& g) { on_gradient(self, i, g); },
          [self, i](caf::error& err) { on_ask_error(self, i, err); });
}

protocol_actor::behavior_type async_server_behavior(async_pointer self, run_context ctx,
                                                     async_rule rule) {
  auto& st = self->state;
  st.init(std::move(ctx));
  st.rule = std::move(rule);
  st.w = st.ctx.initial;
  st.in_flight.assign(st.ctx.workers.size(), false);
  st.applied.assign(st.ctx.workers.size(), 0);
  st.parked.assign(st.ctx.workers.size(), false);
  for (auto& worker : st.ctx.workers)
    self->monitor(worker);
  self->set_down_handler([self](caf::down_msg& dm) {
    auto& st = self->state;
    int i = st.index_of(dm.source);
    if (i < 0 || !st.alive[static_cast<size_t>(i)])
      return;
    st.settle(static_cast<size_t>(i));  // its request will never be answered
    lose(self, static_cast<size_t>(i), "terminated: " + describe(dm.reason));
  });
  return {
    [self](run_atom) -> caf::result<run_summary> {
      if (self->state.tracker.running())
        return begin_run(self);  // the "already running" error
      auto result = begin_run(self);
      auto& st = self->state;
      if (!st.rule.note.empty())
        log_line(self, st.rule.note);
      watch_deadlines(self, tick_period(st.ctx.plan.timeout), [self](size_t i) {
        on_ask_error(self, i, caf::make_error(caf::sec::request_timeout));
      });
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

protocol_actor spawn_async_server(caf::actor_system& sys, run_context ctx, async_rule rule) {
  CHORUS_ASSERT(static_cast<bool>(rule.apply), "an asynchronous protocol needs an update rule");
  return spawn_protocol(sys, async_server_behavior, std::move(ctx), std::move(rule));
}

} // namespace chorus
