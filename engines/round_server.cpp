// The synchronous round server (see round_server.hpp for what it does and why).
//
// Round lifecycle:  start_round -> (ask each selected worker) -> settle() per
// reply or loss, until nothing is pending -> end_round -> [reduce_round: the
// rule's reducer, asynchronously] -> combine_round (rule.combine) -> maybe
// evaluate -> start_round ... -> finish. A round id tags every request
// so a reply from a round already closed, or from a worker already given up
// on, is ignored rather than miscounted.
#include "engines/round_server.hpp"

#include <optional>
#include <stdexcept>

#include "engines/combiners.hpp"
#include "engines/compressors.hpp"
#include "gpu/assert.hpp"

namespace chorus {

namespace {

struct server_state : protocol_state {
  static inline const char* name = "chorus.server";
  round_rule rule;
  buffer w;
  int64_t round_id = 0;
  size_t pending = 0;
  std::vector<bool> awaiting;
  std::vector<std::optional<round_reply>> replies;
  bool stop_requested = false;
  /// The combiners of a split combine (combine_slice), spawned on first use.
  std::optional<combiner_pool> combiners;
};

using server_pointer = protocol_actor::stateful_pointer<server_state>;

void start_round(server_pointer self);

std::map<std::string, double> round_metrics(server_pointer self) {
  auto& st = self->state;
  std::map<std::string, double> extra;
  if (st.rule.metrics)
    extra = st.rule.metrics();
  extra["workers_alive"] = static_cast<double>(st.live_workers());
  return extra;
}

void next_or_finish(server_pointer self) {
  auto& st = self->state;
  if (st.stop_requested || st.tracker.budget_spent())
    for (auto& [key, value] : round_metrics(self))
      st.tracker.summary_extra()[key] = value;
  if (st.stop_requested)
    finish_run(self, st.w, "stopped");
  else if (st.tracker.budget_spent())
    finish_run(self, st.w, "budget");
  else
    start_round(self);
}

// What follows a round's combine: the rule's log, the finite check, the
// step's bookkeeping, maybe an evaluation, then the next round.
void after_combine(server_pointer self, bool finite) {
  auto& st = self->state;
  if (st.rule.take_log)
    for (auto& line : st.rule.take_log())
      log_line(self, std::move(line));
  if (!finite) {
    fail_run(self, make_error(errc::non_finite,
                              "weights after step " + std::to_string(st.tracker.step())
                                + " contain NaN or Inf (learning rate too large?)"));
    return;
  }
  st.tracker.step_done();
  if (st.tracker.eval_due() || st.stop_requested)
    evaluate(self, st.w, round_metrics(self), [self] { next_or_finish(self); });
  else
    next_or_finish(self);
}

// How many slices this round's combine is split into (1: not split).
size_t combine_slices_for(server_pointer self) {
  auto& st = self->state;
  if (!st.rule.combine_slice || st.be->kind() != memory_kind::host)
    return 1;
  return combine_slices(st.ctx.combine_shards, st.w.size(),
                        self->system().scheduler().num_workers());
}

// rule.combine_slice on coordinates [lo, hi) of w, of every reply and of
// out: the whole combine (combine_whole) and one slice of a split one.
void combine_range(const decltype(round_rule::combine_slice)& fn, backend& be, cview w,
                   const std::vector<round_reply>& replies, view out, size_t lo, size_t hi,
                   int64_t round) {
  auto cut = [lo, hi](cview x) { return cview{x.data + lo, hi - lo, x.kind, x.ops}; };
  std::vector<cview> values;
  values.reserve(replies.size());
  for (auto& r : replies) {
    if (r.values.size() != w.size)
      throw std::invalid_argument("a reply of " + std::to_string(r.values.size())
                                  + " floats for a model of " + std::to_string(w.size));
    values.push_back(cut(r.values));
  }
  fn(be, cut(w), values, replies, view{out.data + lo, hi - lo, out.kind, out.ops}, round);
}

// rule.combine_slice over `slices` slices of w: one on this actor, the
// others on the combiners (combiners.hpp); each slice also checks that
// what it wrote is finite, so no second pass over w+ is needed.
void combine_split(server_pointer self, std::vector<round_reply> replies, size_t slices) {
  auto& st = self->state;
  if (!st.combiners || st.combiners->helpers() + 1 < slices)
    st.combiners.emplace(self->system(), caf::actor_cast<caf::actor>(self), slices - 1,
                         st.ctx.backend, st.ctx.device);
  struct round_data {
    buffer w;
    std::vector<round_reply> replies;
    mutable_buffer out;
  };
  auto data = std::make_shared<round_data>();
  data->w = st.w;
  data->replies = std::move(replies);
  data->out = st.be->allocate(st.w.size());
  auto task = std::make_shared<sliced_task>();
  task->bounds = slice_bounds(st.w.size(), slices);
  task->run = [data, fn = st.rule.combine_slice, round = st.round_id](backend& be, size_t lo,
                                                                      size_t hi) {
    view out = data->out.span();
    combine_range(fn, be, data->w, data->replies, out, lo, hi, round);
    return be.all_finite(view{out.data + lo, hi - lo, out.kind, out.ops});
  };
  const int64_t round = st.round_id;
  st.combiners->run(
    self, *st.be, task,
    [self, round, data](bool finite) {
      auto& st = self->state;
      if (!st.tracker.running() || round != st.round_id)
        return;
      st.w = std::move(data->out).freeze();
      after_combine(self, finite);
    },
    [self, round](const caf::error& err) {
      auto& st = self->state;
      if (!st.tracker.running() || round != st.round_id)
        return;
      fail_run(self, err);
    });
}

// rule.combine over the round's replies, then the checks and what follows.
void combine_round(server_pointer self, std::vector<round_reply> replies) {
  auto& st = self->state;
  try {
    // A reply in other memory (a CPU worker under a GPU server, a worker
    // on another GPU) is brought to the server's backend once.
    for (auto& r : replies)
      r.values = st.be->adopt(r.values);
    if (auto slices = combine_slices_for(self); slices > 1) {
      combine_split(self, std::move(replies), slices);
      return;
    }
    st.w = st.rule.combine(*st.be, st.w, replies, st.round_id);
  } catch (const std::exception& e) {
    fail_run(self, make_error(errc::compute_failed, e.what()));
    return;
  }
  after_combine(self, st.be->all_finite(st.w));
}

// The rule's reducer averages the replies where they live (an all-reduce
// across the workers' GPUs); combine then sees one reply holding the mean.
// Nothing else moves the round on meanwhile: every reply has settled, so
// late messages for this round are ignored by settle().
void reduce_round(server_pointer self, std::vector<round_reply> replies) {
  auto& st = self->state;
  std::vector<buffer> values;
  values.reserve(replies.size());
  round_reply mean{-1, {}, 0.0, 0};
  for (auto& r : replies) {
    values.push_back(std::move(r.values));
    mean.loss += r.loss / static_cast<double>(replies.size());
    mean.samples += r.samples;
  }
  const int64_t round = st.round_id;
  self->request(st.rule.reducer, st.ctx.plan.timeout, reduce_atom_v, std::move(values))
    .then(
      [self, round, mean](buffer& avg) mutable {
        auto& st = self->state;
        if (!st.tracker.running() || round != st.round_id)
          return;
        mean.values = std::move(avg);
        combine_round(self, {std::move(mean)});
      },
      [self, round](caf::error& err) {
        auto& st = self->state;
        if (!st.tracker.running() || round != st.round_id)
          return;
        fail_run(self, make_error(errc::compute_failed,
                                  "reducing the replies of step " + std::to_string(st.tracker.step())
                                    + " failed: " + describe(err)));
      });
}

void end_round(server_pointer self) {
  auto& st = self->state;
  std::vector<round_reply> replies;
  for (auto& r : st.replies)
    if (r)
      replies.push_back(std::move(*r));
  if (replies.empty()) {
    fail_run(self, make_error(errc::no_workers_left, "no worker answered round "
                                                       + std::to_string(st.tracker.step())));
    return;
  }
  if (st.rule.reducer)
    reduce_round(self, std::move(replies));
  else
    combine_round(self, std::move(replies));
}

// Called once per expected reply: the reply, or nullopt if it will not come.
// `wire_bytes`: what crossed the link, when the reply was decoded from a
// smaller payload; -1: the reply's own size.
void settle(server_pointer self, int64_t round, size_t i, std::optional<round_reply> reply,
            int64_t wire_bytes = -1) {
  auto& st = self->state;
  if (!st.tracker.running() || round != st.round_id || !st.awaiting[i])
    return;
  st.awaiting[i] = false;
  st.deadlines.clear(i);
  if (reply) {
    st.tracker.add_work(reply->samples, reply->loss, 1);
    st.tracker.add_bytes(wire_bytes >= 0 ? wire_bytes
                                         : static_cast<int64_t>(reply->values.wire_bytes()));
    st.replies[i] = std::move(reply);
  }
  if (--st.pending == 0)
    end_round(self);
}

void on_error(server_pointer self, int64_t round, size_t i, const caf::error& err) {
  auto& st = self->state;
  if (!st.tracker.running() || round != st.round_id || !st.awaiting[i])
    return;
  if (ended_before_asked(err))
    return;  // the down handler drops it, saying why
  if (st.rule.reject_non_finite && err.category() == errc_category
      && err.code() == static_cast<uint8_t>(errc::non_finite)) {
    log_line(self, "worker " + std::to_string(i) + " rejected at step "
                     + std::to_string(st.tracker.step()) + ": " + describe(err));
    settle(self, round, i, round_reply{static_cast<int32_t>(i), buffer{}, 0.0, 0});
    return;
  }
  if (is_run_failure(err)) {
    fail_run(self, err);
    return;
  }
  drop_worker(self, i, describe(err));
  settle(self, round, i, std::nullopt);
}

class server_asker final : public round_asker {
public:
  // `now`: when this round's requests leave (one clock read per round).
  server_asker(server_pointer self, int64_t round, caf::actor_clock::time_point now)
    : self_(self), round_(round), now_(now) {}

