// Asynchronous, lazy and redundant protocols (issue: async_sgd, local_sgd,
// lazy_sgd, ri_sgd, injected stragglers and crashes).
#include <gtest/gtest.h>

#include <optional>

#include <caf/scheduler/test_coordinator.hpp>

#include "actors/injection.hpp"
#include "tests/algorithms/harness.hpp"
#include "tests/algorithms/scripted.hpp"

using namespace chorus;
using chorus::test::graph;
using chorus::test::run_shared_order;

namespace {

buffer init_weights(const std::string& model, const train_test& data, uint64_t seed) {
  auto net = make_model(model, data.train->num_features, data.train->num_classes);
  mutable_buffer w(static_cast<size_t>(net->num_params()));
  std::mt19937_64 rng(seed);
  net->init(w.data(), rng);
  return std::move(w).freeze();
}

double max_abs_diff(const buffer& a, const buffer& b) {
  double m = 0;
  for (size_t j = 0; j < a.size(); ++j)
    m = std::max(m, double(std::fabs(a[j] - b[j])));
  return m;
}

} // namespace

TEST(async_sgd, one_worker_without_delay_is_plain_sgd_step_for_step) {
  auto data = make_sparse_logistic(2048, 256, 30, 5, 4);
  for (auto model : {"logistic", "mlp:8"}) {
    auto w0 = init_weights(model, data, 3);
    for (int steps : {1, 7, 50}) {
      auto sgd = run_shared_order(data, "sync_sgd", 1, 32, steps, w0, model);
      auto async = run_shared_order(data, "async_sgd", 1, 32, steps, w0, model);
      ASSERT_EQ(sgd.size(), async.size());
      EXPECT_EQ(max_abs_diff(sgd, async), 0.0) << model << " steps=" << steps;
      EXPECT_GT(max_abs_diff(sgd, w0), 0.0);
    }
  }
}

