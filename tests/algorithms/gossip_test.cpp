// Decentralized protocols (issue: gossip_sgd, async_gossip, gradient_tracking).
//  - pure gossip (eta = 0) contracts the consensus distance by |lambda_2(W)|^2
//    per round (ring n = 8, 16; static exponential graph), keeping the mean;
//  - DSGD (atc and cta) reaches the least-squares optimum's neighbourhood,
//    computed in closed form from the normal equations; gossip bytes counted;
//  - gradient tracking reaches the exact optimum on a split by target where
//    DSGD with the same constant step stalls far from it;
//  - a crashed worker, or one that stops answering, never hangs the run;
//    crashes that cut the graph are logged and counted ("components");
//  - the time-varying one-peer exponential graph runs and converges;
//  - a sample budget, a stop, and a diverging step size end the run;
//  - async pairwise gossip keeps the mean exactly, converges, keeps its
//    peers' progress even and waits for no silent node;
//  - bad options are refused where the run is built;
//  - CHOCO-SGD with qsgd and top-k reaches consensus and the optimum's
//    neighbourhood where naive compressed gossip (averaging decoded
//    compressed models) does not; with no compression and gamma 1 it is
//    DSGD; time-varying graphs, bad gamma and --compress on other gossip
//    protocols are refused with a clear error.
// The protocols are spawned directly (the registry lists them elsewhere); a
// recording monitor keeps every metrics row so the tests can read them.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <mutex>
#include <numeric>
#include <random>

#include <Eigen/Dense>
#include <Eigen/Eigenvalues>

#include "algorithms/gossip.hpp"
#include "engines/compressors.hpp"
#include "engines/gossip.hpp"
#include "tests/algorithms/harness.hpp"
#include "tests/algorithms/scripted.hpp"

using namespace chorus;

namespace {

// -- a small network builder (with a recording monitor) -----------------------------

using test::metric;
using test::recorder;
using test::recording;

using spawn_fn = std::function<protocol_actor(caf::actor_system&, run_context, std::vector<buffer>)>;

const spawn_fn gossip_sgd = [](caf::actor_system& sys, run_context ctx, std::vector<buffer> x0) {
  return spawn_gossip_sgd_from(sys, std::move(ctx), std::move(x0));
};
const spawn_fn async_gossip = [](caf::actor_system& sys, run_context ctx, std::vector<buffer> x0) {
  return spawn_async_gossip_from(sys, std::move(ctx), std::move(x0));
};
const spawn_fn choco_gossip = [](caf::actor_system& sys, run_context ctx, std::vector<buffer>) {
  return spawn_choco_gossip(sys, std::move(ctx));
};
const spawn_fn gradient_tracking = [](caf::actor_system& sys, run_context ctx,
                                      std::vector<buffer> x0) {
  return spawn_gradient_tracking_from(sys, std::move(ctx), std::move(x0));
};

struct net {
  test::graph g;
  std::shared_ptr<recording> rec = std::make_shared<recording>();
  train_test data;

  net(train_test d, const partition& parts, int32_t batch, sampling order = sampling::shuffle,
      int64_t crash_rank = -1, int64_t crash_at = -1, std::vector<int64_t> also_crash = {})
    : data(std::move(d)) {
    g.ctx.monitor = g.guard.add(g.ts.sys.spawn(recorder, rec));
    for (size_t i = 0; i < parts.size(); ++i) {
      worker_config wc;
      wc.rank = static_cast<int32_t>(i);
      wc.model = "linear";
      wc.data = data.train;
      wc.shard = parts[i];
      wc.batch = batch;
      wc.seed = 100 + i;
      wc.order = order;
      if (static_cast<int64_t>(i) == crash_rank
          || std::count(also_crash.begin(), also_crash.end(), static_cast<int64_t>(i)) > 0)
        wc.inject.crash_at_step = crash_at;
      g.add_worker(wc);
      g.ctx.shard_sizes.push_back(static_cast<int64_t>(parts[i].size()));
    }
    worker_config ec;
    ec.model = "linear";
    ec.data = data.test;
    g.set_evaluator(ec);
    g.ctx.plan.train_size = data.train->size();
    g.ctx.initial = buffer::from(std::vector<float>(static_cast<size_t>(data.train->num_features), 0.0f));
  }

  caf::expected<run_summary> run(const spawn_fn& spawn, std::vector<buffer> x0 = {}) {
    auto proto = g.guard.add(spawn(g.ts.sys, g.ctx, std::move(x0)));
    caf::scoped_actor self{g.ts.sys};
    caf::expected<run_summary> out{caf::error{}};
    self->request(proto, std::chrono::seconds(60), run_atom_v)
      .receive([&](run_summary& s) { out = std::move(s); },
               [&](caf::error& e) { out = std::move(e); });
    // Every row the protocol sent precedes its reply; a flush after the
    // reply therefore finds them all recorded.
    self->request(g.ctx.monitor, std::chrono::seconds(10), flush_atom_v)
      .receive([](ok_atom) {}, [](caf::error&) {});
    return out;
  }

  std::vector<metrics_row> rows() {
    std::lock_guard<std::mutex> lock(rec->m);
    return rec->rows;
  }
};

// Contiguous shards of equal size over `order` (indices into the train set).
partition slices(const std::vector<int64_t>& order, int n) {
  partition p(static_cast<size_t>(n));
  const size_t per = order.size() / static_cast<size_t>(n);
  for (int i = 0; i < n; ++i)
    p[static_cast<size_t>(i)].assign(order.begin() + static_cast<long>(i * per),
                                     order.begin() + static_cast<long>((i + 1) * per));
  return p;
}

std::vector<int64_t> iota_order(int64_t size) {
  std::vector<int64_t> order(static_cast<size_t>(size));
  std::iota(order.begin(), order.end(), int64_t{0});
  return order;
}

// The least-squares problem 0.5 mean_k (<w, x_k> - y_k)^2 over `idx`
// (the whole training set when empty), in closed form.
struct least_squares {
  Eigen::MatrixXd x;  // one row per sample
  Eigen::VectorXd y;
  Eigen::VectorXd w_star;
  double f_star = 0;

