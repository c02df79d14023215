// Robust aggregators against their definitions, on hand-made vectors; every
// expectation is computed here by hand or by a naive routine of this file
// (sorts, direct distances, a grid search), not by the production code.
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "engines/aggregators.hpp"

namespace chorus {
namespace {

using vec = std::vector<float>;

std::vector<buffer> make(const std::vector<vec>& xs) {
  std::vector<buffer> out;
  for (auto& x : xs)
    out.push_back(buffer::from(x));
  return out;
}

double dist2(const vec& a, const vec& b) {
  double s = 0;
  for (size_t k = 0; k < a.size(); ++k)
    s += (double(a[k]) - b[k]) * (double(a[k]) - b[k]);
  return s;
}

double dist(const vec& a, const vec& b) {
  return std::sqrt(dist2(a, b));
}

vec mean_of(const std::vector<vec>& xs) {
  vec m(xs[0].size(), 0.0f);
  for (size_t k = 0; k < m.size(); ++k) {
    double s = 0;
    for (auto& x : xs)
      s += x[k];
    m[k] = float(s / double(xs.size()));
  }
  return m;
}

void expect_near(const buffer& got, const vec& want, double tol) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t k = 0; k < want.size(); ++k)
    EXPECT_NEAR(got[k], want[k], tol) << "coordinate " << k;
}

std::vector<vec> gaussian(size_t n, size_t d, double sigma, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> g(0.0, sigma);
  std::vector<vec> out(n, vec(d));
  for (auto& x : out)
    for (auto& v : x)
      v = float(g(rng));
  return out;
}

// -- median and trimmed mean --------------------------------------------------------

TEST(Aggregators, MedianOddCount) {
  auto agg = make_aggregator("median", 0);
  auto r = agg(make({{1, 50, -3}, {5, 40, -1}, {3, 60, -2}}));
  expect_near(r.value, {3, 50, -2}, 0);
  // input 0 supplies coordinate 1, input 1 none... by hand: middles are
  // x2[0], x0[1], x2[2]
  EXPECT_NEAR(r.weights[0], 1.0 / 3, 1e-12);
  EXPECT_NEAR(r.weights[1], 0.0, 1e-12);
  EXPECT_NEAR(r.weights[2], 2.0 / 3, 1e-12);
  EXPECT_EQ(r.fates[1], input_fate::rejected);
}

TEST(Aggregators, MedianEvenCountAveragesTheMiddleTwo) {
  auto agg = make_aggregator("median", 1);
  auto r = agg(make({{1, 7}, {5, 1}, {3, 2}, {10, 4}}));
  // sorted column 0: 1 3 5 10 -> 4; column 1: 1 2 4 7 -> 3
  expect_near(r.value, {4, 3}, 0);
  double total = std::accumulate(r.weights.begin(), r.weights.end(), 0.0);
  EXPECT_NEAR(total, 1.0, 1e-12);
}

TEST(Aggregators, TrimmedMeanByHand) {
  auto agg = make_aggregator("trimmed:1", 1);
  auto r = agg(make({{1, -50}, {2, 0}, {3, 1}, {4, 2}, {100, 3}}));
  // column 0: drop 1 and 100 -> (2+3+4)/3 = 3; column 1: drop -50 and 3 -> 1
  expect_near(r.value, {3, 1}, 1e-6);
  // input 0 is trimmed in column 0 (smallest) and column 1 (smallest)
  EXPECT_EQ(r.weights[0], 0.0);
  EXPECT_EQ(r.fates[0], input_fate::rejected);
  // input 4 is the largest in both columns; input 3 is kept in both, 2 of
  // the 2 columns x 3 kept values
  EXPECT_EQ(r.weights[4], 0.0);
  EXPECT_NEAR(r.weights[3], 2.0 / 6, 1e-12);
  // trimmed with B = 0 is the mean
  auto plain = make_aggregator("trimmed:0", 0)(make({{1}, {2}, {9}}));
  expect_near(plain.value, {4}, 1e-6);
  // B defaults to f
  auto byf = make_aggregator("trimmed", 2)(make({{-100}, {-90}, {1}, {2}, {3}, {90}, {100}}));
  expect_near(byf.value, {2}, 1e-6);
}

// -- Krum -----------------------------------------------------------------------------

