// Byzantine gossip peers and robust mixing (algorithms/robust_gossip.hpp,
// engines/gossip.hpp):
//  - ClippedGossip's step against its formula on hand-made vectors, written
//    here independently: a fixed radius, the adaptive radius with equal and
//    unequal weights, and a NaN neighbour set aside;
//  - least squares on a ring of 8 with peer 0 Byzantine: under a large-norm
//    forgery plain gossip averaging is destroyed (its honest average is far
//    from the optimum, or the run fails) while ClippedGossip (fixed and
//    adaptive radius) and the neighbourhood median keep the honest peers
//    near the optimum, with the clipped messages counted;
//  - a NaN-sending peer: with a robust mix its neighbours reject and count
//    its models (the others see none) and the run completes; without one
//    the run fails as before; an asynchronous Byzantine peer's exchanges
//    carry its forgery too;
//  - combinations that make no sense are refused with what is wrong.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <utility>

#include <Eigen/Dense>

#include "algorithms/gossip.hpp"
#include "algorithms/robust_gossip.hpp"
#include "engines/gossip.hpp"
#include "tests/algorithms/harness.hpp"
#include "tests/algorithms/scripted.hpp"

using namespace chorus;
using chorus::test::metric;

namespace {

buffer vec(std::vector<float> v) { return buffer::from(std::move(v)); }

// ---- the formula, written out: own + sum_j w_j min(1, tau / ||x_j - own||) (x_j - own)
std::vector<double> clipped_ref(const std::vector<std::vector<float>>& xs, const std::vector<float>& w,
                                double tau) {
  std::vector<double> out(xs[0].begin(), xs[0].end());
  for (size_t j = 1; j < xs.size(); ++j) {
    double n2 = 0;
    for (size_t k = 0; k < xs[0].size(); ++k)
      n2 += (xs[j][k] - xs[0][k]) * double(xs[j][k] - xs[0][k]);
    const double s = n2 == 0 ? 1.0 : std::min(1.0, tau / std::sqrt(n2));
    for (size_t k = 0; k < xs[0].size(); ++k)
      out[k] += w[j] * s * (xs[j][k] - xs[0][k]);
  }
  return out;
}

// Least squares 0.5 mean (<w, x> - y)^2 on the training set, in closed form.
struct least_squares {
  Eigen::MatrixXd x;
  Eigen::VectorXd y, w_star;
  explicit least_squares(const dataset& d) : x(d.size(), d.num_features), y(d.size()) {
    for (int64_t k = 0; k < d.size(); ++k) {
      for (int64_t j = 0; j < d.num_features; ++j)
        x(k, j) = d.sample(k)[j];
      y(k) = d.y[static_cast<size_t>(k)];
    }
    w_star = (x.transpose() * x).ldlt().solve(x.transpose() * y);
  }
  double loss(const Eigen::VectorXd& w) const { return 0.5 * (x * w - y).squaredNorm() / y.size(); }
  double excess(const buffer& w) const {
    Eigen::VectorXd v(static_cast<Eigen::Index>(w.size()));
    for (size_t j = 0; j < w.size(); ++j)
      v(static_cast<Eigen::Index>(j)) = w[j];
    return loss(v) - loss(w_star);
  }
};

struct ring_run {
  train_test data = make_least_squares(4096, 256, 16, 0.1, 41);
  least_squares ls{*data.train};
  double f0_excess() const { return ls.loss(Eigen::VectorXd::Zero(16)) - ls.loss(ls.w_star); }