  explicit least_squares(const dataset& d) : x(d.size(), d.num_features), y(d.size()) {
    for (int64_t k = 0; k < d.size(); ++k) {
      for (int64_t j = 0; j < d.num_features; ++j)
        x(k, j) = d.sample(k)[j];
      y(k) = d.y[static_cast<size_t>(k)];
    }
    w_star = (x.transpose() * x).ldlt().solve(x.transpose() * y);
    f_star = loss(w_star);
  }
  double loss(const Eigen::VectorXd& w) const { return 0.5 * (x * w - y).squaredNorm() / y.size(); }
  double loss(const buffer& w) const { return loss(as_vector(w)); }
  double distance(const buffer& w) const { return (as_vector(w) - w_star).norm(); }
  static Eigen::VectorXd as_vector(const buffer& w) {
    Eigen::VectorXd v(static_cast<Eigen::Index>(w.size()));
    for (size_t j = 0; j < w.size(); ++j)
      v(static_cast<Eigen::Index>(j)) = w[j];
    return v;
  }
};

std::vector<buffer> random_models(int n, size_t d, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::vector<buffer> xs;
  for (int i = 0; i < n; ++i) {
    std::vector<float> x(d);
    for (auto& v : x)
      v = normal(rng);
    xs.push_back(buffer::from(x));
  }
  return xs;
}

// |lambda_2(W)|: the second-largest eigenvalue modulus from W's spectrum
// (complex for a non-symmetric W).
double lambda_2_modulus(const mixing_matrix& m) {
  Eigen::MatrixXd w(m.n, m.n);
  for (int i = 0; i < m.n; ++i)
    for (int j = 0; j < m.n; ++j)
      w(i, j) = m.at(i, j);
  Eigen::EigenSolver<Eigen::MatrixXd> es(w, false);
  std::vector<double> moduli;
  for (Eigen::Index k = 0; k < es.eigenvalues().size(); ++k)
    moduli.push_back(std::abs(es.eigenvalues()(k)));
  std::sort(moduli.begin(), moduli.end(), std::greater<double>());
  return moduli[1];
}

} // namespace

TEST(gossip, consensus_distance_is_the_mean_squared_distance_to_the_average) {
  auto be = make_eigen_backend();
  buffer mean;
  // x_bar = (1, 1); distances 1 + 1, 1 + 1, 0 + 0 -> mean 4/3.
  auto vec = [](float a, float b) { return buffer::from(std::vector<float>{a, b}); };
  std::vector<buffer> xs{vec(0, 0), vec(2, 2), vec(1, 1)};
  EXPECT_DOUBLE_EQ(consensus_distance(*be, xs, &mean), 4.0 / 3.0);
  EXPECT_EQ(mean.to_vector(), (std::vector<float>{1, 1}));
  EXPECT_EQ(consensus_distance(*be, {vec(3, 4)}), 0.0);
  EXPECT_EQ(consensus_distance(*be, {}), 0.0);
}

TEST(gossip, replicas_in_exact_consensus_average_to_themselves_bit_for_bit) {
  // allreduce_sgd's replicas hold the same floats; x_bar must be those
  // floats, while the mean of three equal floats need not be the float.
  auto be = make_eigen_backend();
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-3, 3);
  std::vector<float> a(4096);
  for (auto& v : a)
    v = u(rng);
  auto x = buffer::from(a);
  std::vector<buffer> same{x, buffer::from(a), buffer::from(a)};  // one shared, two copies
  // What the plain mean gives: off in some last bit for these floats (the
  // case the exact path exists for; if it ever stops being so, this test no
  // longer shows anything and says so).
  mutable_buffer plain(a.size());
  be->mean(std::vector<cview>(same.begin(), same.end()), plain.span());
  ASSERT_FALSE(std::equal(a.begin(), a.end(), plain.data()))
    << "the mean of 3 equal vectors rounded to the vector itself: pick other floats";
  buffer mean;
  EXPECT_EQ(consensus_distance(*be, same, &mean), 0.0);
  EXPECT_EQ(mean.to_vector(), a);
  // One bit off in one replica: the general path, a distance > 0.
  a[100] = std::nextafter(a[100], 10.0f);
  same[2] = buffer::from(a);
  EXPECT_GT(consensus_distance(*be, same, &mean), 0.0);
}

// The consensus distance of x_r = W^r x_0, in double: the exact prediction
// for a run with eta = 0 (round r's row is taken after r rounds).
std::vector<double> predicted_consensus(const mixing_matrix& m, const std::vector<buffer>& x0, int rounds) {
  const auto n = static_cast<Eigen::Index>(m.n);
  const auto d = static_cast<Eigen::Index>(x0[0].size());
  Eigen::MatrixXd w(n, n), x(n, d);
  for (Eigen::Index i = 0; i < n; ++i) {
    for (Eigen::Index j = 0; j < n; ++j)
      w(i, j) = m.at(static_cast<int>(i), static_cast<int>(j));
    for (Eigen::Index k = 0; k < d; ++k)
      x(i, k) = x0[static_cast<size_t>(i)][static_cast<size_t>(k)];
  }
  std::vector<double> out;
  for (int r = 0; r <= rounds; ++r) {
    Eigen::RowVectorXd mean = x.colwise().mean();
    out.push_back((x.rowwise() - mean).rowwise().squaredNorm().mean());
    x = w * x;
  }
  return out;
}

