// Byzantine workers and robust aggregation in the protocols:
//  - each attack's decorator, on hand-made updates from a scripted worker
//    (gradients and local-step model changes), with the expected vector
//    computed here, independently of engines/byzantine.cpp;
//  - the omniscient attacks (alie, ipm, mimic) see exactly the honest
//    updates of the same round, through the taps and the adversary actor;
//  - sync_sgd, local_sgd and async_sgd with 2 of 10 Byzantine workers on a
//    small logistic problem: the plain mean fails under a scaled sign flip
//    while median, krum and cc stay near the honest run's accuracy;
//  - a NaN attacker: with an aggregator the run completes and the rejections
//    are counted and named; without one the run fails as before;
//  - an honest worker's non-finite gradient (a worker error) is rejected per
//    worker with an aggregator, and fails the run without one;
//  - impossible f, bad --byzantine specs and attack parameters are refused.
#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <unistd.h>

#include "engines/byzantine.hpp"
#include "tests/algorithms/harness.hpp"
#include "tests/algorithms/scripted.hpp"
#include "tools/experiment.hpp"

using namespace chorus;
using chorus::test::metric;
using chorus::test::scripted_call;
using chorus::test::scripted_reply;
using chorus::test::spawn_scripted;

namespace {

constexpr size_t dim = 6;

// Honest worker r's update at step s: not proportional across ranks, so
// the per-coordinate std is not a multiple of the mean.
std::vector<float> update_of(int32_t r, int64_t s) {
  std::vector<float> g(dim);
  for (size_t k = 0; k < dim; ++k)
    g[k] = static_cast<float>(std::sin(0.7 * r + 1.3 * static_cast<double>(k) + 2.1 * s) + 0.1 * r);
  return g;
}

worker_actor scripted_rank(caf::actor_system& sys, int32_t r) {
  return spawn_scripted(sys, r, [r](const scripted_call& c) {
    scripted_reply out;
    if (c.local) {  // the model after local steps: w + update
      out.values = c.w;
      auto u = update_of(r, c.step);
      for (size_t k = 0; k < dim; ++k)
        out.values[k] += u[k];
    } else {
      out.values = update_of(r, c.step);
    }
    return out;
  });
}

weights weights_at(int64_t step, float value = 0.5f) {
  return weights{-1, step, buffer::from(std::vector<float>(dim, value))};
}

std::vector<float> compute(caf::actor_system& sys, const worker_actor& w, int64_t step) {
  caf::scoped_actor self{sys};
  std::vector<float> out;
  self->request(w, std::chrono::seconds(30), compute_atom_v, weights_at(step))
    .receive([&](gradient& g) { out = g.values.to_vector(); },
             [&](caf::error& e) { ADD_FAILURE() << describe(e); });
  return out;
}

// Asks every worker for a gradient at `step` at once (as a round server
// does) and returns the replies in rank order.
std::vector<std::vector<float>> round_of(caf::actor_system& sys,
                                         const std::vector<worker_actor>& ws, int64_t step) {
  caf::scoped_actor self{sys};
  std::vector<std::vector<float>> out(ws.size());
  for (auto& w : ws)
    self->send(caf::actor_cast<caf::actor>(w), compute_atom_v, weights_at(step));
  // Replies to send() come back as plain messages; collect them by sender.
  for (size_t got = 0; got < ws.size(); ++got)
    self->receive(
      [&](gradient& g) {
        auto r = static_cast<size_t>(g.sender);
        if (r < out.size())
          out[r] = g.values.to_vector();
      },
      [&](caf::error& e) { ADD_FAILURE() << describe(e); },
      caf::after(std::chrono::seconds(30)) >> [&] { ADD_FAILURE() << "no reply"; });
  return out;
}

struct moments_ref {
  std::vector<double> mean, std;
};

moments_ref honest_moments(const std::vector<int32_t>& ranks, int64_t step) {
  moments_ref m{std::vector<double>(dim, 0.0), std::vector<double>(dim, 0.0)};
  for (auto r : ranks)
    for (size_t k = 0; k < dim; ++k)
      m.mean[k] += update_of(r, step)[k] / static_cast<double>(ranks.size());
  for (auto r : ranks)
    for (size_t k = 0; k < dim; ++k) {
      double e = update_of(r, step)[k] - m.mean[k];
      m.std[k] += e * e / static_cast<double>(ranks.size());
    }
  for (auto& s : m.std)
    s = std::sqrt(s);
  return m;
}

} // namespace