namespace {

// A RELEASED worker: it answers gradient requests only when the test
// releases it (ok_atom), with the gradient (value, ..., value) for the
// requested step. On the deterministic scheduler this fixes the order in
// which gradients reach the server, so every update's staleness is known in
// advance.
using released_worker = worker_actor::extend<caf::reacts_to<ok_atom>>;

struct released_state {
  static inline const char* name = "test.released_worker";
  int32_t rank = 0;
  size_t params = 0;
  float value = 0;
  std::vector<std::pair<caf::typed_response_promise<gradient>, int64_t>> pending;
};

released_worker::behavior_type released(released_worker::stateful_pointer<released_state> self,
                                        int32_t rank, size_t params, float value) {
  self->state.rank = rank;
  self->state.params = params;
  self->state.value = value;
  return {
    [self](compute_atom, weights w) -> caf::result<gradient> {
      auto rp = self->make_response_promise<gradient>();
      self->state.pending.emplace_back(rp, w.step);
      return rp;
    },
    [self](ok_atom) {
      auto& st = self->state;
      if (st.pending.empty())
        return;
      auto [rp, step] = st.pending.front();
      st.pending.erase(st.pending.begin());
      rp.deliver(gradient{st.rank, step, buffer::from(std::vector<float>(st.params, st.value)), 0.5f, 1});
    },
    [](local_atom, weights, local_plan) -> caf::result<local_result> {
      return make_error(errc::bad_request, "released worker");
    },
    [](evaluate_atom, weights w) { return evaluation{-1, w.step, 0.5, 0.5, 1}; },
    [](apply_atom, weights) { return ok_atom_v; },
    [](fetch_atom) { return weights{}; },
  };
}

// What the async server must do with a release order, computed by hand:
// each release delivers the oldest request of that worker; its staleness is
// the number of updates applied since the request was issued. An applied
// gradient is followed by a fresh request at the new version; a dropped one
// (staleness above the bound) by a fresh request at the current version.
struct async_expectation {
  std::map<int64_t, int64_t> histogram;  // applied updates by staleness
  std::vector<int64_t> applied_tau;      // the staleness of each applied update, in order
  int64_t dropped = 0;
};

async_expectation expect_async(const std::vector<int>& script, int workers, int64_t bound,
                                int64_t budget) {
  async_expectation e;
  std::vector<int64_t> issued_at(static_cast<size_t>(workers), 0);
  int64_t version = 0;
  for (int who : script) {
    if (static_cast<int64_t>(e.applied_tau.size()) == budget)
      break;  // the run has ended: later releases answer nobody
    auto& issued = issued_at[static_cast<size_t>(who)];
    const int64_t tau = version - issued;
    if (bound >= 0 && tau > bound) {
      ++e.dropped;
    } else {
      ++e.histogram[tau];
      e.applied_tau.push_back(tau);
      ++version;
    }
    issued = version;
  }
  return e;
}

// Runs async_sgd on the deterministic scheduler with 3 released workers
// whose gradients are all `value`, releasing them in `script` order; the
// budget is `steps` applied updates. w_0 = (1, 1, 1, 1), eta = 0.1.
std::optional<run_summary> run_released(const std::vector<int>& script, int64_t steps, float value,
                                        std::map<std::string, std::string> options) {
  caf::actor_system_config cfg;
  cfg.set("scheduler.policy", caf::atom("testing"));
  cfg.add_message_types<caf::id_block::chorus>();
  caf::actor_system sys{cfg};
  auto& sched = dynamic_cast<caf::scheduler::test_coordinator&>(sys.scheduler());
  std::optional<run_summary> out;
  {  // the guard's exit messages must be processed by the scheduler below
    test::actor_guard guard;
    run_context ctx;
    monitor_config mc;
    mc.progress = false;
    mc.quiet_log = true;
    ctx.monitor = guard.add(spawn_monitor(sys, mc));
    std::vector<released_worker> fakes;
    for (int i = 0; i < 3; ++i) {
      fakes.push_back(guard.add(sys.spawn(released, i, size_t{4}, value)));
      ctx.workers.push_back(fakes.back());
    }
    ctx.evaluator = guard.add(sys.spawn(released, -1, size_t{4}, value));
    ctx.plan.algorithm = "async_sgd";
    ctx.plan.steps = steps;
    ctx.plan.lr = 0.1f;
    ctx.plan.options = std::move(options);
    ctx.initial = buffer::from(std::vector<float>(4, 1.0f));
    auto proto = guard.add(spawn_async_sgd(sys, ctx));
    caf::scoped_actor self{sys};
    self->send(proto, run_atom_v);
    sched.run();
    for (int who : script) {
      caf::anon_send(fakes[static_cast<size_t>(who)], ok_atom_v);
      sched.run();
    }
    self->receive([&](run_summary& s) { out = std::move(s); },
                  caf::after(std::chrono::seconds(0)) >> [] {});
  }
  sched.run();  // deliver the exits, so the system can shut down
  return out;
}

std::map<int64_t, int64_t> recorded_histogram(const run_summary& s) {
  std::map<int64_t, int64_t> recorded;
  for (auto& [key, value] : s.extra)
    if (key.rfind("staleness_hist_", 0) == 0)
      recorded[std::stoll(key.substr(15))] = static_cast<int64_t>(value);
  return recorded;
}

// Worker 2 is the straggler: it is released rarely.
const std::vector<int> straggler_script = {0, 1, 0, 1, 0, 1, 2, 0, 0, 1, 1, 0, 2, 1, 0, 0, 0, 2, 1};

} // namespace

TEST(async_sgd, staleness_on_the_deterministic_scheduler_is_exactly_the_scripted_one) {
  const auto steps = static_cast<int64_t>(straggler_script.size());
  const auto expected = expect_async(straggler_script, 3, -1, steps);
  ASSERT_EQ(expected.applied_tau.size(), straggler_script.size());
  auto s = run_released(straggler_script, steps, 0.0f, {});
  ASSERT_TRUE(s) << "the run did not end after the scripted releases";
  EXPECT_EQ(s->steps, static_cast<int64_t>(straggler_script.size()));
  EXPECT_EQ(recorded_histogram(*s), expected.histogram);
  const double max_tau = static_cast<double>(expected.histogram.rbegin()->first);
  EXPECT_EQ(test::metric(*s, "staleness_max"), max_tau);
  EXPECT_EQ(test::metric(*s, "dropped_stale"), 0);
  EXPECT_GT(max_tau, 4);  // the straggler's updates are really stale
}