// With eta = 0 DSGD is x <- W x. Write x = x_bar 1 + sum_k c_k v_k over W's
// eigenvectors: each round multiplies c_k by lambda_k, so the squared
// distance to consensus shrinks by |lambda_2|^2 per round once the other
// modes have died out. For a symmetric W (ring) |lambda_2| is the SLEM; the
// exponential graph's W is not symmetric, so its rate is taken from the
// eigenvalues (W is circulant, hence normal: there the modulus of lambda_2
// equals the second singular value, which topology's SLEM reports; for a
// non-normal W the two would differ). Measured: the geometric mean of the
// per-round ratios between rounds r0 and r1, r0 late enough for the next
// mode to be negligible, r1 early enough for float rounding not to matter
// (the run keeps x in float; its consensus distance is still ~1e-9 of the
// start at r1, while rounding alone would leave ~1e-14).
//
// Two claims: each round's consensus distance is the one W^r x_0 has in
// double, within 0.1% (the protocol mixes exactly by W), and the measured
// rate is |lambda_2|^2 within 1% (the README's statement; measured: ring
// n=8 0.64760 vs 0.64760, ring n=16 0.90097 vs 0.90108, exp n=16 0.35922 vs
// 0.36). The exponential graph's next modulus is 0.530 against 0.6
// (squared: 0.281 vs 0.36), so its window starts later than the rings' for
// that mode to fade: from round 10 the rate came out 1.05% low.
TEST(gossip_sgd, pure_gossip_contracts_by_the_squared_second_eigenvalue_per_round) {
  struct setting {
    std::string topology;
    int n;
    int r0, r1;
  };
  auto data = make_least_squares(1024, 64, 16, 0.1, 21);
  for (auto s : {setting{"ring", 8, 5, 40}, setting{"ring", 16, 15, 80}, setting{"exp", 16, 16, 26}}) {
    for (std::string order : {"atc", "cta"}) {
      net nw(data, slices(iota_order(data.train->size()), s.n), 8);
      nw.g.ctx.plan.lr = 0;
      nw.g.ctx.plan.steps = s.r1;
      nw.g.ctx.plan.eval_every = 1;
      nw.g.ctx.plan.options = {{"topology", s.topology}, {"mix_order", order}};
      auto x0 = random_models(s.n, 16, 7);
      auto be = make_eigen_backend();
      buffer mean0;
      const double d0 = consensus_distance(*be, x0, &mean0);
      auto r = nw.run(gossip_sgd, x0);
      ASSERT_TRUE(r) << describe(r.error());
      std::map<int64_t, double> cd;
      for (auto& row : nw.rows())
        cd[row.step] = metric(row.extra, "consensus_distance");
      ASSERT_EQ(cd.size(), static_cast<size_t>(s.r1)) << "one row per round";
      const auto w = make_topology(s.topology, s.n, weight_rule::uniform);
      const auto predicted = predicted_consensus(w.phases[0], x0, s.r1);
      // Round by round, while the distance is above 1e-11 of the start
      // (below, float rounding of x, ~1e-16 of the start, is a visible share).
      double worst_round = 0;  // the largest relative gap to the prediction
      for (int t = 1; t <= s.r1; ++t) {
        const double p = predicted[static_cast<size_t>(t)];
        if (p < 1e-11 * d0)
          continue;
        worst_round = std::max(worst_round, std::fabs(cd[t] - p) / p);
        EXPECT_NEAR(cd[t], p, 1e-3 * p) << s.topology << " n=" << s.n << " " << order << " round " << t;
      }
      const double expected = std::pow(lambda_2_modulus(w.phases[0]), 2);
      const double measured = std::pow(cd[s.r1] / cd[s.r0], 1.0 / (s.r1 - s.r0));
      const double exact = std::pow(predicted[static_cast<size_t>(s.r1)] / predicted[static_cast<size_t>(s.r0)],
                                    1.0 / (s.r1 - s.r0));
      EXPECT_NEAR(measured, expected, 0.01 * expected) << s.topology << " n=" << s.n << " " << order;
      EXPECT_LT(cd[1], d0);
      // Pure gossip keeps the average (W is doubly stochastic).
      double moved = 0;
      for (size_t j = 0; j < mean0.size(); ++j)
        moved = std::max(moved, double(std::fabs(r->final_weights[j] - mean0[j])));
      EXPECT_LT(moved, 1e-5);
      EXPECT_NEAR(metric(*r, "spectral_gap"), spectral_gap(w), 1e-12);
      std::printf("[ measured ] %s n=%d %s rounds %d-%d: per-round contraction %.5f, in double %.5f, "
                  "|lambda_2|^2 %.5f (SLEM^2 %.5f); cd(r1)/cd(0) %.3g, rounds within %.2g of W^r x0\n",
                  s.topology.c_str(), s.n, order.c_str(), s.r0, s.r1, measured, exact, expected,
                  std::pow(second_largest_eigenvalue_modulus(w.phases[0]), 2), cd[s.r1] / d0, worst_round);
    }
  }
}

TEST(gossip_sgd, atc_and_cta_reach_the_least_squares_neighbourhood_and_count_bytes) {
  auto data = make_least_squares(4096, 256, 16, 0.1, 22);
  least_squares ls(*data.train);
  const int n = 8, rounds = 300;
  const double f0 = ls.loss(Eigen::VectorXd::Zero(16));
  for (std::string order : {"atc", "cta"}) {
    net nw(data, partition_iid(*data.train, n, 3), 16);
    nw.g.ctx.plan.lr = 0.05f;
    nw.g.ctx.plan.steps = rounds;
    nw.g.ctx.plan.eval_every = 100;
    nw.g.ctx.plan.options = {{"topology", "ring"}, {"mix_order", order}};
    auto r = nw.run(gossip_sgd);
    ASSERT_TRUE(r) << describe(r.error());
    const double excess = ls.loss(r->final_weights) - ls.f_star;
    std::printf("[ measured ] dsgd %s: f(x_bar) - f* = %.3g (f(0) - f* = %.3g, f* = %.3g)\n",
                order.c_str(), excess, f0 - ls.f_star, ls.f_star);
    EXPECT_LT(excess, 2e-3 * (f0 - ls.f_star)) << order;
    EXPECT_EQ(r->steps, rounds);
    EXPECT_EQ(r->stop_reason, "budget");
    EXPECT_EQ(r->samples, int64_t{rounds} * n * 16);
    // A ring: every node sends one message to each of its 2 neighbours.
    const int64_t message = static_cast<int64_t>(buffer::from(std::vector<float>(16)).wire_bytes());
    EXPECT_EQ(r->bytes_sent, int64_t{rounds} * n * 2 * message);
    EXPECT_DOUBLE_EQ(metric(*r, "bytes_per_worker_per_round"), 2.0 * message);
    // Reported after the final evaluation of every x_i; the linear model's
    // accuracy is 0 by definition (regression), so the worst is exactly 0
    // (NaN if no peer was evaluated). The metric's meaning is checked on a
    // scripted evaluator below.
    EXPECT_EQ(metric(*r, "worst_worker_acc"), 0.0);
    EXPECT_LT(metric(*r, "consensus_distance"), 1e-2);
    EXPECT_EQ(nw.rows().size(), 3u);  // rounds 100, 200 and the final one
  }
}