TEST(Aggregators, KrumScoresAndChoice) {
  std::vector<vec> xs = {{0, 0}, {1, 0}, {0, 1}, {1, 1}, {0.5f, 0.5f}, {10, 10}};
  int f = 1;
  size_t n = xs.size(), m = n - f - 2;
  // naive scores
  std::vector<double> want(n);
  for (size_t i = 0; i < n; ++i) {
    std::vector<double> ds;
    for (size_t j = 0; j < n; ++j)
      if (j != i)
        ds.push_back(dist2(xs[i], xs[j]));
    std::sort(ds.begin(), ds.end());
    want[i] = std::accumulate(ds.begin(), ds.begin() + long(m), 0.0);
  }
  auto got = krum_scores(make(xs), f);
  ASSERT_EQ(got.size(), n);
  for (size_t i = 0; i < n; ++i)
    EXPECT_NEAR(got[i], want[i], 1e-9) << "score of input " << i;
  EXPECT_NEAR(want[4], 1.5, 1e-12);  // by hand: three neighbours at squared distance 0.5

  auto r = make_aggregator("krum", f)(make(xs));
  expect_near(r.value, {0.5f, 0.5f}, 0);
  EXPECT_EQ(r.weights[4], 1.0);
  EXPECT_EQ(r.fates[5], input_fate::rejected);
  EXPECT_EQ(r.count(input_fate::kept), 1u);

  // Multi-Krum:2: the centre (1.5) and the first of four tied corners (2.5)
  auto mk = make_aggregator("multikrum:2", f)(make(xs));
  expect_near(mk.value, {0.25f, 0.25f}, 1e-6);
  EXPECT_EQ(mk.fates[5], input_fate::rejected);
  EXPECT_EQ(mk.count(input_fate::kept), 2u);
}

// -- geometric median ---------------------------------------------------------------

TEST(Aggregators, GeometricMedianMatchesGridSearch) {
  std::vector<vec> xs = {{0, 0}, {4, 0}, {1, 3}, {3, 2.5f}, {0.5f, 1}, {40, -30}};
  auto objective = [&](double x, double y) {
    double s = 0;
    for (auto& p : xs)
      s += std::hypot(p[0] - x, p[1] - y);
    return s;
  };
  // brute force: a coarse grid, then a fine one around its best point
  double bx = 0, by = 0, best = std::numeric_limits<double>::infinity();
  for (double x = -1; x <= 5; x += 0.01)
    for (double y = -1; y <= 4; y += 0.01)
      if (objective(x, y) < best) {
        best = objective(x, y);
        bx = x;
        by = y;
      }
  double cx = bx, cy = by;
  for (double x = cx - 0.01; x <= cx + 0.01; x += 1e-4)
    for (double y = cy - 0.01; y <= cy + 0.01; y += 1e-4)
      if (objective(x, y) < best) {
        best = objective(x, y);
        bx = x;
        by = y;
      }
  auto r = make_aggregator("geomed:1e-9,1000", 1)(make(xs));
  double gx = r.value[0], gy = r.value[1];
  EXPECT_LE(objective(gx, gy), best + 1e-4);
  EXPECT_NEAR(gx, bx, 2e-3);
  EXPECT_NEAR(gy, by, 2e-3);
  EXPECT_GT(r.iterations, 1);
  // the weights are the convex combination it returned
  EXPECT_NEAR(std::accumulate(r.weights.begin(), r.weights.end(), 0.0), 1.0, 1e-9);
  EXPECT_LT(r.weights[5], r.weights[0]);
}

// -- centered clipping --------------------------------------------------------------

TEST(Aggregators, CenteredClippingReachesItsFixedPoint) {
  std::vector<vec> xs = {{0, 0, 0}, {1, 0, 2}, {0, 1, 1}, {2, 2, 0}, {30, -20, 10}};
  double tau = 0.8;
  aggregate_context ctx;
  ctx.centre = buffer::from({5, 5, 5});
  auto r = make_aggregator("cc:0.8,500", 1)(make(xs), ctx);
  vec v(r.value.begin(), r.value.end());
  // sum_i (x_i - v) min(1, tau / ||x_i - v||) = 0 at the fixed point
  std::vector<double> s(3, 0.0);
  for (auto& x : xs) {
    double c = std::min(1.0, tau / dist(x, v));
    for (size_t k = 0; k < 3; ++k)
      s[k] += (double(x[k]) - v[k]) * c;
  }
  for (size_t k = 0; k < 3; ++k)
    EXPECT_NEAR(s[k], 0.0, 1e-4) << "coordinate " << k;
  EXPECT_EQ(r.fates[4], input_fate::down_weighted);
  EXPECT_EQ(r.iterations, 500);
  // one more iteration from v stays at v
  aggregate_context again;
  again.centre = r.value;
  auto r2 = make_aggregator("cc:0.8,1", 1)(make(xs), again);
  expect_near(r2.value, v, 1e-5);
}