// --staleness-lr: each update uses eta / (1 + tau). Every gradient is
// (1, 1, 1, 1), so w_T = w_0 - sum_k eta_k in every coordinate, with the
// scripted taus. The server computes in float, one rounding per update:
// 19 updates of size <= 0.1 stay within 19 * 2^-24 * 2 of the double sum,
// far inside 1e-5 on any instruction set (FMA or not).
TEST(async_sgd, staleness_lr_scales_each_update_by_one_over_one_plus_its_staleness) {
  const auto steps = static_cast<int64_t>(straggler_script.size());
  const auto expected = expect_async(straggler_script, 3, -1, steps);
  double plain = 1.0, scaled = 1.0;
  for (int64_t tau : expected.applied_tau) {
    plain -= 0.1;
    scaled -= 0.1 / (1.0 + static_cast<double>(tau));
  }
  auto off = run_released(straggler_script, steps, 1.0f, {});
  auto on = run_released(straggler_script, steps, 1.0f, {{"staleness_lr", "1"}});
  ASSERT_TRUE(off && on) << "a run did not end after the scripted releases";
  ASSERT_EQ(on->final_weights.size(), 4u);
  for (size_t j = 0; j < 4; ++j) {
    EXPECT_NEAR(off->final_weights[j], plain, 1e-5) << j;
    EXPECT_NEAR(on->final_weights[j], scaled, 1e-5) << j;
  }
  EXPECT_GT(scaled - plain, 0.5);  // the two rules are far apart on this script
  EXPECT_EQ(recorded_histogram(*on), expected.histogram);
}

// --staleness-bound: on the same release order with bound 2, exactly the
// gradients older than 2 updates are dropped (the straggler's three, and
// worker 1's last, 3 updates old), and each dropped worker is asked again at
// once at the current version. A last release of worker 0 is applied after
// them, so every drop happens within the budget.
TEST(async_sgd, a_staleness_bound_drops_exactly_the_gradients_older_than_the_bound) {
  auto script = straggler_script;
  script.push_back(0);
  const auto all = expect_async(script, 3, 2, -1);
  const auto applied = static_cast<int64_t>(all.applied_tau.size());
  const auto expected = expect_async(script, 3, 2, applied);
  ASSERT_EQ(expected.dropped, 4);  // the hand count above
  auto s = run_released(script, applied, 1.0f, {{"staleness_bound", "2"}});
  ASSERT_TRUE(s) << "the run did not end after the scripted releases";
  EXPECT_EQ(s->steps, applied);
  EXPECT_EQ(test::metric(*s, "dropped_stale"), expected.dropped);
  EXPECT_EQ(recorded_histogram(*s), expected.histogram);
  EXPECT_LE(test::metric(*s, "staleness_max"), 2);
  // Dropped gradients do not move w: w_T = w_0 - eta * (applied updates).
  for (size_t j = 0; j < 4; ++j)
    EXPECT_NEAR(s->final_weights[j], 1.0 - 0.1 * static_cast<double>(applied), 1e-5) << j;
}

TEST(async_sgd, a_staleness_bound_drops_old_gradients_and_counts_them) {
  auto data = make_least_squares(4096, 512, 16, 0.1, 5);
  experiment_config cfg;
  cfg.algorithm = "async_sgd";
  cfg.workers = 4;
  cfg.model = "linear";
  cfg.lr = 0.02;
  cfg.steps = 400;
  cfg.progress = false;
  cfg.slow = "3:20";
  cfg.options["staleness_bound"] = "2";
  auto r = run_experiment(cfg, data);
  // Nothing applied is staler than the bound, whatever the timing. How many
  // of the 20x slower worker's gradients are dropped depends on the
  // machine's scheduling (on a loaded core it may even never answer within
  // the budget), so the count is checked exactly on the deterministic
  // scheduler above and only reported here.
  EXPECT_GE(test::metric(r.summary, "dropped_stale"), 0);
  EXPECT_LE(test::metric(r.summary, "staleness_max"), 2);
  EXPECT_LT(r.summary.test_loss, 0.1);
}

TEST(local_sgd, tau_1_with_plain_sgd_equals_sync_sgd) {
  auto data = make_sparse_logistic(4096, 256, 20, 10, 8);
  for (auto model : {"logistic", "mlp:16"}) {
    auto w0 = init_weights(model, data, 2);
    for (int n : {1, 3, 4}) {
      auto sync = run_shared_order(data, "sync_sgd", n, 16, 25, w0, model);
      auto local = run_shared_order(data, "local_sgd", n, 16, 25, w0, model, {{"tau", "1"}});
      EXPECT_LT(max_abs_diff(sync, local), 1e-5) << model << " n=" << n;
      EXPECT_GT(max_abs_diff(sync, w0), 1e-3);
    }
  }
}