// -- the decorator on hand-made updates ------------------------------------------------

TEST(byzantine_attacks, each_forges_its_vector_from_the_workers_own_gradient) {
  chorus::test::test_system ts;
  chorus::test::actor_guard guard;
  auto& sys = ts.sys;
  const auto own = update_of(3, 7);
  auto wrapped = [&](const std::string& spec) {
    auto base = guard.add(scripted_rank(sys, 3));
    return guard.add(spawn_byzantine(sys, base, make_attack(spec, 10, 2), {}, 1));
  };
  auto flipped = compute(sys, wrapped("signflip"), 7);
  auto scaled = compute(sys, wrapped("scale:-2.5"), 7);
  auto zero = compute(sys, wrapped("zero"), 7);
  auto nan = compute(sys, wrapped("nan"), 7);
  auto inf = compute(sys, wrapped("inf"), 7);
  auto data = compute(sys, wrapped("labelflip"), 7);  // a data attack: the vector is the worker's
  ASSERT_EQ(flipped.size(), dim);
  for (size_t k = 0; k < dim; ++k) {
    EXPECT_FLOAT_EQ(flipped[k], -own[k]);
    EXPECT_FLOAT_EQ(scaled[k], -2.5f * own[k]);
    EXPECT_EQ(zero[k], 0.0f);
    EXPECT_TRUE(std::isnan(nan[k]));
    EXPECT_TRUE(std::isinf(inf[k]) && inf[k] > 0);
    EXPECT_EQ(data[k], own[k]);
  }
}

TEST(byzantine_attacks, gaussian_sends_noise_of_the_given_scale_not_the_gradient) {
  attack a = make_attack("gaussian:2", 10, 2);
  std::mt19937_64 rng(5);
  const size_t d = 20000;
  auto own = buffer::from(std::vector<float>(d, 100.0f));
  auto v = a.forge(attack_input{own, {}, &rng});
  ASSERT_EQ(v.size(), d);
  double sum = 0, sq = 0;
  for (size_t k = 0; k < d; ++k) {
    sum += v[k];
    sq += double(v[k]) * v[k];
  }
  double mean = sum / d, sd = std::sqrt(sq / d - mean * mean);
  // Standard errors: 2/sqrt(d) = 0.014 for the mean, ~0.01 for the std.
  EXPECT_NEAR(mean, 0.0, 0.06);
  EXPECT_NEAR(sd, 2.0, 0.05);
}

TEST(byzantine_attacks, local_steps_forge_the_model_change_and_send_w_plus_it) {
  chorus::test::test_system ts;
  chorus::test::actor_guard guard;
  auto& sys = ts.sys;
  auto base = guard.add(scripted_rank(sys, 2));
  auto byz = guard.add(spawn_byzantine(sys, base, make_attack("scale:3", 10, 2), {}, 1));
  caf::scoped_actor self{sys};
  const float w0 = 0.25f;
  std::vector<float> x;
  self->request(byz, std::chrono::seconds(30), local_atom_v, weights_at(4, w0), local_plan{})
    .receive([&](local_result& r) { x = r.values.to_vector(); },
             [&](caf::error& e) { ADD_FAILURE() << describe(e); });
  ASSERT_EQ(x.size(), dim);
  auto u = update_of(2, 4);
  for (size_t k = 0; k < dim; ++k)
    EXPECT_NEAR(x[k], w0 + 3.0f * u[k], 1e-5);
}

// -- the omniscient attacks through the adversary ---------------------------------------

TEST(byzantine_adversary, alie_z_follows_the_paper) {
  // Phi^-1(0.6) and Phi^-1(0.8) from a normal table: n = 10, f = 2 gives
  // s = 4, (n - s)/n = 0.6; n = 5, f = 2 gives s = 1, 0.8.
  EXPECT_NEAR(alie_z(10, 2), 0.2533471, 1e-6);
  EXPECT_NEAR(alie_z(5, 2), 0.8416212, 1e-6);
  // s is at least 1: with most workers Byzantine z stays finite.
  EXPECT_TRUE(std::isfinite(alie_z(10, 9)));
}