TEST(Aggregators, CenteredClippingWithLargeTauIsTheMeanAndClipsBoundTheStep) {
  std::vector<vec> xs = {{0, 0}, {1, 0}, {0, 1}, {4, 4}};
  aggregate_context ctx;
  ctx.centre = buffer::from({-3, 7});
  auto r = make_aggregator("cc:1e6", 1)(make(xs), ctx);
  expect_near(r.value, mean_of(xs), 1e-5);
  // with a small tau each input moves the centre by at most tau/n, so the
  // step from the centre is at most tau
  auto small = make_aggregator("cc:0.1", 1)(make(xs), ctx);
  vec v(small.value.begin(), small.value.end());
  EXPECT_LE(dist(v, {-3, 7}), 0.1 + 1e-6);
  // no centre given: starts at the coordinate-wise median (0.5, 0.5)
  auto from_median = make_aggregator("cc:1e-3", 1)(make(xs));
  vec w(from_median.value.begin(), from_median.value.end());
  EXPECT_LE(dist(w, {0.5f, 0.5f}), 1e-3 + 1e-6);
}

// -- spectral filter ------------------------------------------------------------------

TEST(Aggregators, FilterRemovesPlantedOutliersInHighDimension) {
  size_t d = 200, n_in = 25, n_out = 5;
  auto xs = gaussian(n_in + n_out, d, 1.0, 7);
  std::vector<vec> inliers(xs.begin(), xs.begin() + long(n_in));
  // the outliers: shifted by 30 along one direction (a unit vector)
  vec dir = gaussian(1, d, 1.0, 99)[0];
  double norm = std::sqrt(dist2(dir, vec(d, 0.0f)));
  for (size_t i = n_in; i < xs.size(); ++i)
    for (size_t k = 0; k < d; ++k)
      xs[i][k] += float(30.0 * dir[k] / norm);
  auto truth = mean_of(inliers);

  auto r = make_aggregator("filter", int(n_out))(make(xs));
  for (size_t i = 0; i < xs.size(); ++i)
    EXPECT_EQ(r.fates[i], i < n_in ? input_fate::kept : input_fate::rejected) << "input " << i;
  EXPECT_EQ(r.iterations, int(n_out));
  vec got(r.value.begin(), r.value.end());
  EXPECT_LT(dist(got, truth), 1e-4);
  // the mean is pulled 30 * 5/30 = 5 away along the direction
  auto m = make_aggregator("mean", int(n_out))(make(xs));
  vec mv(m.value.begin(), m.value.end());
  EXPECT_GT(dist(mv, truth), 4.9);
}

TEST(Aggregators, FilterKeepsCleanIsotropicInputs) {
  auto xs = gaussian(30, 200, 1.0, 11);
  auto r = make_aggregator("filter", 5)(make(xs));
  EXPECT_EQ(r.iterations, 0);
  EXPECT_EQ(r.count(input_fate::rejected), 0u);
  expect_near(r.value, mean_of(xs), 1e-5);
  // a far smaller slack K removes honest inputs, up to the budget f
  auto strict = make_aggregator("filter:0.1", 5)(make(xs));
  EXPECT_EQ(strict.iterations, 5);
}

// -- pre-aggregations --------------------------------------------------------------

TEST(Aggregators, NearestNeighbourMixing) {
  std::vector<vec> xs = {{0}, {1}, {3}, {7}, {100}};
  int f = 2;  // each output: mean of n - f = 3 nearest (itself included)
  auto pre = make_pre_aggregation("nnm");
  auto out = pre.run(make(xs), f, {});
  ASSERT_EQ(out.xs.size(), xs.size());
  // by hand: {0,1,3}, {1,0,3}, {3,1,0}, {7,3,1}, {100,7,3}
  std::vector<float> want = {4.0f / 3, 4.0f / 3, 4.0f / 3, 11.0f / 3, 110.0f / 3};
  for (size_t i = 0; i < xs.size(); ++i)
    EXPECT_NEAR(out.xs[i][0], want[i], 1e-5) << "output " << i;
  // nnm then Krum: weights map back through the mixing
  auto agg = make_aggregator("krum", "nnm", 1);
  EXPECT_EQ(agg.name(), "nnm>krum");
  auto r = agg(make({{0}, {1}, {2}, {3}, {4}, {1000}}));
  EXPECT_NEAR(std::accumulate(r.weights.begin(), r.weights.end(), 0.0), 1.0, 1e-9);
  EXPECT_EQ(r.weights[5], 0.0);
  EXPECT_LT(r.value[0], 4.0f);
}