TEST(local_sgd, tau_divides_communication_and_counts_rounds_and_bytes) {
  auto data = make_least_squares(4096, 512, 32, 0.1, 6);
  std::map<int, run_summary> by_tau;
  for (int tau : {1, 4, 16}) {
    experiment_config cfg;
    cfg.algorithm = "local_sgd";
    cfg.workers = 4;
    cfg.model = "linear";
    cfg.lr = 0.02;
    cfg.epochs = 4;
    cfg.batch = 16;
    cfg.progress = false;
    cfg.options["tau"] = std::to_string(tau);
    by_tau[tau] = run_experiment(cfg, data).summary;
  }
  // Same samples, tau times fewer rounds and bytes.
  for (int tau : {4, 16}) {
    EXPECT_NEAR(double(by_tau[1].steps) / by_tau[tau].steps, tau, 0.1 * tau);
    EXPECT_NEAR(double(by_tau[1].bytes_sent) / by_tau[tau].bytes_sent, tau, 0.1 * tau);
    EXPECT_LT(by_tau[tau].test_loss, 0.1);
  }
}

TEST(local_sgd, fedavg_sampling_asks_only_a_fraction_of_the_workers) {
  auto data = make_least_squares(4096, 512, 8, 0.1, 7);
  experiment_config cfg;
  cfg.algorithm = "local_sgd";
  cfg.workers = 8;
  cfg.model = "linear";
  cfg.steps = 50;
  cfg.batch = 8;
  cfg.progress = false;
  cfg.options = {{"tau", "2"}, {"fraction", "0.25"}};
  auto r = run_experiment(cfg, data).summary;
  EXPECT_EQ(r.samples, 50 * 2 * 2 * 8);  // rounds * sampled workers * tau * batch
}

TEST(lazy_sgd, full_batch_gradients_skip_uploads_and_still_converge) {
  auto data = make_least_squares(2048, 512, 16, 0.1, 9);
  experiment_config cfg;
  cfg.algorithm = "lazy_sgd";
  cfg.workers = 4;
  cfg.model = "linear";
  cfg.batch = 512;  // = each shard: deterministic gradients, as LAG assumes
  cfg.lr = 0.2;
  cfg.steps = 150;
  cfg.progress = false;
  cfg.options["lazy_threshold"] = "0.5";
  auto r = run_experiment(cfg, data).summary;
  EXPECT_GT(test::metric(r, "uploads_skipped"), 0);
  EXPECT_EQ(test::metric(r, "uploads") + test::metric(r, "uploads_skipped"), 150 * 4);
  EXPECT_LT(r.test_loss, 0.05);
  cfg.algorithm = "sync_sgd";
  cfg.options.clear();
  auto sync = run_experiment(cfg, data).summary;
  EXPECT_LT(r.bytes_sent, sync.bytes_sent);  // skipped uploads are bytes not sent
}

namespace {

// A graph of scripted workers (rank i answers with script(i, call)), a
// scripted evaluator and a recording monitor.
struct scripted_graph {
  test::graph g;
  std::shared_ptr<test::recording> rec = std::make_shared<test::recording>();
  std::vector<std::shared_ptr<test::scripted_log>> logs;

  scripted_graph(int n, std::function<test::scripted_reply(int, const test::scripted_call&)> script) {
    g.ctx.monitor = g.guard.add(g.ts.sys.spawn(test::recorder, rec));
    for (int i = 0; i < n; ++i) {
      logs.push_back(std::make_shared<test::scripted_log>());
      g.ctx.workers.push_back(g.guard.add(test::spawn_scripted(
        g.ts.sys, i, [i, script](const test::scripted_call& c) { return script(i, c); }, logs.back())));
    }
    g.ctx.evaluator = g.guard.add(test::spawn_scripted(g.ts.sys, -1, [](const test::scripted_call&) {
      return test::scripted_reply{};
    }));
  }

  caf::expected<run_summary> run(protocol_actor proto) {
    auto out = g.run(proto);
    caf::scoped_actor self{g.ts.sys};
    self->request(g.ctx.monitor, std::chrono::seconds(10), flush_atom_v)
      .receive([](ok_atom) {}, [](caf::error& e) { ADD_FAILURE() << describe(e); });
    return out;
  }