  // `algorithm` (gossip_sgd unless told) on a ring of n peers for `rounds` steps.
  caf::expected<run_summary> run(const std::string& byzantine,
                                 std::map<std::string, std::string> options, int n = 8,
                                 int64_t rounds = 300, const std::string& algorithm = "gossip_sgd") {
    test::graph g;
    auto parts = partition_iid(*data.train, n, 3);
    for (int i = 0; i < n; ++i) {
      worker_config wc;
      wc.rank = i;
      wc.model = "linear";
      wc.data = data.train;
      wc.shard = parts[static_cast<size_t>(i)];
      wc.batch = 16;
      wc.seed = 100 + static_cast<uint64_t>(i);
      g.add_worker(wc);
      g.ctx.shard_sizes.push_back(static_cast<int64_t>(parts[static_cast<size_t>(i)].size()));
    }
    worker_config ec;
    ec.model = "linear";
    ec.data = data.test;
    g.set_evaluator(ec);
    g.ctx.plan.train_size = data.train->size();
    g.ctx.plan.lr = 0.05f;
    g.ctx.plan.steps = rounds;
    g.ctx.plan.eval_every = 0;
    g.ctx.plan.eval_every_samples = 0;
    g.ctx.initial = buffer::from(std::vector<float>(16, 0.0f));
    options.emplace("topology", "ring");
    g.ctx.plan.options = options;
    g.ctx.byzantine = byzantine;
    return g.run(algorithm);
  }
};

run_plan plan_with(std::map<std::string, std::string> options) {
  run_plan plan;
  plan.options = std::move(options);
  complete_options(find_algorithm("gossip_sgd"), plan);
  return plan;
}

void expect_refused(std::map<std::string, std::string> options, size_t workers,
                    const std::string& says) {
  try {
    check_gossip_sgd(plan_with(options), workers);
    ADD_FAILURE() << "accepted; expected an error saying '" << says << "'";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find(says), std::string::npos) << e.what();
  }
}

} // namespace

// -- ClippedGossip's step on hand-made vectors ------------------------------------------

TEST(clipped_gossip, a_fixed_radius_clips_only_the_far_neighbours) {
  // Own (1, 1); a far neighbour at distance 5 and a near one at 0.5, each
  // with weight 1/4; tau = 1: the far one pulls by 1/4 * (3, 4)/5, the near
  // one by 1/4 * (0.3, 0.4).
  std::vector<std::vector<float>> xs{{1, 1}, {4, 5}, {1.3f, 1.4f}};
  std::vector<float> w{0.5f, 0.25f, 0.25f};
  auto step = clipped_gossip({vec(xs[0]), vec(xs[1]), vec(xs[2])}, w, 1.0, 0);
  ASSERT_EQ(step.x.size(), 2u);
  EXPECT_NEAR(step.x[0], 1 + 0.25 * 0.6 + 0.25 * 0.3, 1e-6);
  EXPECT_NEAR(step.x[1], 1 + 0.25 * 0.8 + 0.25 * 0.4, 1e-6);
  EXPECT_EQ(step.clipped, (std::vector<bool>{false, true, false}));
  EXPECT_DOUBLE_EQ(step.tau, 1.0);
  // A radius larger than every distance is plain gossip: sum_j w_j x_j.
  auto plain = clipped_gossip({vec(xs[0]), vec(xs[1]), vec(xs[2])}, w, 100.0, 0);
  EXPECT_NEAR(plain.x[0], 0.5 * 1 + 0.25 * 4 + 0.25 * 1.3, 1e-6);
  EXPECT_NEAR(plain.x[1], 0.5 * 1 + 0.25 * 5 + 0.25 * 1.4, 1e-6);
}

TEST(clipped_gossip, the_adaptive_radius_clips_the_f_farthest_to_the_next_distance) {
  // Own 0 in 1-D; neighbours at 1, -2, 3, 100 with equal weights 1/5.
  std::vector<std::vector<float>> xs{{0}, {1}, {-2}, {3}, {100}};
  std::vector<float> w(5, 0.2f);
  std::vector<buffer> in;
  for (auto& x : xs)
    in.push_back(vec(x));
  for (int f : {1, 2, 3}) {
    SCOPED_TRACE(f);
    auto step = clipped_gossip(in, w, 0.0, f);
    const double tau = f == 1 ? 3.0 : f == 2 ? 2.0 : 1.0;  // the (f+1)-th farthest
    EXPECT_DOUBLE_EQ(step.tau, tau);
    EXPECT_NEAR(step.x[0], clipped_ref(xs, w, tau)[0], 1e-6);
    int clipped = 0;
    for (bool c : step.clipped)
      clipped += c ? 1 : 0;
    EXPECT_EQ(clipped, f);
  }
}