// worst_worker_acc is the lowest accuracy among the peers' own models x_i,
// scored at the end. A scripted evaluator scores a model by its first
// coordinate. Four peers on a ring (weights 1/3: self and both neighbours),
// eta = 0, first coordinates 0.1, 0.4, 0.7, 1.0; after one round of mixing
// they hold (1.0 + 0.1 + 0.4) / 3 = 0.5, 0.4, 0.7 and 0.6: the worst is 0.4
// (peer 1), and the averaged model scores their mean 0.55.
TEST(gossip_sgd, worst_worker_acc_is_the_lowest_accuracy_of_the_peers_models) {
  auto data = make_least_squares(256, 64, 4, 0.1, 34);
  net nw(data, partition_iid(*data.train, 4, 15), 8);
  nw.g.ctx.evaluator = nw.g.guard.add(test::spawn_scripted(
    nw.g.ts.sys, -1, [](const test::scripted_call&) { return test::scripted_reply{}; }, nullptr,
    [](const std::vector<float>& w) { return static_cast<double>(w[0]); }));
  nw.g.ctx.plan.lr = 0;
  nw.g.ctx.plan.steps = 1;
  nw.g.ctx.plan.options = {{"topology", "ring"}};
  std::vector<buffer> x0;
  for (float v : {0.1f, 0.4f, 0.7f, 1.0f})
    x0.push_back(buffer::from(std::vector<float>{v, 0, 0, 0}));
  auto r = nw.run(gossip_sgd, x0);
  ASSERT_TRUE(r) << describe(r.error());
  EXPECT_NEAR(metric(*r, "worst_worker_acc"), 0.4, 1e-6);
  EXPECT_NEAR(r->test_acc, 0.55, 1e-6);
}

// Each worker holds one slice of the data sorted by target, and computes
// full-batch gradients, so the only error left is the bias heterogeneity
// puts into DSGD's fixed point; gradient tracking has none. The noise is
// large on purpose: with y = <w*, x> + noise, a slice's gradient at the
// optimum is E[x noise | y in the slice], which the noise sets.
TEST(gradient_tracking, reaches_the_optimum_on_a_split_by_target_where_dsgd_stalls) {
  auto data = make_least_squares(2048, 256, 16, 2.0, 23);
  least_squares ls(*data.train);
  const int n = 8;
  auto order = iota_order(data.train->size());
  std::sort(order.begin(), order.end(), [&](int64_t a, int64_t b) {
    return data.train->y[static_cast<size_t>(a)] < data.train->y[static_cast<size_t>(b)];
  });
  auto parts = slices(order, n);
  std::map<std::string, double> distance;
  for (auto [name, spawn] : {std::pair{"gossip_sgd", gossip_sgd}, std::pair{"gradient_tracking", gradient_tracking}}) {
    net nw(data, parts, static_cast<int32_t>(parts[0].size()), sampling::sequential);
    nw.g.ctx.plan.lr = 0.05f;
    nw.g.ctx.plan.steps = 600;
    nw.g.ctx.plan.options = {{"topology", "ring"}};
    auto r = nw.run(spawn);
    ASSERT_TRUE(r) << name << ": " << describe(r.error());
    distance[name] = ls.distance(r->final_weights);
    std::printf("[ measured ] %s: ||x_bar - w*|| = %.3g (||w*|| = %.3g)\n", name,
                distance[name], ls.w_star.norm());
  }
  EXPECT_LT(distance["gradient_tracking"], 1e-3 * ls.w_star.norm());
  EXPECT_GT(distance["gossip_sgd"], 20 * distance["gradient_tracking"]);
  EXPECT_GT(distance["gossip_sgd"], 1e-2 * ls.w_star.norm());  // visibly stalled
}

// Worker 3 dies at round 20. Its peer leaves; its neighbours see it go and
// mix without it. The timeout is long (30 s), and the run ends before it:
// no one waited for it. The bound is the timeout itself, not a guess at the
// machine's speed: the run needs ~0.1 s of work, so only a wait for the
// timeout can reach it.
TEST(gossip, a_crashed_worker_does_not_hang_its_neighbours) {
  auto data = make_least_squares(2048, 256, 16, 0.1, 24);
  least_squares ls(*data.train);
  for (auto [name, spawn] : {std::pair{"gossip_sgd", gossip_sgd}, std::pair{"gradient_tracking", gradient_tracking},
                             std::pair{"async_gossip", async_gossip}}) {
    net nw(data, partition_iid(*data.train, 6, 4), 16, sampling::shuffle, 3, 20);
    nw.g.ctx.plan.lr = 0.03f;
    nw.g.ctx.plan.steps = std::string(name) == "async_gossip" ? 600 : 100;
    nw.g.ctx.plan.timeout = std::chrono::milliseconds(30000);
    nw.g.ctx.plan.options = {{"topology", "ring"}};
    auto r = nw.run(spawn);
    ASSERT_TRUE(r) << name << ": " << describe(r.error());
    EXPECT_EQ(r->workers_lost, 1) << name;
    EXPECT_EQ(r->stop_reason, "budget") << name;
    EXPECT_EQ(r->steps, nw.g.ctx.plan.steps) << name;
    EXPECT_LT(r->wall_s, 30.0) << name;
    EXPECT_EQ(metric(*r, "workers_alive"), 5) << name;
    EXPECT_EQ(metric(*r, "components"), 1) << name;  // a ring less one node is a path
    // Gradient tracking loses the dead node's share of the trackers' sum,
    // so its survivors settle at a biased point (see gradient_tracking.cpp).
    EXPECT_LT(ls.loss(r->final_weights) - ls.f_star, std::string(name) == "gradient_tracking" ? 0.5 : 0.05)
      << name;
  }
}