  // metric(key) of the row of each step (rows are sent in step order).
  std::map<int64_t, double> per_step(const std::string& key) {
    std::map<int64_t, double> out;
    for (auto& row : rec->rows_copy())
      out[row.step] = test::metric(row.extra, key);
    return out;
  }
};

} // namespace

// LAG's trigger, round by round. Two scripted workers return the gradients
// below whatever w is; eta = 0.5, xi = 1 (lazy_threshold). Worker i uploads
// at round k iff (g - g_last)^2 > xi (w_k - w_{k-1})^2 / eta^2, with g_last
// the gradient it last UPLOADED (not the last one it computed), and the
// server steps with the mean of the last uploads: w_{k+1} = w_k - eta mean.
//
//  k  w_k     4 dw^2   worker 0: g  (g-g_last)^2      worker 1: g  (g-g_last)^2     mean  w_{k+1}
//  0   0        -        2    first       up            0   first       up           1    -0.5
//  1  -0.5      1        2.6  0.36       skip           2   4           up           2    -1.5
//  2  -1.5      4        4.5  6.25        up            3   1          skip          3.25 -3.125
//  3  -3.125   10.5625   0    20.25       up           -1   9 (vs 2)   skip          1    -3.625
//  4  -3.625    1        0    0          skip          -1   9           up          -0.5  -3.375
//  5  -3.375    0.25     0.4  0.16       skip          -0.6 0.16       skip         -0.5  -3.125
//  6  -3.125    0.25     0.6  0.36        up           -1   0          skip         -0.2  -3.025
//
// Without the 1/eta^2, worker 0 would upload at round 1 (0.36 > 0.25); had
// worker 1 compared with its last COMPUTED gradient (3) at round 3, it
// would upload (16 > 10.5625). Every decision is at least 0.09 from its
// threshold, far beyond float rounding. The uploads per round come from
// the metrics rows (one per round); which worker skipped shows in the
// trajectory the workers were sent (any other choice moves w elsewhere).
TEST(lazy_sgd, uploads_are_skipped_exactly_when_the_lag_rule_says) {
  const std::vector<std::vector<float>> grads = {{2, 2.6f, 4.5f, 0, 0, 0.4f, 0.6f},
                                                 {0, 2, 3, -1, -1, -0.6f, -1}};
  const std::vector<int> uploads_per_round = {2, 1, 1, 1, 1, 0, 1};
  const std::vector<double> trajectory = {0, -0.5, -1.5, -3.125, -3.625, -3.375, -3.125, -3.025};
  scripted_graph sg(2, [&grads](int i, const test::scripted_call& c) {
    return test::scripted_reply{{grads.at(static_cast<size_t>(i)).at(static_cast<size_t>(c.index))}, 1.0f, 1};
  });
  auto& ctx = sg.g.ctx;
  ctx.plan.steps = 7;
  ctx.plan.eval_every = 1;
  ctx.plan.lr = 0.5f;
  ctx.plan.options = {{"lazy_threshold", "1"}};
  ctx.initial = buffer::from(std::vector<float>{0.0f});
  auto s = sg.run(spawn_lazy_sgd(sg.g.ts.sys, ctx));
  ASSERT_TRUE(s) << describe(s.error());
  auto uploads = sg.per_step("uploads");
  auto skipped = sg.per_step("uploads_skipped");
  ASSERT_EQ(uploads.size(), 8u) << "one row before the first round and one after each";
  for (int64_t k = 0; k < 7; ++k) {
    EXPECT_EQ(uploads[k + 1] - uploads[k], uploads_per_round[static_cast<size_t>(k)]) << "round " << k;
    EXPECT_EQ(skipped[k + 1] - skipped[k], 2 - uploads_per_round[static_cast<size_t>(k)]) << "round " << k;
  }
  EXPECT_EQ(test::metric(*s, "uploads"), 7);
  EXPECT_EQ(test::metric(*s, "uploads_skipped"), 7);
  for (auto& log : sg.logs) {
    auto seen = log->weights_seen();
    ASSERT_EQ(seen.size(), 7u);
    for (size_t k = 0; k < seen.size(); ++k)
      EXPECT_NEAR(seen[k][0], trajectory[k], 1e-6) << "round " << k;
  }
  EXPECT_NEAR(s->final_weights[0], trajectory[7], 1e-6);
}