TEST(byzantine_adversary, omniscient_attacks_use_the_honest_updates_of_the_same_round) {
  const std::vector<int32_t> honest{2, 3, 4};
  for (std::string spec : {"alie", "alie:1.5", "ipm:0.5", "mimic", "mimic:2"}) {
    SCOPED_TRACE(spec);
    chorus::test::test_system ts;
    chorus::test::actor_guard guard;
    std::vector<worker_actor> ws;
    for (int32_t r = 0; r < 5; ++r)
      ws.push_back(guard.add(scripted_rank(ts.sys, r)));
    auto plan = parse_byzantine("0,1:" + spec, 5);
    auto adv = wrap_byzantine(ts.sys, ws, plan, 1, std::chrono::seconds(20));
    ASSERT_TRUE(adv);
    guard.add(adv);
    for (auto& w : ws)
      guard.add(w);
    // Two rounds: the second must use the second round's honest updates.
    for (int64_t step : {1, 2}) {
      auto replies = round_of(ts.sys, ws, step);
      auto m = honest_moments(honest, step);
      for (int32_t r : honest)
        EXPECT_EQ(replies[static_cast<size_t>(r)], update_of(r, step)) << "taps change nothing";
      for (size_t b : {0u, 1u}) {
        ASSERT_EQ(replies[b].size(), dim);
        for (size_t k = 0; k < dim; ++k) {
          double expected = 0;
          if (spec == "alie")
            expected = m.mean[k] - alie_z(5, 2) * m.std[k];
          else if (spec == "alie:1.5")
            expected = m.mean[k] - 1.5 * m.std[k];
          else if (spec == "ipm:0.5")
            expected = -0.5 * m.mean[k];
          else if (spec == "mimic")
            expected = update_of(2, step)[k];
          else
            expected = update_of(4, step)[k];
          EXPECT_NEAR(replies[b][k], expected, 1e-5) << "step " << step << " coord " << k;
        }
      }
    }
  }
}

// -- parsing and refusals --------------------------------------------------------------

TEST(byzantine_plan, bad_specs_are_refused_with_what_is_wrong) {
  auto refused = [](const std::string& spec, int32_t n, const std::string& says) {
    try {
      parse_byzantine(spec, n);
      ADD_FAILURE() << spec << " was accepted";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(says), std::string::npos) << e.what();
    }
  };
  refused("0,3", 10, "RANKS:ATTACK");
  refused("0,10:signflip", 10, "not a worker rank");
  refused("1,1:signflip", 10, "named twice");
  refused("0,1:sighflip", 10, "valid attacks");
  refused("0,1:scale", 10, "needs its parameter");
  refused("0,1:gaussian:-1", 10, "SIGMA must be >= 0");
  refused("0,1:zero:3", 10, "takes no parameter");
  refused("0,1:signflip", 2, "every worker would be Byzantine");
  auto ok = parse_byzantine("3,0:ipm", 10);
  EXPECT_EQ(ok.ranks, (std::vector<int32_t>{0, 3}));
  EXPECT_TRUE(ok.atk.omniscient);
  EXPECT_TRUE(ok.is_byzantine(3));
  EXPECT_FALSE(ok.is_byzantine(2));
}

TEST(byzantine_plan, every_registered_attack_builds_by_name) {
  for (auto& a : attack_registry()) {
    std::string spec = a.name;
    if (a.usage.find(':') != std::string::npos && a.usage.find('[') == std::string::npos)
      spec += ":2";
    auto atk = make_attack(spec, 10, 2);
    EXPECT_EQ(atk.data, a.name == "labelflip") << spec;
    if (!atk.data) {
      ASSERT_TRUE(atk.forge) << spec;
      std::mt19937_64 rng(1);
      auto own = buffer::from(update_of(5, 1));
      std::vector<buffer> honest{buffer::from(update_of(2, 1)), buffer::from(update_of(3, 1))};
      EXPECT_EQ(atk.forge(attack_input{own, honest, &rng}).size(), dim) << spec;
    }
  }
}