TEST(Aggregators, BucketingPartitionsAndAverages) {
  std::vector<vec> xs;
  for (int i = 0; i < 7; ++i)
    xs.push_back({float(i), float(10 * i)});
  auto pre = make_pre_aggregation("bucket:3");
  EXPECT_EQ(pre.outputs(7), 3u);
  aggregate_context ctx;
  ctx.seed = 5;
  ctx.round = 2;
  auto out = pre.run(make(xs), 1, ctx);
  ASSERT_EQ(out.xs.size(), 3u);
  std::multiset<size_t> sizes;
  std::vector<int> seen(7, 0);
  for (size_t r = 0; r < 3; ++r) {
    vec members_mean(2, 0.0f);
    size_t count = 0;
    for (size_t i = 0; i < 7; ++i)
      if (out.mix[r * 7 + i] != 0.0) {
        ++seen[i];
        ++count;
        members_mean[0] += xs[i][0];
        members_mean[1] += xs[i][1];
      }
    sizes.insert(count);
    for (auto& v : members_mean)
      v /= float(count);
    expect_near(out.xs[r], members_mean, 1e-5);
  }
  EXPECT_EQ(sizes, (std::multiset<size_t>{1, 3, 3}));
  for (int s : seen)
    EXPECT_EQ(s, 1);
  // the same (seed, round) gives the same buckets; some other round differs
  EXPECT_EQ(pre.run(make(xs), 1, ctx).mix, out.mix);
  bool differs = false;
  for (int round = 0; round < 10 && !differs; ++round) {
    aggregate_context other = ctx;
    other.round = round + 100;
    differs = pre.run(make(xs), 1, other).mix != out.mix;
  }
  EXPECT_TRUE(differs);
}

TEST(Aggregators, ClipScalesLongVectorsOnly) {
  auto xs = make({{3, 4}, {0.3f, 0.4f}, {-6, 8}});
  auto out = make_pre_aggregation("clip:1").run(xs, 0, {});
  expect_near(out.xs[0], {0.6f, 0.8f}, 1e-6);
  EXPECT_TRUE(out.xs[1].same_storage(xs[1]));
  expect_near(out.xs[2], {-0.6f, 0.8f}, 1e-6);
  EXPECT_EQ(out.clipped, (std::vector<bool>{true, false, true}));
  auto r = make_aggregator("mean", "clip:1", 0)(xs);
  EXPECT_EQ(r.fates[0], input_fate::down_weighted);
  EXPECT_EQ(r.fates[1], input_fate::kept);
  expect_near(r.value, {0.1f, 2.0f / 3}, 1e-6);
}

// -- refusals and invalid inputs -----------------------------------------------------

