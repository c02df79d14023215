// The synchronous round server (see server.hpp for what it does and why).
//
// Round lifecycle:  start_round -> (ask every live worker) -> on_reply/on_lost
// until nothing is pending -> end_round (rule.combine) -> maybe evaluate ->
// start_round ... -> finish. A round id tags every request so a reply from a
// worker that was already given up on is ignored rather than miscounted.
#include "actors/server.hpp"

#include <cmath>
#include <limits>
#include <optional>

#include <caf/all.hpp>

namespace chorus {

namespace {

using clock_type = std::chrono::steady_clock;

struct server_state {
  static inline const char* name = "chorus.server";

  run_context ctx;
  round_rule rule;
  std::unique_ptr<backend> be = make_eigen_backend();
  std::vector<bool> alive;
  buffer w;
  int64_t step = 0;
  int64_t samples = 0;
  int64_t bytes = 0;
  int32_t lost = 0;
  double loss_sum = 0;
  int64_t loss_count = 0;
  double last_train_loss = std::numeric_limits<double>::quiet_NaN();
  int64_t last_eval_step = -1;
  // The round in flight.
  int64_t round_id = 0;
  size_t pending = 0;
  std::vector<bool> awaiting;
  std::vector<std::optional<round_reply>> replies;
  // Time and outcome.
  clock_type::time_point t0;
  double eval_s = 0;
  bool running = false;
  bool stop_requested = false;
  caf::typed_response_promise<run_summary> promise;
  run_summary summary;

  double wall() const {
    return std::chrono::duration<double>(clock_type::now() - t0).count();
  }
  double epoch() const {
    return static_cast<double>(samples) / static_cast<double>(std::max<int64_t>(1, ctx.plan.train_size));
  }
  size_t live_workers() const {
    size_t n = 0;
    for (bool a : alive)
      n += a ? 1 : 0;
    return n;
  }
};

using server_pointer = protocol_actor::stateful_pointer<server_state>;

void start_round(server_pointer self);
void evaluate(server_pointer self);

void log(server_pointer self, std::string line) {
  self->send(self->state.ctx.monitor, log_atom_v, std::move(line));
}

void finish(server_pointer self, std::string reason) {
  auto& st = self->state;
  auto& s = st.summary;
  s.algorithm = st.ctx.plan.algorithm;
  s.steps = st.step;
  s.epochs = st.epoch();
  s.wall_s = st.wall();
  s.eval_s = st.eval_s;
  s.samples = st.samples;
  s.bytes_sent = st.bytes;
  s.workers_lost = st.lost;
  s.stop_reason = std::move(reason);
  s.final_weights = st.w;
  st.running = false;
  st.promise.deliver(s);
  self->quit();
}

void fail(server_pointer self, const caf::error& err) {
  auto& st = self->state;
  log(self, "run failed at step " + std::to_string(st.step) + ": " + describe(err));
  st.running = false;
  st.promise.deliver(err);
  self->quit(err);
}

// A worker is given up on: it died (down message), timed out, or became
// unreachable. The run goes on with the others while any are left.
void drop_worker(server_pointer self, size_t i, const std::string& why) {
  auto& st = self->state;
  if (!st.alive[i])
    return;
  st.alive[i] = false;
  ++st.lost;
  log(self, "worker " + std::to_string(i) + " lost at step " + std::to_string(st.step) + " ("
              + why + "); going on with " + std::to_string(st.live_workers()) + " worker(s)");
}

void end_round(server_pointer self) {
  auto& st = self->state;
  std::vector<round_reply> replies;
  replies.reserve(st.replies.size());
  for (auto& r : st.replies)
    if (r)
      replies.push_back(std::move(*r));
  if (replies.empty()) {
    fail(self, make_error(errc::no_workers_left,
                          "every worker is gone at step " + std::to_string(st.step)));
    return;
  }
  try {
    st.w = st.rule.combine(*st.be, st.w, replies, st.ctx.plan);
  } catch (const std::exception& e) {
    fail(self, make_error(errc::compute_failed, e.what()));
    return;
  }
  if (!st.be->all_finite(st.w.span())) {
    fail(self, make_error(errc::non_finite, "weights after step " + std::to_string(st.step)
                                              + " contain NaN or Inf (learning rate too large?)"));
    return;
  }
  ++st.step;
  const auto& plan = st.ctx.plan;
  bool eval_due = (plan.eval_every > 0 && st.step % plan.eval_every == 0) || st.step >= plan.steps
                  || st.stop_requested;
  if (eval_due)
    evaluate(self);
  else
    start_round(self);
}

// Called once per expected reply (a result, or the reason it will not come).
void settle(server_pointer self, int64_t round, size_t i, std::optional<round_reply> reply) {
  auto& st = self->state;
  if (round != st.round_id || !st.awaiting[i])
    return;  // late reply to a round already closed, or a worker given up on
  st.awaiting[i] = false;
  if (reply) {
    st.samples += reply->samples;
    st.bytes += static_cast<int64_t>(reply->values.wire_bytes());
    st.loss_sum += reply->loss;
    ++st.loss_count;
    st.replies[i] = std::move(reply);
  }
  if (--st.pending == 0)
    end_round(self);
}

void on_error(server_pointer self, int64_t round, size_t i, const caf::error& err) {
  auto& st = self->state;
  if (round != st.round_id || !st.awaiting[i])
    return;
  // A worker that answers with a Chorus error rejected the request: that is
  // a bug or bad data (NaN gradient, wrong size), and the run must stop.
  if (err.category() == errc_category) {
    fail(self, err);
    return;
  }
  drop_worker(self, i, describe(err));
  settle(self, round, i, std::nullopt);
}

class server_asker final : public round_asker {
public:
  server_asker(server_pointer self, int64_t round) : self_(self), round_(round) {}