TEST(byzantine_plan, labelflip_flips_the_classes_of_the_shard_only) {
  dataset d;
  d.num_features = 2;
  d.num_classes = 3;
  d.x = {0, 1, 2, 3, 4, 5, 6, 7};
  d.y = {0, 1, 2, 2};
  auto f = flip_labels(d, {1, 3});
  ASSERT_EQ(f->size(), 2);
  EXPECT_EQ(f->y, (std::vector<float>{1, 0}));
  EXPECT_EQ(f->x, (std::vector<float>{2, 3, 6, 7}));
}

TEST(robust_options, an_impossible_f_is_refused_at_validation) {
  auto refused = [](experiment_config cfg, const std::string& says) {
    try {
      validate(cfg);
      ADD_FAILURE() << "accepted";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(says), std::string::npos) << e.what();
    }
  };
  experiment_config cfg;
  cfg.workers = 10;
  cfg.dataset = "synthetic-logistic";
  cfg.options = {{"aggregator", "krum"}, {"f", "4"}};
  refused(cfg, "n > 2f + 2");
  cfg.options["f"] = "3";
  EXPECT_NO_THROW(validate(cfg));
  cfg.options = {{"f", "2"}};
  refused(cfg, "need --aggregator");
  cfg.options = {{"aggregator", "median"}, {"f", "5"}};
  refused(cfg, "median");
  cfg.algorithm = "local_sgd";
  cfg.options = {{"aggregator", "krum"}, {"f", "2"}, {"fraction", "0.5"}};
  refused(cfg, "5 inputs");
  cfg.algorithm = "async_sgd";
  cfg.options = {{"aggregator", "median"}, {"f", "2"}, {"window", "11"}};
  refused(cfg, "more than the 10 workers");
  cfg.algorithm = "sync_sgd";
  cfg.options = {};
  cfg.byzantine = "0:bogus";
  refused(cfg, "valid attacks");
}

// -- end to end --------------------------------------------------------------------------

namespace {

const train_test& logistic_problem() {
  static const train_test data = make_sparse_logistic(8192, 2048, 100, 10, 3);
  return data;
}

experiment_config byzantine_run(const std::string& algorithm, const std::string& attack,
                                const std::string& aggregator) {
  experiment_config cfg;
  cfg.algorithm = algorithm;
  cfg.workers = 10;
  cfg.model = "softmax";
  cfg.dataset = "synthetic-logistic";
  cfg.epochs = 2;
  cfg.lr = 0.5;
  cfg.progress = false;
  cfg.byzantine = attack;
  if (!aggregator.empty())
    cfg.options = {{"aggregator", aggregator}, {"f", "2"}};
  return cfg;
}

double accuracy(const std::string& algorithm, const std::string& attack,
                const std::string& aggregator) {
  auto r = run_experiment(byzantine_run(algorithm, attack, aggregator), logistic_problem());
  return r.summary.test_acc;
}

} // namespace

// The scaled sign flip (-10 g from 2 of 10) turns the mean into -1.4 times
// the honest mean: it climbs the loss. The robust rules must keep within
// 3 points of the honest run; the mean must lose more than 20.
TEST(byzantine_e2e, sync_sgd_mean_fails_and_robust_rules_hold_under_two_attackers) {
  const double honest = accuracy("sync_sgd", "", "");
  ASSERT_GT(honest, 0.8);
  EXPECT_LT(accuracy("sync_sgd", "0,1:scale:-10", ""), honest - 0.2);
  for (std::string agg : {"median", "krum", "cc:1"}) {
    SCOPED_TRACE(agg);
    EXPECT_GT(accuracy("sync_sgd", "0,1:scale:-10", agg), honest - 0.03);
    EXPECT_GT(accuracy("sync_sgd", "0,1:alie", agg), honest - 0.03);
    EXPECT_GT(accuracy("sync_sgd", "0,1:signflip", agg), honest - 0.03);
  }
}