// Crashes that cut the graph in parts: the run goes on (each part gossips on
// its own) but says so, in a log line naming the parts and in the
// "components" metric of its rows and summary. A ring of 6 without 1 and 4
// leaves {0,5} and {2,3}; a star without its hub leaves every leaf alone.
// The one-peer exponential graph without 1 and 4 stays whole: no single
// phase joins 0, 2, 3 and 5, but their union does (0->2, 2->3, 3->5).
TEST(gossip, crashes_that_split_the_graph_are_logged_and_counted) {
  auto data = make_least_squares(1536, 256, 8, 0.1, 25);
  struct split_case {
    const char* topology;
    int n;
    std::vector<int64_t> crashed;
    int components;
    const char* parts;
  };
  for (const auto& c : {split_case{"ring", 6, {1, 4}, 2, "{0,5} {2,3}"},
                        split_case{"star", 4, {0}, 3, "{1} {2} {3}"},
                        split_case{"onepeer-exp", 6, {1, 4}, 1, ""}}) {
    for (auto [name, spawn] : {std::pair{"gossip_sgd", gossip_sgd}, std::pair{"async_gossip", async_gossip}}) {
      SCOPED_TRACE(std::string(c.topology) + ", " + name);
      net nw(data, partition_iid(*data.train, c.n, 4), 16, sampling::shuffle, -1, 10, c.crashed);
      nw.g.ctx.plan.lr = 0.03f;
      nw.g.ctx.plan.steps = std::string(name) == "async_gossip" ? 400 : 60;
      nw.g.ctx.plan.timeout = std::chrono::milliseconds(30000);
      nw.g.ctx.plan.options = {{"topology", c.topology}};
      auto r = nw.run(spawn);
      ASSERT_TRUE(r) << describe(r.error());
      EXPECT_EQ(r->workers_lost, static_cast<int32_t>(c.crashed.size()));
      EXPECT_EQ(r->stop_reason, "budget");
      EXPECT_EQ(metric(*r, "components"), c.components);
      std::vector<std::string> warnings;
      {
        std::lock_guard<std::mutex> lock(nw.rec->m);
        for (auto& line : nw.rec->lines)
          if (line.find("split into") != std::string::npos)
            warnings.push_back(line);
      }
      if (c.components == 1) {
        EXPECT_TRUE(warnings.empty()) << warnings.front();
      } else {
        // One warning per growth of the count: the ring splits at its second
        // loss only, the star at its first.
        ASSERT_EQ(warnings.size(), 1u);
        EXPECT_NE(warnings[0].find("split into " + std::to_string(c.components) + " components "
                                   + c.parts),
                  std::string::npos)
          << warnings[0];
      }
    }
  }
}

namespace {

// A worker that answers with zero gradients until step `hang_at`, and from
// then on keeps every request without ever answering: alive, but silent.
struct silent_state {
  static inline const char* name = "test.silent_worker";
  std::vector<caf::typed_response_promise<gradient>> held;
};

worker_actor::behavior_type silent(worker_actor::stateful_pointer<silent_state> self, int32_t rank,
                                   size_t params, int64_t hang_at) {
  return {
    [=](compute_atom, weights w) -> caf::result<gradient> {
      if (w.step < hang_at)
        return gradient{rank, w.step, buffer::from(std::vector<float>(params, 0.0f)), 0.5f, 1};
      auto rp = self->make_response_promise<gradient>();
      self->state.held.push_back(rp);
      return rp;
    },
    [](local_atom, weights, local_plan) -> caf::result<local_result> {
      return make_error(errc::bad_request, "silent worker");
    },
    [](evaluate_atom, weights w) { return evaluation{-1, w.step, 0.5, 0.5, 1}; },
    [](apply_atom, weights) { return ok_atom_v; },
    [](fetch_atom) { return weights{}; },
  };
}

} // namespace

// Worker 2 stops answering at round 10 but stays alive. In the round
// protocols its neighbours must wait for it: its peer gives up on it after
// plan.timeout and leaves, and the others go on. The run ends later than the
// timeout (waiting for it is the point: a lower bound a timer implies), with
// one worker lost. The upper bound only tells one wait from many: a wait in
// each of the 50 rounds left would take 25 s; the run's own work is ~0.1 s,
// so 10 s leaves a 20x margin for a loaded machine.
TEST(gossip, a_silent_worker_is_given_up_after_the_timeout) {
  auto data = make_least_squares(1024, 64, 16, 0.1, 25);
  for (auto [name, spawn] : {std::pair{"gossip_sgd", gossip_sgd}, std::pair{"gradient_tracking", gradient_tracking}}) {
    net nw(data, partition_iid(*data.train, 5, 5), 16);
    nw.g.ctx.workers[2] = nw.g.guard.add(nw.g.ts.sys.spawn(silent, 2, size_t{16}, int64_t{10}));
    nw.g.ctx.plan.lr = 0.03f;
    nw.g.ctx.plan.steps = 60;
    nw.g.ctx.plan.timeout = std::chrono::milliseconds(500);
    nw.g.ctx.plan.options = {{"topology", "ring"}};
    auto r = nw.run(spawn);
    ASSERT_TRUE(r) << name << ": " << describe(r.error());
    EXPECT_EQ(r->workers_lost, 1) << name;
    EXPECT_EQ(r->stop_reason, "budget") << name;
    EXPECT_EQ(r->steps, 60) << name;
    EXPECT_GE(r->wall_s, 0.5) << name;
    EXPECT_LT(r->wall_s, 10.0) << name;
  }
}

// In async_gossip nobody waits for a silent node: it still answers averages
// while its own step hangs, and the others' steps fill the budget before the
// timeout (30 s, against ~0.1 s of work: only a wait for it reaches it).
TEST(async_gossip, a_silent_worker_holds_nobody_up) {
  auto data = make_least_squares(1024, 64, 16, 0.1, 25);
  net nw(data, partition_iid(*data.train, 5, 5), 16);
  nw.g.ctx.workers[2] = nw.g.guard.add(nw.g.ts.sys.spawn(silent, 2, size_t{16}, int64_t{10}));
  nw.g.ctx.plan.lr = 0.03f;
  nw.g.ctx.plan.steps = 400;
  nw.g.ctx.plan.timeout = std::chrono::milliseconds(30000);
  nw.g.ctx.plan.options = {{"topology", "ring"}};
  auto r = nw.run(async_gossip);
  ASSERT_TRUE(r) << describe(r.error());
  EXPECT_EQ(r->stop_reason, "budget");
  EXPECT_EQ(r->steps, 400);
  EXPECT_LT(r->wall_s, 30.0);
  EXPECT_EQ(metric(*r, "peer_steps_min"), 10);  // the silent one, stuck at its 10th step
}

