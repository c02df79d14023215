// The replica engine (replicas.hpp).
//
// Someone holds x_i for every worker i: the engine itself, or (workers in
// other processes) an agent beside worker i. Worker i's gradient at x_i
// becomes the new x_i through the rule's local_step and the proximal step
// for plan.reg. Two ways to loop:
//   synchronous:  every live worker computes at its x_i, each reply updates
//                 its x_i at once, and when the round is complete (the
//                 barrier) the rule communicates; one step = one round.
//   asynchronous: each worker loops request -> update -> request on its
//                 own; the rule communicates after every update; one step
//                 = one applied update.
// With agents, a request is "take one step" (the step size; the reply is the
// loss and samples), and every rule call that reads replicas first fetches
// the ones an agent holds (run_rule), then pushes what it changed; rule calls
// are serialized meanwhile. Asynchronous runs with agents take each step with
// the step size of when it was asked and the pull points the agent last got
// (one process: of when its gradient arrives).
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

std::vector<size_t> replica_state::live() const {
  std::vector<size_t> out;
  for (size_t i = 0; i < alive.size(); ++i)
    if (alive[i])
      out.push_back(i);
  return out;
}

std::vector<size_t> replica_rule::reads(const replica_state& st, int) const {
  return st.live();
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

std::string non_finite_text(size_t i, int64_t step) {
  return "worker " + std::to_string(i) + "'s model after step " + std::to_string(step)
         + " contains NaN or Inf (learning rate too large?)";
}

// One local step: out <- Prox(rule.local_step(x, g)). The error to fail the
// run with, or none. Shared by the engine and the agents, so both compute
// the same floats.
caf::error local_update(const replica_rule& rule, backend& be, const run_plan& plan, float eta,
                        size_t i, int64_t step, cview x, const gradient& g,
                        const std::vector<buffer>& pulls, view out) {
  if (g.values.size() != x.size)
    return make_error(errc::dimension_mismatch,
                      "worker " + std::to_string(i) + " sent " + std::to_string(g.values.size())
                        + " gradient values for " + std::to_string(x.size) + " weights");
  try {
    rule.local_step(be, eta, x, g.values, pulls, out);
    be.prox(plan.reg, eta, out);
  } catch (const std::exception& e) {
    return make_error(errc::compute_failed, e.what());
  }
  if (!be.all_finite(out))
    return make_error(errc::non_finite, non_finite_text(i, step));
  return caf::error{};
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

// Counts worker i's step (its loss and samples); its x_i has moved.
void count_step(replica_state& st, size_t i, float loss, int32_t samples) {
  st.tracker.add_work(samples, loss, 1);
  auto& window = st.losses[i];
  window.push_back(loss);
  while (window.size() > st.window)
    window.pop_front();
  ++st.updates[i];
}

// Worker i's gradient becomes its new x_i (the engine holds it). False if
// the run failed.
bool apply(replica_pointer self, size_t i, const gradient& g) {
  auto& st = self->state;
  count_step(st, i, g.loss, g.samples);
  mutable_buffer next(st.x[i].size());
  auto err = local_update(*st.rule, *st.be, st.ctx.plan, st.step_lr(), i, st.tracker.step(), st.x[i],
                          g, st.rule->pulls(st, i), next.span());
  if (err) {
    fail_run(self, err);
    return false;
  }
  st.x[i] = std::move(next).freeze();
  return true;
}

// -- agents: fetching and pushing replicas -------------------------------------------

void add_sent(replica_state& st, size_t i, int64_t bytes) {
  if (st.links[i])
    st.links[i]->sent += bytes;
}

// Calls next() once st.x[i] is agent i's current x_i for each live i that
// reads() names (fetching the stale ones; at once without agents). An agent
// that does not answer leaves its last known x_i (its loss comes through its
// monitor). reads() is asked again after a fetch: while one was out, newer
// reports may have changed what the rule will read (a few tries at most).
template <class Reads, class Next>
void with_replicas(replica_pointer self, Reads reads, Next next, int tries = 3) {
  auto& st = self->state;
  std::vector<size_t> stale;
  if (!st.agents.empty())
    for (size_t i : reads())
      if (i < st.x.size() && st.alive[i] && !st.fresh[i])
        stale.push_back(i);
  if (stale.empty() || tries == 0) {
    next();
    return;
  }
  auto left = std::make_shared<size_t>(stale.size());
  auto all_back = [self, left, reads, next, tries]() mutable {
    if (--*left == 0)
      with_replicas(self, reads, next, tries - 1);
  };
  for (size_t i : stale) {
    // Counted once: by the reply, the error, or the agent's loss (a request
    // to a killed process is answered only by its timeout).
    const auto id = st.fetches[i].add(all_back);
    auto done = [self, i, id] { self->state.fetches[i].call(id); };
    self->request(st.agents[i], st.ctx.plan.timeout, fetch_atom_v, st.updates[i])
      .then(
        [self, i, done](weights& w) mutable {
          auto& st = self->state;
          if (st.links[i])
            st.links[i]->received += static_cast<int64_t>(w.values.wire_bytes());
          // A fetch overtaken by a newer step of the agent is not its x_i now.
          if (w.step == st.updates[i] && w.values.size() == st.x[i].size()) {
            st.x[i] = st.be->adopt(w.values);
            st.told_x[i] = st.x[i];
            st.fresh[i] = true;
          }
          done();
        },
        [done](caf::error&) mutable { done(); });
  }
}

// Agent i is gone: its fetches still out count as answered.
void forget_fetches(replica_pointer self, size_t i) {
  // The table stays: its numbers keep counting, so no late reply of a
  // fetch counted here can match a later one.
  self->state.fetches[i].call_all();
}

auto every_live(replica_pointer self) {
  return [self] { return self->state.live(); };
}

bool same_buffers(const std::vector<buffer>& a, const std::vector<buffer>& b) {
  if (a.size() != b.size())
    return false;
  for (size_t k = 0; k < a.size(); ++k)
    if (a[k].data() != b[k].data() || a[k].size() != b[k].size())
      return false;
  return true;
}

// Sends each live agent what a rule call changed: its x_i, its pulls.
void push_changes(replica_pointer self) {
  auto& st = self->state;
  for (size_t i = 0; i < st.agents.size(); ++i) {
    if (!st.alive[i])
      continue;
    replica_sync s;
    s.step = st.updates[i];
    bool any = false;
    if (st.x[i].data() != st.told_x[i].data()) {
      s.x = st.x[i];
      st.told_x[i] = st.x[i];
      add_sent(st, i, static_cast<int64_t>(s.x.wire_bytes()));
      any = true;
    }
    auto pulls = st.rule->pulls(st, i);
    if (!same_buffers(pulls, st.told_pulls[i])) {
      for (auto& p : pulls)
        add_sent(st, i, static_cast<int64_t>(p.wire_bytes()));
      st.told_pulls[i] = pulls;
      s.pulls = std::move(pulls);
      s.new_pulls = true;
      any = true;
    }
    if (any)
      caf::anon_send(st.agents[i], apply_atom_v, std::move(s));  // in order with the requests
  }
}

// Runs a rule call that reads the replicas reads() names: fetches them from
// the agents first, then pushes what it changed, then calls next(). Rule
// calls run one at a time, in the order they were made. Without agents
// (and nothing queued) all of it happens at once. An exception from the
// rule fails the run.
template <class Reads, class Action, class Next>
void run_rule(replica_pointer self, Reads reads, Action action, Next next) {
  auto& st = self->state;
  if (st.rule_busy) {
    st.rule_waiting.push_back([self, reads, action, next] { run_rule(self, reads, action, next); });
    return;
  }
  st.rule_busy = true;
  with_replicas(self, reads, [self, action, next]() mutable {
    auto& st = self->state;
    st.rule_busy = false;
    if (!st.tracker.running())
      return;
    try {
      action();
    } catch (const std::exception& e) {
      fail_run(self, make_error(errc::compute_failed, e.what()));
      return;
    }
    if (!st.agents.empty())
      push_changes(self);
    next();
    if (!st.rule_busy && !st.rule_waiting.empty()) {
      auto queued = std::move(st.rule_waiting.front());
      st.rule_waiting.pop_front();
      queued();
    }
  });
}

// Scores rule.output() with every live replica at hand, then `next`.
template <class Next>
void evaluate_replicas(replica_pointer self, Next next, bool pauses_training) {
  with_replicas(self, every_live(self), [self, next, pauses_training] {
    auto& st = self->state;
    if (st.tracker.running())
      evaluate(self, st.rule->output(st), metrics_of(st), next, pauses_training);
  });
}

// -- the loop ---------------------------------------------------------------------------

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
    evaluate_replicas(
      self,
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

// The communication point after worker i's update (-1: after a round).
void communicate(replica_pointer self, int i) {
  run_rule(
    self, [self, i] { return self->state.rule->reads(self->state, i); },
    [self, i] { self->state.rule->communicate(self->state, i); },
    [self, i] { after_step(self, i < 0 ? 0 : static_cast<size_t>(i)); });
}

void round_done(replica_pointer self) {
  self->state.tracker.step_done();
  communicate(self, -1);
}

// Worker i's step is done (its gradient applied, here or by its agent).
void step_done(replica_pointer self, size_t i) {
  auto& st = self->state;
  if (st.async) {
    st.tracker.step_done();
    communicate(self, static_cast<int>(i));
  } else if (--st.pending == 0) {
    round_done(self);
  }
}

// A late reply after an asynchronous run's end was decided: not applied.
bool late(replica_pointer self) {
  if (self->state.async && self->state.stopping) {
    maybe_finish(self);
    return true;
  }
  return false;
}

void on_gradient(replica_pointer self, size_t i, gradient& g) {
  auto& st = self->state;
  if (!settle(st, i) || !st.tracker.running() || late(self))
    return;
  if (apply(self, i, g))
    step_done(self, i);
}

// Agent i took its step: only the loss and samples came back.
void on_agent_step(replica_pointer self, size_t i, const gradient& report) {
  auto& st = self->state;
  if (!settle(st, i) || !st.tracker.running() || late(self))
    return;
  count_step(st, i, report.loss, report.samples);
  st.fresh[i] = false;
  step_done(self, i);
}

// Gives up on worker i; the run goes on with the others.
void lose(replica_pointer self, size_t i, const std::string& why) {
  auto& st = self->state;
  if (!st.tracker.running() || !drop_worker(self, i, why))
    return;
  const bool was_asked = settle(st, i);
  if (i < st.agents.size()) {
    self->send_exit(st.agents[i], caf::exit_reason::user_shutdown);
    forget_fetches(self, i);
  }
  if (st.live_workers() == 0) {
    fail_run(self, make_error(errc::no_workers_left, "every worker is gone"));
    return;
  }
  run_rule(
    self, every_live(self), [self, i] { self->state.rule->lost(self->state, i); },
    [self, was_asked] {
      auto& st = self->state;
      if (!st.async && was_asked && --st.pending == 0)
        round_done(self);
      else
        maybe_finish(self);
    });
}

// Worker i's request failed (or its deadline passed: deadlines.hpp).
void on_ask_error(replica_pointer self, size_t i, const caf::error& err) {
  auto& st = self->state;
  if (ended_before_asked(err))
    return;  // the down handler drops it, saying why
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
  auto failed = [self, i](caf::error& err) { on_ask_error(self, i, err); };
  if (!st.agents.empty()) {
    // The agent asks its worker and takes the step beside it.
    self->request(st.agents[i], caf::infinite, local_atom_v, local_plan{1, st.step_lr(), st.ctx.plan.reg, {}})
      .then([self, i](gradient& report) { on_agent_step(self, i, report); }, failed);
    return;
  }
  self
    ->request(st.ctx.workers[i], caf::infinite, compute_atom_v,
              weights{-1, st.tracker.step(), st.x[i]})
    .then([self, i](gradient& g) { on_gradient(self, i, g); }, failed);
}

void start_round(replica_pointer self) {
  auto& st = self->state;
  st.pending = 0;
  for (size_t i = 0; i < st.ctx.workers.size(); ++i)
    ask(self, i);
}

// Ends the run once the end was decided and nothing it needs is pending
// (the evaluation; a rule call; in a synchronous run, the current round).
// Asynchronous requests still out are not waited for: a straggler must not
// hold the end of the run hostage.
void maybe_finish(replica_pointer self) {
  auto& st = self->state;
  if (!st.stopping || st.eval_in_flight || st.rule_busy || st.finishing || !st.tracker.running())
    return;
  if (!st.async && st.pending > 0)
    return;
  if (st.tracker.eval_due()) {
    st.eval_in_flight = true;
    evaluate_replicas(
      self,
      [self] {
        self->state.eval_in_flight = false;
        maybe_finish(self);
      },
      /*pauses_training=*/true);
    return;
  }
  st.finishing = true;
  with_replicas(self, every_live(self), [self] {
    auto& st = self->state;
    for (auto& [key, value] : metrics_of(st))
      st.tracker.summary_extra()[key] = value;
    finish_run(self, st.rule->output(st), st.tracker.budget_spent() ? "budget" : "stopped");
  });
}

void start(replica_pointer self) {
  auto& st = self->state;
  if (st.async)
    for (size_t i = 0; i < st.ctx.workers.size(); ++i)
      ask(self, i);
  else
    start_round(self);
}

// The first evaluation (if the schedule has them), then the loop.
void begin_training(replica_pointer self) {
  auto& st = self->state;
  if (st.ctx.plan.eval_every > 0 || st.ctx.plan.eval_every_samples > 0) {
    st.eval_in_flight = true;
    evaluate_replicas(
      self,
      [self] {
        self->state.eval_in_flight = false;
        if (self->state.stopping)
          maybe_finish(self);
        else
          start(self);
      },
      /*pauses_training=*/true);
  } else {
    start(self);
  }
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
    auto& st = self->state;
    int i = st.index_of(dm.source);
    for (size_t k = 0; i < 0 && k < st.agents.size(); ++k)
      if (st.agents[k].address() == dm.source)
        i = static_cast<int>(k);
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
      if (!st.ctx.beside) {
        begin_training(self);
        return result;
      }
      // Workers in other processes: an agent beside each holds its x_i.
      spawn_all_beside(
        self, caf::actor_cast<caf::actor>(self), [](int32_t) { return caf::actor{}; },
        [self](std::vector<caf::actor> agents) {
          auto& st = self->state;
          const size_t n = agents.size();
          st.fresh.assign(n, true);
          st.told_x = st.x;
          st.told_pulls.assign(n, {});
          for (size_t i = 0; i < n; ++i) {
            st.links.push_back(st.ctx.beside(static_cast<int32_t>(i)).link);
            self->monitor(agents[i]);
          }
          st.agents = std::move(agents);
          log_line(self, "replicas: " + std::to_string(n) + " agents beside their workers hold x_i");
          push_changes(self);  // the initial pull points
          begin_training(self);
        });
      return result;
    },
    [self](stop_atom) {
      self->state.stopping = true;
      maybe_finish(self);
    },
  };
}

// -- the agent beside a worker ---------------------------------------------------------

struct agent_state {
  static inline const char* name = "chorus.replica_agent";
  run_context ctx;
  std::shared_ptr<const replica_rule> rule;
  std::unique_ptr<backend> be;
  int32_t rank = 0;
  worker_actor worker;
  buffer x;                   // x_i
  std::vector<buffer> pulls;  // what its local steps pull toward
  int64_t updates = 0;        // steps applied to x_i
};

caf::behavior replica_agent(caf::stateful_actor<agent_state>* self, run_context ctx,
                            std::shared_ptr<const replica_rule> rule, int32_t rank,
                            const caf::actor& engine) {
  // It serves one engine: when that one ends (or its process is gone), so
  // does the agent.
  if (engine) {
    self->monitor(engine);
    self->set_down_handler([self](caf::down_msg& dm) { self->quit(dm.reason); });
  }
  auto& st = self->state;
  st.ctx = std::move(ctx);
  st.rule = std::move(rule);
  st.be = make_backend(st.ctx.backend, st.ctx.device);
  st.rank = rank;
  st.worker = st.ctx.workers[static_cast<size_t>(rank)];
  st.x = st.be->adopt(st.ctx.initial);
  return {
    [self](local_atom, local_plan& p) -> caf::result<gradient> {
      auto& st = self->state;
      auto answer = self->make_response_promise<gradient>();
      const buffer x = st.x;
      self->request(st.worker, caf::infinite, compute_atom_v, weights{st.rank, st.updates, x})
        .then(
          [self, answer, x, lr = p.lr](gradient& g) mutable {
            auto& st = self->state;
            mutable_buffer next(x.size());
            auto err = local_update(*st.rule, *st.be, st.ctx.plan, lr, static_cast<size_t>(st.rank),
                                    st.updates, x, g, st.pulls, next.span());
            if (err) {
              answer.deliver(std::move(err));
              return;
            }
            st.x = std::move(next).freeze();
            ++st.updates;
            answer.deliver(gradient{st.rank, st.updates, {}, g.loss, g.samples, false});
          },
          [answer](caf::error& err) mutable { answer.deliver(std::move(err)); });
      return answer;
    },
    [self](fetch_atom, int64_t) {
      auto& st = self->state;
      return weights{st.rank, st.updates, st.x, false};
    },
    [self](apply_atom, replica_sync& s) {
      auto& st = self->state;
      if (!s.x.empty())
        st.x = st.be->adopt(s.x);
      if (s.new_pulls) {
        st.pulls.clear();
        for (auto& p : s.pulls)
          st.pulls.push_back(st.be->adopt(p));
      }
    },
  };
}

} // namespace

caf::actor spawn_replica_agent(caf::actor_system& sys, run_context ctx,
                               std::shared_ptr<const replica_rule> rule, int32_t rank,
                               const caf::actor& engine) {
  CHORUS_ASSERT(rule != nullptr, "a replica agent needs a rule");
  if (rank < 0 || static_cast<size_t>(rank) >= ctx.workers.size() || !ctx.workers[static_cast<size_t>(rank)])
    throw std::invalid_argument("replica agent " + std::to_string(rank) + ": no such worker here");
  return sys.spawn(replica_agent, std::move(ctx), std::move(rule), rank, engine);
}

protocol_actor spawn_replica_protocol(caf::actor_system& sys, run_context ctx,
                                      std::shared_ptr<replica_rule> rule, bool async,
                                      size_t window) {
  CHORUS_ASSERT(rule != nullptr, "a replica protocol needs a rule");
  if (ctx.workers.empty())
    throw std::invalid_argument("a replica protocol needs at least one worker");
  return sys.spawn(replica_behavior, std::move(ctx), std::move(rule), async, window);
}

} // namespace chorus