TEST(byzantine_e2e, krum_never_picks_the_scaled_attackers_and_the_pass_rate_says_so) {
  auto r = run_experiment(byzantine_run("sync_sgd", "0,1:scale:-10", "krum"), logistic_problem());
  EXPECT_EQ(metric(r.summary, "byz_pass_rate_w0"), 0.0);
  EXPECT_EQ(metric(r.summary, "byz_pass_rate_w1"), 0.0);
  EXPECT_EQ(metric(r.summary, "byz_share_w0"), 0.0);
  EXPECT_EQ(metric(r.summary, "agg_rejected"), 9.0);  // krum keeps one of ten
  // An honest worker gets through some of the time.
  double honest = 0;
  for (int i = 2; i < 10; ++i)
    honest += metric(r.summary, "pass_rate_w" + std::to_string(i));
  EXPECT_NEAR(honest, 1.0, 1e-9);  // krum keeps exactly one per round, always an honest one
  // Its share: the whole aggregate (m = 10 times a fair share) whenever kept.
  double shares = 0;
  for (int i = 2; i < 10; ++i)
    shares += metric(r.summary, "share_w" + std::to_string(i));
  EXPECT_NEAR(shares, 10.0, 1e-9);
}

TEST(byzantine_e2e, local_sgd_aggregates_model_changes_robustly) {
  const double honest = accuracy("local_sgd", "", "");
  ASSERT_GT(honest, 0.8);
  EXPECT_LT(accuracy("local_sgd", "0,1:scale:-10", ""), honest - 0.2);
  for (std::string agg : {"median", "krum", "cc:1"}) {
    SCOPED_TRACE(agg);
    EXPECT_GT(accuracy("local_sgd", "0,1:scale:-10", agg), honest - 0.03);
  }
}

// How often the scheduler serves each async worker is not fixed (two of
// ten may barely get a gradient in on two cores), so the plain mean's
// damage varies; with a window of all 10 workers every update holds both
// attackers' gradients, and the defended run must still match the honest one.
TEST(byzantine_e2e, async_sgd_window_holds_against_two_attackers) {
  auto with_window = [](experiment_config cfg) {
    cfg.options["window"] = "10";
    return cfg;
  };
  const double honest =
    run_experiment(with_window(byzantine_run("async_sgd", "", "median")), logistic_problem())
      .summary.test_acc;
  ASSERT_GT(honest, 0.8);
  auto attacked = run_experiment(with_window(byzantine_run("async_sgd", "0,1:scale:-10", "median")),
                                 logistic_problem());
  EXPECT_GT(attacked.summary.test_acc, honest - 0.03);
  EXPECT_EQ(metric(attacked.summary, "agg_kept_total") + metric(attacked.summary, "agg_rejected_total")
              + metric(attacked.summary, "agg_down_weighted_total"),
            10 * metric(attacked.summary, "windows"));
  EXPECT_GT(metric(attacked.summary, "windows"), 0.0);
  EXPECT_GE(metric(attacked.summary, "pass_rate_w0"), 0.0);  // it took part
  // NaN attackers, again with a window of all 10 workers: without it, on a
  // loaded 2-core machine the scheduler may serve the honest workers until
  // the budget ends and neither attacker gets a gradient in (8 of 40 runs).
  auto r = run_experiment(with_window(byzantine_run("async_sgd", "0,1:nan", "median")),
                          logistic_problem());
  EXPECT_EQ(r.summary.stop_reason, "budget");
  EXPECT_GT(metric(r.summary, "agg_invalid_total"), 0.0);
  // Every attacker that got a gradient in passed none.
  int reported = 0;
  for (auto& [key, value] : r.summary.extra)
    if (key.rfind("byz_pass_rate_w", 0) == 0) {
      ++reported;
      EXPECT_EQ(value, 0.0) << key;
    }
  EXPECT_GT(reported, 0) << "no Byzantine worker's pass rate was reported";
}