TEST(clipped_gossip, unequal_weights_clip_the_farthest_weight_delta) {
  // f = 1: delta = the largest neighbour weight, 0.3. Farthest first: A
  // (w 0.1) is not enough, A + B (0.4) is: both are clipped to the distance
  // of C, the next one.
  std::vector<std::vector<float>> xs{{0, 0}, {0, 10}, {6, 0}, {1, 0}};  // own, A, B, C
  std::vector<float> w{0.4f, 0.1f, 0.3f, 0.2f};
  auto step = clipped_gossip({vec(xs[0]), vec(xs[1]), vec(xs[2]), vec(xs[3])}, w, 0.0, 1);
  EXPECT_DOUBLE_EQ(step.tau, 1.0);
  EXPECT_EQ(step.clipped, (std::vector<bool>{false, true, true, false}));
  auto ref = clipped_ref(xs, w, 1.0);
  EXPECT_NEAR(step.x[0], ref[0], 1e-6);
  EXPECT_NEAR(step.x[1], ref[1], 1e-6);
}

TEST(clipped_gossip, a_non_finite_or_short_neighbour_is_set_aside) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  std::vector<float> w{0.25f, 0.25f, 0.25f, 0.25f};
  auto step = clipped_gossip({vec({0, 0}), vec({nan, 1}), vec({2, 0}), vec({1})}, w, 0.0, 1);
  EXPECT_EQ(step.invalid, (std::vector<bool>{false, true, false, true}));
  // The two invalid ones count against f = 1: nothing else is clipped.
  EXPECT_DOUBLE_EQ(step.tau, 2.0);
  EXPECT_NEAR(step.x[0], 0.25 * 2, 1e-6);
  EXPECT_NEAR(step.x[1], 0.0, 1e-6);
  EXPECT_TRUE(std::isfinite(step.x[0]) && std::isfinite(step.x[1]));
}

// -- a Byzantine peer on least squares -----------------------------------------------------

TEST(robust_gossip, plain_gossip_is_destroyed_and_clipped_gossip_holds) {
  ring_run lsq;
  const double f0 = lsq.f0_excess();
  auto clean = lsq.run("", {});
  ASSERT_TRUE(clean) << describe(clean.error());
  const double clean_excess = lsq.ls.excess(clean->final_weights);
  // Peer 0 sends 100 x its model: a large-norm forgery.
  const std::string attack = "0:scale:100";
  auto plain = lsq.run(attack, {});
  const double plain_excess = plain ? lsq.ls.excess(plain->final_weights) : INFINITY;
  std::printf("[ measured ] ring 8, peer 0 scale:100: clean %.3g, plain %.3g%s (f(0) - f* = %.3g)\n",
              clean_excess, plain_excess, plain ? "" : " (run failed)", f0);
  EXPECT_TRUE(!plain || !(plain_excess < 0.5 * f0)) << "plain gossip should not survive this";
  for (auto [spec, f] : std::vector<std::pair<std::string, std::string>>{
         {"cc:auto", "1"}, {"cc:0.05", "0"}, {"median", "1"}}) {
    SCOPED_TRACE(spec);
    auto r = lsq.run(attack, {{"aggregator", spec}, {"f", f}});
    ASSERT_TRUE(r) << describe(r.error());
    const double excess = lsq.ls.excess(r->final_weights);
    std::printf("[ measured ] ring 8, peer 0 scale:100, %s: f(x_bar) - f* = %.3g\n", spec.c_str(),
                excess);
    EXPECT_LT(excess, 2e-2 * f0);
    EXPECT_LT(excess, clean_excess + 1e-2 * f0);
    // The forgeries reach peers 1 and 7 every round and are cut down there.
    EXPECT_GE(metric(*r, "clipped_p1"), 300 * 0.9);
    EXPECT_GE(metric(*r, "clipped_p7"), 300 * 0.9);
  }
}

TEST(robust_gossip, nan_models_are_rejected_and_counted_per_peer_with_a_robust_mix) {
  ring_run lsq;
  for (std::string spec : {"cc:auto", "median"}) {
    SCOPED_TRACE(spec);
    auto r = lsq.run("0:nan", {{"aggregator", spec}, {"f", "1"}}, 8, 100);
    ASSERT_TRUE(r) << describe(r.error());
    EXPECT_EQ(r->stop_reason, "budget");
    // Peer 0's neighbours on the ring reject its model every round; nobody
    // else ever sees one.
    EXPECT_EQ(metric(*r, "rejected_p1"), 100);
    EXPECT_EQ(metric(*r, "rejected_p7"), 100);
    EXPECT_EQ(metric(*r, "rejected_total"), 200);
    for (int i : {0, 2, 3, 4, 5, 6})
      EXPECT_EQ(r->extra.count("rejected_p" + std::to_string(i)), 0u) << i;
    EXPECT_LT(lsq.ls.excess(r->final_weights), 5e-2 * lsq.f0_excess());
  }
  auto plain = lsq.run("0:nan", {}, 8, 100);
  ASSERT_FALSE(plain);
  EXPECT_EQ(static_cast<errc>(plain.error().code()), errc::non_finite);
}

