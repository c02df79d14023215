// The replica engine (replicas.hpp).
//
// The engine holds x_i for every worker i and asks worker i for the
// gradient at x_i. The rule turns that gradient into the new x_i, then the
// proximal step for plan.reg is applied. Two ways to loop:
//   synchronous:  every live worker computes at its x_i, each reply updates
//                 its x_i at once, and when the round is complete (the
//                 barrier) the rule communicates; one step = one round.
//   asynchronous: each worker loops request -> update -> request on its
//                 own; the rule communicates after every update; one step
//                 = one applied update (one worker's mini-batch).
// A worker that dies (down message, timeout, unreachable) is dropped, the
// rule is told, and the others go on; which errors fail the run instead is
// is_run_failure's decision (messages/errors.hpp). Evaluations score
// rule.output(), a snapshot (buffers are immutable); synchronous runs wait
// for them, asynchronous runs do not. Every row also gets workers_alive and,
// when asynchronous, updates_min / updates_max over the live workers.
#include "engines/replicas.hpp"

#include <algorithm>
#include <limits>
#include <stdexcept>

#include "gpu/assert.hpp"

namespace chorus {

// -- replica_state --------------------------------------------------------------------

std::vector<double> replica_state::recent_losses() const {
  std::vector<double> out;
  for (auto& window_i : losses) {
    double sum = 0;
    for (double l : window_i)
      sum += l;
    out.push_back(window_i.empty() ? std::numeric_limits<double>::infinity()
                                   : sum / static_cast<double>(window_i.size()));
  }
  return out;
}

double replica_state::mean_distance_to(cview y) const {
  double sum = 0;
  size_t n = 0;
  for (size_t i = 0; i < x.size(); ++i)
    if (alive[i]) {
      sum += be->squared_distance(x[i], y);
      ++n;
    }
  return n > 0 ? sum / static_cast<double>(n) : 0.0;
}

// -- the engine -----------------------------------------------------------------------

namespace {

using replica_pointer = protocol_actor::stateful_pointer<replica_state>;

void ask(replica_pointer self, size_t i);
void start_round(replica_pointer self);
void maybe_finish(replica_pointer self);

std::map<std::string, double> metrics_of(replica_state& st) {
  auto m = st.rule->metrics(st);
  m["workers_alive"] = static_cast<double>(st.live_workers());
  if (st.async) {
    // How evenly the live workers share the updates (stragglers show here).
    int64_t lo = -1, hi = 0;
    for (size_t i = 0; i < st.updates.size(); ++i)
      if (st.alive[i]) {
        lo = lo < 0 ? st.updates[i] : std::min(lo, st.updates[i]);
        hi = std::max(hi, st.updates[i]);
      }
    m["updates_min"] = static_cast<double>(std::max<int64_t>(lo, 0));
    m["updates_max"] = static_cast<double>(hi);
  }
  return m;
}

// Marks worker i's request as answered (or never to be); false if it was
// already settled (a down message and an error reply can both arrive).
bool settle(replica_state& st, size_t i) {
  if (!st.in_flight[i])
    return false;
  st.in_flight[i] = false;
  st.deadlines.clear(i);
  return true;
}

// Worker i's gradient becomes its new x_i. False if the run failed.
bool apply(replica_pointer self, size_t i, const gradient& g) {
  auto& st = self->state;
  st.tracker.add_work(g.samples, g.loss, 1);
  auto& window = st.losses[i];
  window.push_back(g.loss);
  while (window.size() > st.window)
    window.pop_front();
  if (g.values.size() != st.x[i].size()) {
    fail_run(self, make_error(errc::dimension_mismatch,
                              "worker " + std::to_string(i) + " sent " + std::to_string(g.values.size())
                                + " gradient values for " + std::to_string(st.x[i].size())
                                + " weights"));
    return false;
  }
  mutable_buffer next(st.x[i].size());
  try {
    st.rule->local_step(st, i, g, next.span());
    st.be->prox(st.ctx.plan.reg, st.step_lr(), next.span());
  } catch (const std::exception& e) {
    fail_run(self, make_error(errc::compute_failed, e.what()));
    return false;
  }
  if (!st.be->all_finite(next.span())) {
    fail_run(self, make_error(errc::non_finite, "worker " + std::to_string(i) + "'s model after step "
                                                  + std::to_string(st.tracker.step())
                                                  + " contains NaN or Inf (learning rate too large?)"));
    return false;
  }
  st.x[i] = std::move(next).freeze();
  ++st.updates[i];
  return true;
}

// Calls the rule's communication point; false if it threw (the run failed).
bool communicate(replica_pointer self, int i) {
  try {
    self->state.rule->communicate(self->state, i);
    return true;
  } catch (const std::exception& e) {
    fail_run(self, make_error(errc::compute_failed, e.what()));
    return false;
  }
}

// Goes on after a step: worker i's next request (asynchronous) or the next
// round (synchronous), an evaluation when one is due, or the end.
void after_step(replica_pointer self, size_t i) {
  auto& st = self->state;
  if (st.tracker.budget_spent())
    st.stopping = true;
  auto go_on = [self, i] {
    auto& st = self->state;
    if (st.stopping)
      return;
    if (st.async)
      ask(self, i);
    else
      start_round(self);
  };
  if (!st.stopping && !st.eval_in_flight && st.tracker.eval_due()) {
    st.eval_in_flight = true;
    if (st.async)
      go_on();  // the workers keep going while the snapshot is scored
    evaluate(
      self, st.rule->output(st), metrics_of(st),
      [self, go_on] {
        self->state.eval_in_flight = false;
        if (!self->state.async)
          go_on();
        maybe_finish(self);
      },
      /*pauses_training=*/!st.async);
    return;
  }
  go_on();
  maybe_finish(self);
}

void round_done(replica_pointer self) {
  auto& st = self->state;
  st.tracker.step_done();
  if (communicate(self, -1))
    after_step(self, 0);
}

void on_gradient(replica_pointer self, size_t i, gradient& g) {
  auto& st = self->state;
  if (!settle(st, i) || !st.tracker.running())
    return;
  if (st.async && st.stopping) {
    // A late reply after the end was decided: not applied.
    maybe_finish(self);
    return;
  }
  if (!apply(self, i, g))
    return;
  if (st.async) {
    st.tracker.step_done();
    if (communicate(self, static_cast<int>(i)))
      after_step(self, i);
  } else if (--st.pending == 0) {
    round_done(self);
  }
}

// Gives up on worker i; the run goes on with the others.
void lose(replica_pointer self, size_t i, const std::string& why) {
  auto& st = self->state;
  if (!st.tracker.running() || !drop_worker(self, i, why))
    return;
  const bool was_asked = settle(st, i);
  if (st.live_workers() == 0) {
    fail_run(self, make_error(errc::no_workers_left, "every worker is gone"));
    return;
  }
  st.rule->lost(st, i);
  if (!st.async && was_asked && --st.pending == 0)
    round_done(self);
  else
    maybe_finish(self);
}

// Worker i's request failed (or its deadline passed: deadlines.hpp).
void on_ask_error(replica_pointer self, size_t i, const caf::error& err) {
  auto& st = self->state;
  if (is_run_failure(err)) {
    if (settle(st, i))
      fail_run(self, err);
    return;
  }
  lose(self, i, describe(err));
}

void ask(replica_pointer self, size_t i) {
  auto& st = self->state;
  if (!st.alive[i] || st.in_flight[i])
    return;
  st.in_flight[i] = true;
  if (!st.async)
    ++st.pending;
  // Untimed: the deadline stands for the timeout (engines/deadlines.hpp).
  st.deadlines.expect(i, self->clock().now(), st.ctx.plan.timeout);
  self
    ->request(st.ctx.workers[i], caf::infinite, compute_atom_v,
              weights{-1, st.tracker.step(), st.x[i]})
    .then([self, i](gradient& g) { on_gradient(self, i, g); },
          [self, i](caf::error& err) { on_ask_error(self, i, err); });
}

void start_round(replica_pointer self) {
  auto& st = self->state;
  st.pending = 0;
  for (size_t i = 0; i < st.ctx.workers.size(); ++i)
    ask(self, i);
}

// Ends the run once the end was decided and nothing it needs is pending
// (the evaluation; in a synchronous run, the current round). Asynchronous
// requests still out are not waited for: a straggler must not hold the end
// of the run hostage.
void maybe_finish(replica_pointer self) {
  auto& st = self->state;
  if (!st.stopping || st.eval_in_flight || !st.tracker.running())
    return;
  if (!st.async && st.pending > 0)
    return;
  if (st.tracker.eval_due()) {
    st.eval_in_flight = true;
    evaluate(self, st.rule->output(st), metrics_of(st), [self] {
      self->state.eval_in_flight = false;
      maybe_finish(self);
    });
    return;
  }
  for (auto& [key, value] : metrics_of(st))
    st.tracker.summary_extra()[key] = value;
  finish_run(self, st.rule->output(st), st.tracker.budget_spent() ? "budget" : "stopped");
}

void start(replica_pointer self) {
  auto& st = self->state;
  if (st.async)
    for (size_t i = 0; i < st.ctx.workers.size(); ++i)
      ask(self, i);
  else
    start_round(self);
}

protocol_actor::behavior_type replica_behavior(replica_pointer self, run_context ctx,
                                               std::shared_ptr<replica_rule> rule, bool async,
                                               size_t window) {
  auto& st = self->state;
  st.init(std::move(ctx));
  st.rule = std::move(rule);
  st.async = async;
  st.window = std::max<size_t>(1, window);
  const size_t n = st.ctx.workers.size();
  st.x.assign(n, st.ctx.initial);  // shared handles: no copy until a worker moves
  st.updates.assign(n, 0);
  st.losses.assign(n, {});
  st.in_flight.assign(n, false);
  st.log = [self](std::string line) { log_line(self, std::move(line)); };
  for (auto& worker : st.ctx.workers)
    self->monitor(worker);
  self->set_down_handler([self](caf::down_msg& dm) {
    int i = self->state.index_of(dm.source);
    if (i >= 0)
      lose(self, static_cast<size_t>(i), "terminated: " + describe(dm.reason));
  });
  return {
    [self](run_atom) -> caf::result<run_summary> {
      if (self->state.tracker.running())
        return begin_run(self);  // the "already running" error
      auto result = begin_run(self);
      auto& st = self->state;
      watch_deadlines(self, tick_period(st.ctx.plan.timeout), [self](size_t i) {
        on_ask_error(self, i, caf::make_error(caf::sec::request_timeout));
      });
      st.rule->start(st);
      if (st.ctx.plan.eval_every > 0 || st.ctx.plan.eval_every_samples > 0) {
        st.eval_in_flight = true;
        evaluate(self, st.rule->output(st), metrics_of(st), [self] {
          self->state.eval_in_flight = false;
          if (self->state.stopping)
            maybe_finish(self);
          else
            start(self);
        });
      } else {
        start(self);
      }
      return result;
    },
    [self](stop_atom) {
      self->state.stopping = true;
      maybe_finish(self);
    },
  };
}

} // namespace

protocol_actor spawn_replica_protocol(caf::actor_system& sys, run_context ctx,
                                      std::shared_ptr<replica_rule> rule, bool async,
                                      size_t window) {
  CHORUS_ASSERT(rule != nullptr, "a replica protocol needs a rule");
  if (ctx.workers.empty())
    throw std::invalid_argument("a replica protocol needs at least one worker");
  return sys.spawn(replica_behavior, std::move(ctx), std::move(rule), async, window);
}

} // namespace chorus