template <class Fn>
std::string refusal(Fn&& fn) {
  try {
    fn();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

TEST(Aggregators, ImpossibleFIsRefused) {
  EXPECT_NE(refusal([] { make_aggregator("krum", 1).check(4); }).find("n > 2f + 2"), std::string::npos);
  EXPECT_EQ(refusal([] { make_aggregator("krum", 1).check(5); }), "");
  EXPECT_NE(refusal([] { make_aggregator("trimmed:2", 1).check(4); }), "");
  EXPECT_EQ(refusal([] { make_aggregator("trimmed:2", 1).check(5); }), "");
  EXPECT_NE(refusal([] { make_aggregator("trimmed:1", 2); }).find("B >= f"), std::string::npos);
  EXPECT_NE(refusal([] { make_aggregator("median", 2).check(4); }), "");
  EXPECT_EQ(refusal([] { make_aggregator("median", 2).check(5); }), "");
  EXPECT_NE(refusal([] { make_aggregator("multikrum:6", 1).check(6); }), "");
  EXPECT_EQ(refusal([] { make_aggregator("multikrum:5", 1).check(6); }), "");
  EXPECT_NE(refusal([] { make_aggregator("geomed", 3).check(6); }), "");
  EXPECT_NE(refusal([] { make_aggregator("filter", 3).check(6); }), "");
  EXPECT_NE(refusal([] { make_aggregator("cc:1", 3).check(6); }), "");
  EXPECT_EQ(refusal([] { make_aggregator("mean", 5).check(6); }), "");
  // bucketing 10 inputs by 2 leaves 5 for Krum, which needs 5 > 2*2 + 2
  EXPECT_NE(refusal([] { make_aggregator("krum", "bucket:2", 2).check(10); }), "");
  EXPECT_EQ(refusal([] { make_aggregator("krum", "bucket:2", 1).check(10); }), "");
  EXPECT_NE(refusal([] { make_aggregator("krum", -1); }), "");
  // the call refuses too
  EXPECT_NE(refusal([] { make_aggregator("krum", 1)(make({{1}, {2}, {3}, {4}})); }), "");
}

TEST(Aggregators, BadSpecsNameTheValidOnes) {
  auto unknown = refusal([] { make_aggregator("krumm", 0); });
  EXPECT_NE(unknown.find("multikrum:M"), std::string::npos) << unknown;
  EXPECT_NE(refusal([] { make_aggregator("nnm", 0); }).find("--pre"), std::string::npos);
  EXPECT_NE(refusal([] { make_pre_aggregation("krum"); }).find("--aggregator"), std::string::npos);
  EXPECT_NE(refusal([] { make_aggregator("trimmed:x", 0); }), "");
  EXPECT_NE(refusal([] { make_aggregator("multikrum", 0); }), "");
  EXPECT_NE(refusal([] { make_aggregator("cc:-1", 0); }), "");
  EXPECT_NE(refusal([] { make_aggregator("mean:3", 0); }), "");
  EXPECT_NE(refusal([] { make_pre_aggregation("bucket:0"); }), "");
  EXPECT_NE(refusal([] { make_aggregator("mean", "clip:0", 0); }), "");
}

TEST(Aggregators, NonFiniteAndMalformedInputsAreSetAside) {
  float nan = std::numeric_limits<float>::quiet_NaN();
  float inf = std::numeric_limits<float>::infinity();
  auto xs = make({{1, 2}, {nan, 0}, {3, 4}, {0, inf}, {5, 6}, {1, 2, 3}});
  for (auto spec : {"mean", "median", "krum", "geomed", "filter", "cc:10", "trimmed"}) {
    auto r = make_aggregator(spec, 3)(xs);
    EXPECT_EQ(r.used, 3u) << spec;
    EXPECT_EQ(r.fates[1], input_fate::invalid) << spec;
    EXPECT_EQ(r.fates[3], input_fate::invalid) << spec;
    EXPECT_EQ(r.fates[5], input_fate::invalid) << spec;
    EXPECT_EQ(r.weights[1], 0.0) << spec;
    ASSERT_EQ(r.value.size(), 2u) << spec;
    EXPECT_TRUE(std::isfinite(r.value[0]) && std::isfinite(r.value[1])) << spec;
  }
  auto m = make_aggregator("mean", 0)(xs);
  expect_near(m.value, {3, 4}, 1e-6);
  auto med = make_aggregator("median", 0)(xs);
  expect_near(med.value, {3, 4}, 0);
  auto none = make_aggregator("median", 0)(make({{nan}, {inf}}));
  EXPECT_EQ(none.used, 0u);
  EXPECT_TRUE(none.value.empty());
}

// -- every rule against a breakdown attack --------------------------------------------

std::string sample_spec(const aggregator_info& e) {
  if (e.name == "multikrum")
    return "multikrum:3";
  if (e.name == "cc")
    return "cc:1,3";
  return e.name;
}

TEST(Aggregators, EveryRuleBoundsHugeByzantineVectorsAndMeanDoesNot) {
  size_t d = 50, n = 12;
  int f = 3;
  auto xs = gaussian(n, d, 1.0, 3);
  std::vector<vec> honest(xs.begin(), xs.begin() + long(n - f));
  auto centre = mean_of(honest);
  double radius = 0;
  for (auto& h : honest)
    radius = std::max(radius, dist(h, centre));
  for (size_t i = n - f; i < n; ++i)
    for (auto& v : xs[i])
      v = 1e9f;  // norm ~ 7e9
  size_t rules = 0;
  for (auto& e : aggregator_registry()) {
    if (e.pre)
      continue;
    ++rules;
    for (std::string pre : {"", "nnm", "clip:100"}) {
      auto agg = make_aggregator(sample_spec(e), pre, f);
      auto r = agg(make(xs));
      vec v(r.value.begin(), r.value.end());
      double off = dist(v, centre);
      if (e.name == "mean" && pre.empty())
        EXPECT_GT(off, 1e8) << agg.name();
      else if (e.name != "mean")
        EXPECT_LT(off, radius) << agg.name();
    }
  }
  EXPECT_EQ(rules, 8u);
}

} // namespace
} // namespace chorus