  void gradient(size_t i, const weights& w) override {
    auto self = self_;
    auto round = round_;
    sent(w);
    expect(i);
    self->request(self->state.ctx.workers[i], caf::infinite, compute_atom_v, w)
      .then(
        [self, round, i](chorus::gradient& g) {
          const auto wire = static_cast<int64_t>(g.values.wire_bytes());
          if (g.encoded) {
            // Decoded on arrival even when the round has moved on: an ef21
            // receiver must apply every payload its sender applied.
            auto& st = self->state;
            try {
              g.values = st.rule.decode ? st.rule.decode(i, g.values, st.w.size())
                                        : chorus::decode(g.values, st.w.size());
            } catch (const std::exception& e) {
              log_line(self, "worker " + std::to_string(i) + ": gradient set aside at step "
                               + std::to_string(st.tracker.step()) + ": " + e.what());
              settle(self, round, i, std::nullopt);
              return;
            }
          }
          settle(self, round, i, round_reply{g.sender, std::move(g.values), g.loss, g.samples},
                 wire);
        },
        [self, round, i](caf::error& err) { on_error(self, round, i, err); });
  }

  void local(size_t i, const weights& w, const local_plan& plan) override {
    auto self = self_;
    auto round = round_;
    sent(w);
    expect(i);
    self->request(self->state.ctx.workers[i], caf::infinite, local_atom_v, w, plan)
      .then(
        [self, round, i, base = self->state.w](local_result& r) {
          const auto wire = static_cast<int64_t>(r.values.wire_bytes());
          if (r.encoded) {
            // The compressed model change x_i - w; the reply is w + D(.).
            // Decoded on arrival even when the round has moved on (ef21).
            auto& st = self->state;
            try {
              auto change = st.rule.decode ? st.rule.decode(i, r.values, base.size())
                                           : chorus::decode(r.values, base.size());
              auto x = base.to_vector();
              buffer c = change.to_host();
              if (c.size() != x.size())
                throw std::invalid_argument("a model change of another length than w");
              for (size_t j = 0; j < x.size(); ++j)
                x[j] += c[j];
              r.values = buffer::from(x);
            } catch (const std::exception& e) {
              log_line(self, "worker " + std::to_string(i) + ": model change set aside at step "
                               + std::to_string(st.tracker.step()) + ": " + e.what());
              settle(self, round, i, std::nullopt);
              return;
            }
          }
          settle(self, round, i, round_reply{r.sender, std::move(r.values), r.loss, r.samples},
                 wire);
        },
        [self, round, i](caf::error& err) { on_error(self, round, i, err); });
  }

private:
  // The reply's deadline (the request itself goes untimed: deadlines.hpp).
  void expect(size_t i) {
    auto& st = self_->state;
    st.deadlines.expect(i, now_, st.ctx.plan.timeout);
  }
  void sent(const weights& w) { self_->state.tracker.add_bytes(static_cast<int64_t>(w.values.wire_bytes())); }
  server_pointer self_;
  int64_t round_;
  caf::actor_clock::time_point now_;
};

void start_round(server_pointer self) {
  auto& st = self->state;
  ++st.round_id;
  std::vector<size_t> live;
  for (size_t i = 0; i < st.alive.size(); ++i)
    if (st.alive[i])
      live.push_back(i);
  if (live.empty()) {
    fail_run(self, make_error(errc::no_workers_left,
                              "every worker is gone at step " + std::to_string(st.tracker.step())));
    return;
  }
  auto chosen = st.rule.select ? st.rule.select(live, st.round_id) : live;
  const size_t n = st.ctx.workers.size();
  st.replies.assign(n, std::nullopt);
  st.awaiting.assign(n, false);
  st.pending = 0;
  for (auto i : chosen)
    if (i < n && st.alive[i] && !st.awaiting[i]) {
      st.awaiting[i] = true;
      ++st.pending;
    }
  if (st.pending == 0) {
    fail_run(self, make_error(errc::no_workers_left, "the round rule selected no live worker"));
    return;
  }
  weights w{-1, st.tracker.step(), st.w};
  if (st.rule.broadcast)
    if (auto payload = st.rule.broadcast(); !payload.empty())
      w = weights{-1, st.tracker.step(), std::move(payload), true};
  server_asker asker(self, st.round_id, self->clock().now());
  for (size_t i = 0; i < n; ++i)
    if (st.awaiting[i])
      st.rule.ask(asker, i, w, st.round_id);
}

// The first step of a run: an evaluation of w_0 if the plan evaluates, then
// the first round.
void first_round(server_pointer self) {
  auto& st = self->state;
  if (st.ctx.plan.eval_every > 0 || st.ctx.plan.eval_every_samples > 0)
    evaluate(self, st.w, round_metrics(self), [self] { start_round(self); });
  else
    start_round(self);
}

// A rule with a reducer starts once the reducer can serve (an NCCL group
// forms its communicator in the background). That is setup, not training:
// the run's clock restarts when it is done. A reducer that cannot serve
// fails the run before its first step. No reply timeout here: forming can
// take longer than one worker reply may, and a reducer bounds its own
// readiness (the NCCL group's ranks give up after their timeout).
void await_reducer(server_pointer self) {
  auto& st = self->state;
  self->request(st.rule.reducer, caf::infinite, ready_atom_v)
    .then(
      [self](ok_atom) {
        auto& st = self->state;
        if (!st.tracker.running())
          return;
        st.tracker.start();
        first_round(self);
      },
      [self](caf::error& err) {
        fail_run(self, make_error(errc::compute_failed,
                                  "the round's reducer is not ready: " + describe(err)));
      });
}

protocol_actor::behavior_type server_behavior(server_pointer self, run_context ctx,
                                              round_rule rule) {
  auto& st = self->state;
  st.init(std::move(ctx));
  st.rule = std::move(rule);
  st.w = st.ctx.initial;
  for (auto& worker : st.ctx.workers)
    self->monitor(worker);
  self->set_down_handler([self](caf::down_msg& dm) {
    auto& st = self->state;
    int i = st.index_of(dm.source);
    if (i < 0)
      return;
    auto idx = static_cast<size_t>(i);
    bool was_awaited = st.tracker.running() && idx < st.awaiting.size() && st.awaiting[idx];
    drop_worker(self, idx, "terminated: " + describe(dm.reason));
    if (was_awaited)
      settle(self, st.round_id, idx, std::nullopt);
  });
  return {
    [self](run_atom) -> caf::result<run_summary> {
      if (self->state.tracker.running())
        return begin_run(self);  // the "already running" error
      auto result = begin_run(self);
      // A worker whose deadline passes is handled as a timed-out request.
      watch_deadlines(self, tick_period(self->state.ctx.plan.timeout), [self](size_t i) {
        on_error(self, self->state.round_id, i, caf::make_error(caf::sec::request_timeout));
      });
      if (self->state.rule.reducer)
        await_reducer(self);
      else
        first_round(self);
      return result;
    },
    [self](stop_atom) { self->state.stop_requested = true; },
  };
}

} // namespace

std::function<buffer(backend&, const buffer& w, const std::vector<round_reply>&, int64_t round)>
combine_whole(const round_rule& rule) {
  CHORUS_ASSERT(rule.combine_slice, "combine_whole needs a rule with combine_slice");
  return [fn = rule.combine_slice](backend& be, const buffer& w,
                                   const std::vector<round_reply>& replies, int64_t round) {
    auto out = be.allocate(w.size());
    combine_range(fn, be, w, replies, out.span(), 0, w.size(), round);
    return std::move(out).freeze();
  };
}

protocol_actor spawn_round_server(caf::actor_system& sys, run_context ctx, round_rule rule) {
  CHORUS_ASSERT(rule.ask && rule.combine, "a round rule needs ask and combine");
  CHORUS_ASSERT(!ctx.workers.empty(), "a round server needs at least one worker");
  return spawn_protocol(sys, server_behavior, std::move(ctx), std::move(rule));
}

} // namespace chorus