// Many peers: the first ones started send round-0 messages to peers whose
// own start message has not been handled yet. Those messages must be kept,
// not taken for strays (that would stall the receiver until the timeout and
// drop a live neighbour, which its log says). The timeout is long (30 s)
// against the run's ~10 ms of work, so the wall-time bound is the timeout
// itself, not the machine's speed.
TEST(gossip_sgd, early_messages_from_neighbours_that_started_first_are_kept) {
  auto data = make_least_squares(2048, 64, 4, 0.1, 33);
  for (int attempt = 0; attempt < 5; ++attempt) {
    net nw(data, partition_iid(*data.train, 64, 14), 4);
    nw.g.ctx.plan.lr = 0.01f;
    nw.g.ctx.plan.steps = 5;
    nw.g.ctx.plan.timeout = std::chrono::milliseconds(30000);
    nw.g.ctx.plan.options = {{"topology", "ring"}};
    auto r = nw.run(gossip_sgd);
    ASSERT_TRUE(r) << describe(r.error());
    EXPECT_EQ(r->workers_lost, 0);
    EXPECT_LT(r->wall_s, 30.0);
    for (auto& line : nw.rec->lines)
      EXPECT_EQ(line.find("drops neighbour"), std::string::npos) << line;
  }
}

TEST(gossip_sgd, the_time_varying_one_peer_exponential_graph_converges) {
  auto data = make_least_squares(4096, 256, 16, 0.1, 26);
  least_squares ls(*data.train);
  const int n = 8, rounds = 300;
  net nw(data, partition_iid(*data.train, n, 6), 16);
  nw.g.ctx.plan.lr = 0.05f;
  nw.g.ctx.plan.steps = rounds;
  nw.g.ctx.plan.options = {{"topology", "onepeer-exp"}};
  auto r = nw.run(gossip_sgd);
  ASSERT_TRUE(r) << describe(r.error());
  const double f0 = ls.loss(Eigen::VectorXd::Zero(16));
  EXPECT_LT(ls.loss(r->final_weights) - ls.f_star, 2e-3 * (f0 - ls.f_star));
  EXPECT_EQ(r->steps, rounds);
  // One peer per round: n messages a round, whichever phase it is.
  const int64_t message = static_cast<int64_t>(buffer::from(std::vector<float>(16)).wire_bytes());
  EXPECT_EQ(r->bytes_sent, int64_t{rounds} * n * message);
  // Over a period of log2 n rounds the phases multiply to exact averaging.
  EXPECT_NEAR(metric(*r, "spectral_gap"), 1.0, 1e-9);
}

TEST(gossip_sgd, a_sample_budget_ends_the_run_after_whole_rounds) {
  auto data = make_least_squares(1024, 64, 8, 0.1, 27);
  net nw(data, partition_iid(*data.train, 4, 7), 8);
  nw.g.ctx.plan.lr = 0.05f;
  nw.g.ctx.plan.max_samples = 1000;  // 4 * 8 = 32 samples a round: 32 rounds
  nw.g.ctx.plan.eval_every_samples = 320;
  auto r = nw.run(gossip_sgd);
  ASSERT_TRUE(r) << describe(r.error());
  EXPECT_EQ(r->steps, 32);
  EXPECT_EQ(r->samples, 32 * 32);
  EXPECT_EQ(nw.rows().size(), 4u);  // 320, 640, 960 samples, and the end
}

// With eta = 0 every pairwise average keeps the pair's sum, whatever else
// the two peers do meanwhile: the network converges to the initial mean.
TEST(async_gossip, pairwise_averaging_keeps_the_mean_and_reaches_consensus) {
  auto data = make_least_squares(1024, 64, 16, 0.1, 28);
  const int n = 8;
  net nw(data, partition_iid(*data.train, n, 8), 8);
  nw.g.ctx.plan.lr = 0;
  nw.g.ctx.plan.steps = 2000;
  nw.g.ctx.plan.options = {{"topology", "ring"}};
  auto x0 = random_models(n, 16, 9);
  auto be = make_eigen_backend();
  buffer mean0;
  const double d0 = consensus_distance(*be, x0, &mean0);
  auto r = nw.run(async_gossip, x0);
  ASSERT_TRUE(r) << describe(r.error());
  EXPECT_LT(metric(*r, "consensus_distance"), 1e-6 * d0);
  for (size_t j = 0; j < mean0.size(); ++j)
    EXPECT_NEAR(r->final_weights[j], mean0[j], 1e-4) << j;
  EXPECT_EQ(r->steps, 2000);
  EXPECT_EQ(r->workers_lost, 0);
}

TEST(async_gossip, converges_on_least_squares) {
  auto data = make_least_squares(4096, 256, 16, 0.1, 29);
  least_squares ls(*data.train);
  net nw(data, partition_iid(*data.train, 8, 10), 16);
  nw.g.ctx.plan.lr = 0.05f;
  nw.g.ctx.plan.steps = 8 * 300;
  nw.g.ctx.plan.eval_every = 800;
  nw.g.ctx.plan.options = {{"topology", "exp"}};
  auto r = nw.run(async_gossip);
  ASSERT_TRUE(r) << describe(r.error());
  const double f0 = ls.loss(Eigen::VectorXd::Zero(16));
  EXPECT_LT(ls.loss(r->final_weights) - ls.f_star, 5e-3 * (f0 - ls.f_star));
  EXPECT_EQ(r->steps, 8 * 300);
  // The peers take turns: none is starved (see async_gossip.cpp). Which peer
  // runs when is the scheduler's, so the spread is not deterministic: 291..312
  // beside two busy loops (pinned to one core or not), 293..307 with no load,
  // but 263..374 while ctest ran the multi-process Nodes tests beside it (the
  // +-20% window failed there). A starved peer (the bug the turns fix) sat at
  // 0, so the window is +-50% of the mean.
  std::printf("[ measured ] async_gossip: local steps per peer %g .. %g (mean 300)\n",
              metric(*r, "peer_steps_min"), metric(*r, "peer_steps_max"));
  EXPECT_GT(metric(*r, "peer_steps_min"), 150);
  EXPECT_LT(metric(*r, "peer_steps_max"), 450);
  const int64_t exchange = 2 * static_cast<int64_t>(buffer::from(std::vector<float>(16)).wire_bytes());
  EXPECT_EQ(r->bytes_sent, r->steps * exchange);
  EXPECT_EQ(nw.rows().size(), 3u);
}