TEST(byzantine_e2e, a_nan_attacker_is_rejected_with_an_aggregator_and_fails_the_run_without) {
  auto out = std::filesystem::temp_directory_path()
             / ("chorus_byz_nan_" + std::to_string(::getpid()));
  auto cfg = byzantine_run("sync_sgd", "0,1:nan", "median");
  cfg.out_dir = out.string();
  cfg.overwrite = true;
  auto r = run_experiment(cfg, logistic_problem());
  EXPECT_EQ(r.summary.stop_reason, "budget");
  const double steps = static_cast<double>(r.summary.steps);
  ASSERT_GT(steps, 0);
  EXPECT_EQ(metric(r.summary, "agg_invalid_total"), 2 * steps);
  EXPECT_EQ(metric(r.summary, "invalid_w0"), steps);
  EXPECT_EQ(metric(r.summary, "invalid_w1"), steps);
  EXPECT_EQ(metric(r.summary, "byz_pass_rate_w0"), 0.0);
  EXPECT_GT(r.summary.test_acc, 0.8);
  // Every metrics row says how many inputs the last aggregation set aside.
  std::ifstream rows(out / "metrics.jsonl");
  std::string row;
  int n_rows = 0;
  while (std::getline(rows, row)) {
    if (row.find("\"step\":0,") != std::string::npos)
      continue;  // the evaluation of w_0, before any aggregation
    ++n_rows;
    EXPECT_NE(row.find("\"agg_invalid\":2"), std::string::npos) << row;
  }
  EXPECT_GT(n_rows, 0);
  std::ifstream log(out / "log.txt");
  std::stringstream text;
  text << log.rdbuf();
  EXPECT_NE(text.str().find("worker 0 sent a non-finite"), std::string::npos) << text.str();
  EXPECT_NE(text.str().find("worker 1 sent a non-finite"), std::string::npos) << text.str();
  std::filesystem::remove_all(out);

  try {
    run_experiment(byzantine_run("sync_sgd", "0,1:nan", ""), logistic_problem());
    FAIL() << "a NaN attacker without an aggregator did not fail the run";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("NaN or Inf"), std::string::npos) << e.what();
  }
}

namespace {

// A worker whose gradients are always non-finite: the worker itself
// refuses to send them (errc::non_finite), as a real worker does.
// (Spawned with an argument: CAF 0.17 binds a reference to a null tuple
// when a function actor takes none, which UBSan reports.)
worker_actor::behavior_type non_finite_worker(worker_actor::pointer, int32_t rank) {
  auto err = [rank] {
    return make_error(errc::non_finite,
                      "worker " + std::to_string(rank) + ": gradient contains NaN or Inf");
  };
  return {
    [=](compute_atom, weights) -> caf::result<gradient> { return err(); },
    [=](local_atom, weights, local_plan) -> caf::result<local_result> { return err(); },
    [](evaluate_atom, weights w) -> caf::result<evaluation> {
      return evaluation{-1, w.step, 0.5, 0.5, 1};
    },
    [](apply_atom, weights) -> caf::result<ok_atom> { return ok_atom_v; },
    [](fetch_atom) -> caf::result<weights> { return weights{}; },
  };
}

caf::expected<run_summary> run_with_a_non_finite_worker(const std::string& aggregator) {
  chorus::test::graph g;
  for (int32_t r = 0; r < 4; ++r)
    g.rg.add_worker(scripted_rank(g.ts.sys, r));
  g.rg.add_worker(g.ts.sys.spawn(non_finite_worker, int32_t{4}));
  g.rg.set_evaluator(scripted_rank(g.ts.sys, -1));
  g.ctx.initial = buffer::from(std::vector<float>(dim, 0.0f));
  g.ctx.plan.steps = 3;
  g.ctx.plan.lr = 0.1f;
  if (!aggregator.empty())
    g.ctx.plan.options = {{"aggregator", aggregator}, {"f", "1"}};
  return g.run("sync_sgd");
}

} // namespace

TEST(byzantine_e2e, an_honest_workers_non_finite_error_is_rejected_per_worker_with_an_aggregator) {
  auto s = run_with_a_non_finite_worker("median");
  ASSERT_TRUE(s) << describe(s.error());
  EXPECT_EQ(s->steps, 3);
  EXPECT_EQ(metric(*s, "invalid_w4"), 3.0);
  EXPECT_EQ(metric(*s, "pass_rate_w4"), 0.0);
  auto without = run_with_a_non_finite_worker("");
  ASSERT_FALSE(without);
  EXPECT_EQ(static_cast<errc>(without.error().code()), errc::non_finite);
}