  void gradient(size_t i, const weights& w) override {
    auto self = self_;
    auto round = round_;
    count_request(w);
    self->request(self->state.ctx.workers[i], self->state.ctx.plan.timeout, compute_atom_v, w)
      .then(
        [self, round, i](chorus::gradient& g) {
          settle(self, round, i, round_reply{g.sender, std::move(g.values), g.loss, g.samples});
        },
        [self, round, i](caf::error& err) { on_error(self, round, i, err); });
  }

  void local(size_t i, const weights& w, const local_plan& plan) override {
    auto self = self_;
    auto round = round_;
    count_request(w);
    self
      ->request(self->state.ctx.workers[i], self->state.ctx.plan.timeout, local_atom_v, w, plan)
      .then(
        [self, round, i](local_result& r) {
          settle(self, round, i, round_reply{r.sender, std::move(r.values), r.loss, r.samples});
        },
        [self, round, i](caf::error& err) { on_error(self, round, i, err); });
  }

private:
  void count_request(const weights& w) {
    self_->state.bytes += static_cast<int64_t>(w.values.wire_bytes());
  }
  server_pointer self_;
  int64_t round_;
};

void start_round(server_pointer self) {
  auto& st = self->state;
  if (st.stop_requested) {
    finish(self, "stopped");
    return;
  }
  if (st.step >= st.ctx.plan.steps) {
    finish(self, "steps");
    return;
  }
  ++st.round_id;
  const size_t n = st.ctx.workers.size();
  st.replies.assign(n, std::nullopt);
  st.awaiting.assign(n, false);
  st.pending = 0;
  for (size_t i = 0; i < n; ++i)
    if (st.alive[i]) {
      st.awaiting[i] = true;
      ++st.pending;
    }
  if (st.pending == 0) {
    fail(self, make_error(errc::no_workers_left,
                          "every worker is gone at step " + std::to_string(st.step)));
    return;
  }
  weights w{-1, st.step, st.w};
  server_asker asker(self, st.round_id);
  for (size_t i = 0; i < n; ++i)
    if (st.awaiting[i])
      st.rule.ask(asker, i, w, st.ctx.plan);
}

void evaluate(server_pointer self) {
  auto& st = self->state;
  st.last_eval_step = st.step;
  auto started = clock_type::now();
  if (st.loss_count > 0)
    st.last_train_loss = st.loss_sum / static_cast<double>(st.loss_count);
  st.loss_sum = 0;
  st.loss_count = 0;
  self->request(st.ctx.evaluator, st.ctx.plan.timeout, evaluate_atom_v, weights{-1, st.step, st.w})
    .then(
      [self, started](evaluation& ev) {
        auto& st = self->state;
        st.eval_s += std::chrono::duration<double>(clock_type::now() - started).count();
        metrics_row row;
        row.step = st.step;
        row.epoch = st.epoch();
        row.wall_s = st.wall();
        row.train_loss = st.last_train_loss;
        row.test_loss = ev.loss;
        row.test_acc = ev.accuracy;
        row.bytes_sent = st.bytes;
        row.extra["workers_alive"] = static_cast<double>(st.live_workers());
        self->send(st.ctx.monitor, metrics_atom_v, row);
        st.summary.train_loss = st.last_train_loss;
        st.summary.test_loss = ev.loss;
        st.summary.test_acc = ev.accuracy;
        const auto target = st.ctx.plan.target_acc;
        if (target >= 0 && ev.accuracy >= target && !st.summary.reached_target) {
          st.summary.reached_target = true;
          st.summary.time_to_target_s = row.wall_s;
          finish(self, "target");
          return;
        }
        start_round(self);
      },
      [self](caf::error& err) {
        fail(self, make_error(errc::compute_failed, "evaluation failed: " + describe(err)));
      });
}

protocol_actor::behavior_type server_behavior(server_pointer self, run_context ctx,
                                              round_rule rule) {
  auto& st = self->state;
  st.ctx = std::move(ctx);
  st.rule = std::move(rule);
  st.w = st.ctx.initial;
  st.alive.assign(st.ctx.workers.size(), true);
  for (auto& worker : st.ctx.workers)
    self->monitor(worker);
  self->set_down_handler([self](caf::down_msg& dm) {
    auto& st = self->state;
    for (size_t i = 0; i < st.ctx.workers.size(); ++i)
      if (st.ctx.workers[i].address() == dm.source) {
        bool was_awaited = st.running && st.awaiting.size() > i && st.awaiting[i];
        drop_worker(self, i, "terminated: " + describe(dm.reason));
        if (was_awaited)
          settle(self, st.round_id, i, std::nullopt);
      }
  });
  return {
    [self](run_atom) -> caf::result<run_summary> {
      auto& st = self->state;
      if (st.running)
        return make_error(errc::bad_request, "this protocol actor is already running");
      st.running = true;
      st.promise = self->make_response_promise<run_summary>();
      st.t0 = clock_type::now();
      if (st.ctx.plan.eval_every > 0)
        evaluate(self);  // the starting point, step 0
      else
        start_round(self);
      return st.promise;
    },
    [self](stop_atom) { self->state.stop_requested = true; },
  };
}

} // namespace

protocol_actor spawn_round_server(caf::actor_system& sys, run_context ctx, round_rule rule) {
  CHORUS_ASSERT(rule.ask && rule.combine, "a round rule needs ask and combine");
  CHORUS_ASSERT(!ctx.workers.empty(), "a round server needs at least one worker");
  return sys.spawn(server_behavior, std::move(ctx), std::move(rule));
}

} // namespace chorus