// With no budget a run goes on until it is told to stop; then it ends, and
// its peers with it (else the actor system's destructor would wait forever).
TEST(gossip, stop_ends_an_unbounded_run) {
  auto data = make_least_squares(512, 64, 8, 0.1, 31);
  for (auto [name, spawn] : {std::pair{"gossip_sgd", gossip_sgd}, std::pair{"gradient_tracking", gradient_tracking},
                             std::pair{"async_gossip", async_gossip}}) {
    net nw(data, partition_iid(*data.train, 4, 12), 8);
    nw.g.ctx.plan.lr = 0.01f;
    auto proto = nw.g.guard.add(spawn(nw.g.ts.sys, nw.g.ctx, {}));
    caf::scoped_actor self{nw.g.ts.sys};
    auto pending = self->request(proto, std::chrono::seconds(30), run_atom_v);
    self->send(proto, stop_atom_v);
    pending.receive(
      [&](run_summary& s) {
        EXPECT_EQ(s.stop_reason, "stopped") << name;
        EXPECT_EQ(s.final_weights.size(), 8u) << name;
      },
      [&](caf::error& e) { ADD_FAILURE() << name << ": " << describe(e); });
  }
}

// A diverging step size is a failure of the run, reported as an error (not
// a lost node, and not a hang).
TEST(gossip, a_diverging_run_fails_with_non_finite) {
  auto data = make_least_squares(512, 64, 8, 0.1, 32);
  for (auto [name, spawn] : {std::pair{"gossip_sgd", gossip_sgd}, std::pair{"gradient_tracking", gradient_tracking},
                             std::pair{"async_gossip", async_gossip}}) {
    net nw(data, partition_iid(*data.train, 4, 13), 8);
    nw.g.ctx.plan.lr = 1e4f;
    nw.g.ctx.plan.steps = 1000;
    auto r = nw.run(spawn);
    ASSERT_FALSE(r) << name;
    EXPECT_EQ(r.error().category(), errc_category) << name << ": " << describe(r.error());
    EXPECT_EQ(r.error().code(), static_cast<uint8_t>(errc::non_finite)) << name << ": " << describe(r.error());
  }
}

TEST(gossip, bad_options_are_refused_when_the_run_is_built) {
  // The two-argument entry points fit the registry's factory type as they are.
  const protocol_factory factories[] = {spawn_gossip_sgd, spawn_async_gossip, spawn_gradient_tracking};
  for (auto& f : factories)
    EXPECT_TRUE(static_cast<bool>(f));
  auto data = make_least_squares(256, 64, 4, 0.1, 30);
  net nw(data, partition_iid(*data.train, 4, 11), 8);
  auto& plan = nw.g.ctx.plan;
  auto spawn_throws = [&](const spawn_fn& spawn, std::map<std::string, std::string> options,
                          const std::string& part) {
    plan.options = std::move(options);
    try {
      nw.g.guard.add(spawn(nw.g.ts.sys, nw.g.ctx, {}));
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(part), std::string::npos) << e.what();
      return;
    }
    ADD_FAILURE() << "no exception; expected one naming '" << part << "'";
  };
  spawn_throws(gossip_sgd, {{"topology", "moebius"}}, "unknown topology");
  spawn_throws(async_gossip, {{"weights", "heavy"}}, "weight rule");
  spawn_throws(gossip_sgd, {{"mix_order", "sideways"}}, "mix_order");
  spawn_throws(gradient_tracking, {{"topology", "erdos:2"}}, "outside (0, 1]");
  plan.options.clear();
  plan.reg = regularizer::parse("l1:0.01");
  spawn_throws(gradient_tracking, {}, "regularizer");
  // Per-peer initial models must be one per worker, of the model's length.
  plan.reg = regularizer{};
  EXPECT_THROW(spawn_gossip_sgd_from(nw.g.ts.sys, nw.g.ctx, random_models(3, 4, 1)), std::invalid_argument);
  EXPECT_THROW(spawn_gossip_sgd_from(nw.g.ts.sys, nw.g.ctx, random_models(4, 5, 1)), std::invalid_argument);
}

// -- CHOCO-SGD -------------------------------------------------------------------------

namespace {

// Naive compressed gossip, written as a rule for the same engine: each node
// sends C(x_i^{t+1/2}) and averages its own exact model with its
// neighbours' decoded compressed models, x_i <- w_ii x_i + sum_j w_ij D(C(x_j)).
gossip_rule naive_compressed_rule(const std::string& spec, float lr) {
  const compressor c = make_compressor(spec);
  gossip_rule rule;
  rule.message_bytes = [c](const buffer& x0) { return static_cast<int64_t>(c.encode(x0, 0).wire_bytes()); };
  rule.prepare = [c, lr](gossip_vars& v, backend& be, const gradient& g, int64_t round) {
    auto half = mutable_buffer::copy_of(v.x);
    be.axpy(-lr, g.values, half.span());
    v.x = std::move(half).freeze();
    return peer_state{-1, 0, c.encode(v.x, 1000003 * static_cast<uint64_t>(round) + v.rank), {}, 0, 0};
  };
  rule.mix = [](gossip_vars& v, backend& be, const std::vector<const peer_state*>& in,
                const std::vector<float>& w, const gradient&) {
    std::vector<buffer> decoded{v.x};
    for (size_t k = 1; k < in.size(); ++k)
      decoded.push_back(decode(in[k]->x, v.x.size()));
    std::vector<cview> xs(decoded.begin(), decoded.end());
    mutable_buffer next(v.x.size());
    be.weighted_sum(xs, w, next.span());
    v.x = std::move(next).freeze();
  };
  return rule;
}

struct gossip_outcome {
  bool ok = false;
  double excess = 0;     // (f(x_bar) - f*) / (f(0) - f*)
  double consensus = 0;  // mean_i ||x_i - x_bar||^2 / ||w*||^2
  int64_t bytes = 0;
  std::string error;
};

} // namespace