// local_sgd averages by shard size: w+ = sum_i n_i / n x_i. Scripted workers
// answer local requests with x_0 = w + 1 and x_1 = w + 4; with shard sizes
// 1 and 3, w+ = w + (1 * 1 + 3 * 4) / 4 = w + 3.25 (the plain mean would add
// 2.5). All values are exact in float. With post_local = 2 and tau = 4 the
// workers are asked for 1, 1, 4, 4, 4 local steps in rounds 1..5.
TEST(local_sgd, averages_by_shard_size_and_post_local_rounds_are_synchronous) {
  scripted_graph sg(2, [](int i, const test::scripted_call& c) {
    return test::scripted_reply{{c.w[0] + (i == 0 ? 1.0f : 4.0f)}, 1.0f, c.local_steps};
  });
  auto& ctx = sg.g.ctx;
  ctx.plan.steps = 5;
  ctx.plan.options = {{"tau", "4"}, {"post_local", "2"}};
  ctx.shard_sizes = {1, 3};
  ctx.initial = buffer::from(std::vector<float>{0.0f});
  auto s = sg.run(spawn_local_sgd(sg.g.ts.sys, ctx));
  ASSERT_TRUE(s) << describe(s.error());
  EXPECT_EQ(s->final_weights[0], 5 * 3.25f);
  for (auto& log : sg.logs) {
    std::vector<int32_t> steps;
    std::vector<float> sent;
    for (auto& c : log->calls_copy()) {
      EXPECT_TRUE(c.local);
      steps.push_back(c.local_steps);
      sent.push_back(c.w[0]);
    }
    EXPECT_EQ(steps, (std::vector<int32_t>{1, 1, 4, 4, 4}));
    EXPECT_EQ(sent, (std::vector<float>{0, 3.25f, 6.5f, 9.75f, 13}));
  }
  EXPECT_EQ(s->samples, 2 * (1 + 1 + 4 + 4 + 4));  // each worker reports its local steps
}

// With post_local at least the run's length, local SGD never leaves its
// synchronous phase: with tau = 8 it still equals sync SGD step for step
// (and would consume 8 times the samples, and differ, if post_local were
// ignored: the check next to it).
TEST(local_sgd, post_local_covering_the_run_equals_sync_sgd) {
  auto data = make_sparse_logistic(4096, 256, 20, 10, 8);
  auto w0 = init_weights("logistic", data, 2);
  auto sync = run_shared_order(data, "sync_sgd", 3, 16, 25, w0, "logistic");
  auto post = run_shared_order(data, "local_sgd", 3, 16, 25, w0, "logistic",
                               {{"tau", "8"}, {"post_local", "25"}});
  auto local = run_shared_order(data, "local_sgd", 3, 16, 25, w0, "logistic", {{"tau", "8"}});
  EXPECT_LT(max_abs_diff(sync, post), 1e-5);
  EXPECT_GT(max_abs_diff(sync, local), 1e-3);
}

// --link-delay d: a worker's reply leaves 2d after its request arrived (d
// each way), so a synchronous round, which waits for every reply, lasts at
// least 2d: R rounds take at least 2 d R. Only that lower bound is certain
// (an upper bound would depend on the machine). The delay moves time, not
// the math: the final weights equal a run without it, bit for bit.
TEST(link_delay, every_round_lasts_at_least_twice_the_delay_and_changes_no_weight) {
  auto data = make_least_squares(2048, 256, 16, 0.1, 12);
  for (auto algo : {"sync_sgd", "local_sgd"}) {
    experiment_config cfg;
    cfg.algorithm = algo;
    cfg.workers = 3;
    cfg.model = "linear";
    cfg.lr = 0.02;
    cfg.batch = 16;
    cfg.steps = 25;
    cfg.eval_every = 25;
    cfg.progress = false;
    if (std::string(algo) == "local_sgd")
      cfg.options["tau"] = "2";
    auto fast = run_experiment(cfg, data).summary;
    cfg.link_delay = "2ms";
    auto slow = run_experiment(cfg, data).summary;
    EXPECT_GE(slow.wall_s, 25 * 2 * 0.002) << algo;
    EXPECT_EQ(slow.steps, 25) << algo;
    ASSERT_EQ(fast.final_weights.size(), slow.final_weights.size());
    for (size_t j = 0; j < fast.final_weights.size(); ++j)
      EXPECT_EQ(fast.final_weights[j], slow.final_weights[j]) << algo << " " << j;
  }
}