TEST(robust_gossip, an_asynchronous_byzantine_peer_forges_what_it_sends_and_replies) {
  // async_gossip has no robust mix: a NaN peer's exchanges poison its
  // partners, whose next local step fails the run; without it the run ends.
  ring_run lsq;
  auto honest = lsq.run("", {}, 8, 400, "async_gossip");
  ASSERT_TRUE(honest) << describe(honest.error());
  auto attacked = lsq.run("0:nan", {}, 8, 400, "async_gossip");
  ASSERT_FALSE(attacked);
  EXPECT_EQ(static_cast<errc>(attacked.error().code()), errc::non_finite);
  EXPECT_NE(describe(attacked.error()).find("NaN"), std::string::npos) << describe(attacked.error());
}

// -- refusals --------------------------------------------------------------------------------

TEST(robust_gossip, combinations_that_make_no_sense_are_refused) {
  expect_refused({{"aggregator", "krum"}, {"f", "1"}}, 8, "needs n > 2f + 2");
  expect_refused({{"aggregator", "cc:auto"}}, 8, "needs --f >= 1");
  expect_refused({{"aggregator", "cc:auto"}, {"f", "2"}}, 8, "only 2 in-neighbour");
  expect_refused({{"aggregator", "cc:1"}, {"f", "1"}}, 8, "takes no f");
  expect_refused({{"aggregator", "cc:1,3"}}, 8, "ITERS must be 1");
  expect_refused({{"aggregator", "cc:-1"}}, 8, "TAU must be a number > 0 or auto");
  expect_refused({{"aggregator", "cc:auto"}, {"f", "1"}, {"pre", "nnm"}}, 8, "--pre nnm");
  expect_refused({{"f", "1"}}, 8, "need --aggregator");
  expect_refused({{"aggregator", "nosuch"}}, 8, "unknown aggregator");
  // A complete graph gives every peer 8 inputs: krum with f = 1 runs there.
  EXPECT_NO_THROW(check_gossip_sgd(plan_with({{"aggregator", "krum"}, {"f", "1"}, {"topology", "complete"}}), 8));
  EXPECT_NO_THROW(check_gossip_sgd(plan_with({{"aggregator", "cc:auto"}, {"f", "1"}}), 8));
  // The other decentralized protocols take no aggregator: each refuses it (and
  // --pre, --f) by name instead of running the plain mix as if defended.
  for (const char* algo : {"async_gossip", "gradient_tracking", "choco_gossip"})
    for (auto [key, value] : {std::pair{"aggregator", "median"}, {"pre", "nnm"}, {"f", "1"}}) {
      try {
        check_options(find_algorithm(algo), {{key, value}});
        ADD_FAILURE() << algo << " accepted --" << key;
      } catch (const std::invalid_argument& e) {
        EXPECT_NE(std::string(e.what()).find(std::string("option ") + key + " is not used by " + algo),
                  std::string::npos) << e.what();
      }
    }
  // Omniscient attacks need the honest vectors of a round: no gossip peer has them.
  run_context ctx;
  ctx.workers.resize(8);
  ctx.byzantine = "0:alie";
  try {
    byzantine_peers(ctx);
    ADD_FAILURE() << "alie accepted on gossip";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("no gossip peer sees"), std::string::npos) << e.what();
  }
  ctx.byzantine = "0,3:signflip";
  EXPECT_EQ(byzantine_peers(ctx), (std::vector<bool>{true, false, false, true, false, false, false, false}));
}

TEST(robust_gossip, the_runner_refuses_alie_on_gossip_before_loading_anything) {
  experiment_config cfg;
  cfg.algorithm = "gossip_sgd";
  cfg.dataset = "synthetic-lsq";
  cfg.model = "linear";
  cfg.workers = 6;
  cfg.steps = 5;
  cfg.byzantine = "1:ipm:0.5";
  try {
    run_experiment(cfg);
    ADD_FAILURE() << "ipm accepted on gossip_sgd";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("no gossip peer sees"), std::string::npos) << e.what();
  }
}