TEST(choco_gossip, reaches_consensus_and_the_optimum_where_naive_compressed_gossip_does_not) {
  auto data = make_least_squares(4096, 256, 32, 0.1, 51);
  least_squares ls(*data.train);
  const int n = 8, rounds = 400;
  const float lr = 0.05f;
  const double f0 = ls.loss(Eigen::VectorXd::Zero(32));
  const double w2 = ls.w_star.squaredNorm();
  auto run = [&](const spawn_fn& spawn, std::map<std::string, std::string> options) {
    net nw(data, partition_iid(*data.train, n, 3), 16);
    nw.g.ctx.plan.lr = lr;
    nw.g.ctx.plan.steps = rounds;
    nw.g.ctx.plan.eval_every = rounds;
    options["topology"] = "ring";
    options.emplace("weights", "uniform");
    options.emplace("seed", "5");
    nw.g.ctx.plan.options = options;
    gossip_outcome out;
    auto r = nw.run(spawn);
    if (!r) {
      out.error = describe(r.error());
      return out;
    }
    out.ok = true;
    out.excess = (ls.loss(r->final_weights) - ls.f_star) / (f0 - ls.f_star);
    out.consensus = metric(*r, "consensus_distance") / w2;
    out.bytes = r->bytes_sent;
    return out;
  };
  const auto dsgd = run(gossip_sgd, {{"mix_order", "atc"}});
  ASSERT_TRUE(dsgd.ok) << dsgd.error;
  for (std::string spec : {"qsgd:4", "topk:0.1"}) {
    // gamma: auto (the compressor's contraction: 0.41 for qsgd:4, 0.125 for
    // topk:0.1 at d = 32).
    const auto choco = run(choco_gossip, {{"compress", spec}});
    ASSERT_TRUE(choco.ok) << spec << ": " << choco.error;
    const auto naive = run([&](caf::actor_system& sys, run_context ctx, std::vector<buffer>) {
      return spawn_synchronous_gossip(sys, std::move(ctx), naive_compressed_rule(spec, lr), {});
    }, {});
    std::printf("[ measured ] %s, ring of %d, %d rounds: (f - f*)/(f0 - f*) dsgd %.3g, choco %.3g, naive %s; "
                "consensus/||w*||^2 dsgd %.3g, choco %.3g, naive %.3g; bytes dsgd %lld, choco %lld\n",
                spec.c_str(), n, rounds, dsgd.excess, choco.excess,
                naive.ok ? std::to_string(naive.excess).c_str() : naive.error.c_str(), dsgd.consensus,
                choco.consensus, naive.consensus, static_cast<long long>(dsgd.bytes),
                static_cast<long long>(choco.bytes));
    // CHOCO: near the optimum and in consensus, like DSGD, with fewer bytes.
    EXPECT_LT(choco.excess, 5e-3) << spec;
    EXPECT_LT(choco.consensus, 1e-3) << spec;
    EXPECT_LT(choco.bytes, dsgd.bytes / 2) << spec;
    // Naive compressed gossip: diverged, or far from both.
    if (naive.ok) {
      EXPECT_GT(naive.excess, 10 * std::max(choco.excess, 1e-4)) << spec;
      EXPECT_GT(naive.consensus + naive.excess, 10 * (choco.consensus + choco.excess)) << spec;
    }
    // Both count the encoded message: n nodes, 2 neighbours, every round.
    const auto payload = make_compressor(spec).encode(buffer::from(std::vector<float>(32, 1.0f)), 0);
    EXPECT_EQ(choco.bytes, int64_t{rounds} * n * 2 * static_cast<int64_t>(payload.wire_bytes())) << spec;
  }
}

// With no compression and gamma = 1, x_hat_j = x_j^{t+1/2} after each round
// and x_i^{t+1} = sum_j w_ij x_j^{t+1/2}: DSGD adapt-then-combine.
TEST(choco_gossip, without_compression_and_gamma_one_is_dsgd) {
  auto data = make_least_squares(1024, 64, 16, 0.1, 52);
  std::vector<buffer> finals;
  for (auto spawn : {gossip_sgd, choco_gossip}) {
    net nw(data, slices(iota_order(data.train->size()), 4), 8, sampling::sequential);
    nw.g.ctx.plan.lr = 0.05f;
    nw.g.ctx.plan.steps = 30;
    nw.g.ctx.plan.eval_every = 30;
    nw.g.ctx.plan.options = {{"topology", "ring"}, {"compress", "none"}, {"gamma", "1"},
                             {"mix_order", "atc"}};
    if (finals.empty())
      nw.g.ctx.plan.options.erase("compress"), nw.g.ctx.plan.options.erase("gamma");
    else
      nw.g.ctx.plan.options.erase("mix_order");
    auto r = nw.run(spawn);
    ASSERT_TRUE(r) << describe(r.error());
    finals.push_back(r->final_weights);
  }
  double worst = 0;
  for (size_t j = 0; j < finals[0].size(); ++j)
    worst = std::max(worst, double(std::fabs(finals[0][j] - finals[1][j])));
  EXPECT_LT(worst, 1e-5);
}

TEST(choco_gossip, refuses_what_it_cannot_run) {
  auto data = make_least_squares(256, 64, 8, 0.1, 53);
  auto says = [&](std::map<std::string, std::string> options, const std::string& what) {
    net nw(data, slices(iota_order(data.train->size()), 4), 8);
    nw.g.ctx.plan.options = options;
    try {
      auto proto = spawn_choco_gossip(nw.g.ts.sys, nw.g.ctx);
      nw.g.guard.add(proto);
      ADD_FAILURE() << "accepted; expected: " << what;
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(what), std::string::npos) << e.what();
    }
  };
  says({{"topology", "onepeer-exp"}}, "needs a static graph");
  says({{"gamma", "0"}}, "option gamma");
  says({{"gamma", "1.5"}}, "option gamma");
  says({{"compress", "qsgd:0"}}, "qsgd");
  says({{"compress", "zip"}}, "valid");
  // Other gossip protocols name choco_gossip for --compress; it takes no
  // --error-feedback (x_hat is its error compensation).
  try {
    check_options(find_algorithm("gossip_sgd"), {{"compress", "qsgd:4"}});
    ADD_FAILURE() << "gossip_sgd took --compress";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("choco_gossip"), std::string::npos) << e.what();
  }
  EXPECT_THROW(check_options(find_algorithm("choco_gossip"), {{"error_feedback", "ef"}}),
               std::invalid_argument);
}