TEST(injection, specs_parse_and_bad_ones_are_named) {
  auto inj = parse_injections(4, "3:4,1:2", "exp:2ms", "1ms", "2:500");
  EXPECT_EQ(inj[3].slowdown, 4);
  EXPECT_EQ(inj[1].slowdown, 2);
  EXPECT_EQ(inj[0].slowdown, 1);
  EXPECT_EQ(inj[0].step_delay.kind, delay_spec::exponential);
  EXPECT_EQ(inj[0].link_delay_ms, 1);
  EXPECT_EQ(inj[2].crash_at_step, 500);
  EXPECT_EQ(inj[3].crash_at_step, -1);
  EXPECT_EQ(delay_spec::parse("uniform:1ms,3ms").b_ms, 3);
  EXPECT_EQ(parse_millis("1.5s"), 1500);
  EXPECT_EQ(parse_millis("250us"), 0.25);
  for (auto [slow, delay, crash] : std::vector<std::tuple<std::string, std::string, std::string>>{
         {"7:2", "", ""}, {"1:0.5", "", ""}, {"", "gauss:1ms", ""}, {"", "uniform:3ms,1ms", ""},
         {"", "", "2:-1"}, {"", "", "x"}}) {
    EXPECT_THROW(parse_injections(4, slow, delay, "", crash), std::invalid_argument)
      << slow << "|" << delay << "|" << crash;
  }
  std::mt19937_64 rng(1);
  auto d = delay_spec::parse("uniform:1ms,3ms");
  for (int k = 0; k < 100; ++k) {
    auto us = d.sample(rng).count();
    EXPECT_GE(us, 1000);
    EXPECT_LE(us, 3000);
  }
}

// Every protocol of this issue survives a worker that crashes mid-run: the
// run ends with the survivors' result, nothing hangs.
//
// A worker dies at the first request it gets at or after global step 40. In
// async_sgd nothing forces worker 1 to be asked again after step 40: on a
// loaded machine the other three once spent the whole budget while its
// request sat preempted (seen in CI). A 1 ms step delay on every worker makes
// the other workers' remaining 160 updates take >= 50 ms of wall time, far
// longer than any preemption of a runnable thread.
TEST(crash, every_protocol_ends_with_the_survivors_result) {
  auto data = make_least_squares(4096, 512, 16, 0.1, 10);
  for (auto algo : {"sync_sgd", "async_sgd", "local_sgd", "lazy_sgd", "ri_sgd"}) {
    experiment_config cfg;
    cfg.algorithm = algo;
    cfg.workers = 4;
    cfg.model = "linear";
    cfg.lr = 0.02;
    cfg.batch = 16;
    cfg.steps = 200;
    cfg.progress = false;
    cfg.crash = "1:40";
    cfg.delay = "fixed:1ms";
    if (std::string(algo) == "local_sgd" || std::string(algo) == "ri_sgd")
      cfg.options["tau"] = "2";
    auto r = run_experiment(cfg, data).summary;
    EXPECT_EQ(r.workers_lost, 1) << algo;
    EXPECT_EQ(r.stop_reason, "budget") << algo;
    EXPECT_LT(r.test_loss, 0.1) << algo;
  }
}

TEST(ri_sgd, survivors_coverage_matches_the_formula_after_a_crash) {
  auto data = make_least_squares(4096, 512, 16, 0.1, 11);
  for (double mu : {0.0, 1.0 / 3, 1.0}) {
    experiment_config cfg;
    cfg.algorithm = "ri_sgd";
    cfg.workers = 4;
    cfg.model = "linear";
    cfg.lr = 0.02;
    cfg.batch = 16;
    cfg.steps = 40;
    cfg.progress = false;
    cfg.crash = "2:10";
    cfg.options = {{"tau", "2"}, {"redundancy", std::to_string(mu)}};
    auto r = run_experiment(cfg, data).summary;
    EXPECT_EQ(r.workers_lost, 1);
    EXPECT_NEAR(test::metric(r, "coverage"), expected_coverage(4, mu, 1), 1e-3) << "mu=" << mu;
  }
}
