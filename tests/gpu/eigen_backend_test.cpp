// The Eigen reference backend: vector operations on the sizes gloo checks
// (0, 1, 1000) and proximal operators against their closed forms.
#include <gtest/gtest.h>

#include <cmath>
#include <random>

#include "gpu/assert.hpp"
#include "gpu/backend.hpp"
#include "tests/gpu/gpu_test_util.hpp"

using namespace chorus;
using chorus::test::random_vector;

namespace {

cview as_view(const std::vector<float>& v) { return {v.data(), v.size()}; }

} // namespace

class backend_sizes : public ::testing::TestWithParam<size_t> {};

TEST_P(backend_sizes, mean_of_k_buffers_matches_a_double_loop) {
  auto be = make_eigen_backend();
  const size_t n = GetParam();
  for (size_t k : {1u, 2u, 3u, 8u}) {
    std::vector<std::vector<float>> inputs;
    std::vector<cview> views;
    for (size_t i = 0; i < k; ++i)
      inputs.push_back(random_vector(n, 100 + i));
    for (auto& v : inputs)
      views.push_back(as_view(v));
    auto out = be->zeros(n);
    be->mean(views, out.span());
    for (size_t j = 0; j < n; ++j) {
      double expect = 0;
      for (auto& v : inputs)
        expect += v[j];
      expect /= static_cast<double>(k);
      ASSERT_NEAR(out[j], expect, 1e-5) << "n=" << n << " k=" << k << " j=" << j;
    }
  }
}

TEST_P(backend_sizes, weighted_sum_axpy_scale_dot_norms) {
  auto be = make_eigen_backend();
  const size_t n = GetParam();
  auto x = random_vector(n, 1);
  auto y = random_vector(n, 2);
  auto out = be->zeros(n);
  be->weighted_sum({as_view(x), as_view(y)}, {2.0f, -0.5f}, out.span());
  double dot = 0, nx = 0, dist = 0;
  for (size_t j = 0; j < n; ++j) {
    ASSERT_NEAR(out[j], 2.0f * x[j] - 0.5f * y[j], 1e-5);
    dot += double(x[j]) * y[j];
    nx += double(x[j]) * x[j];
    dist += double(x[j] - y[j]) * (x[j] - y[j]);
  }
  EXPECT_NEAR(be->dot(as_view(x), as_view(y)), dot, 1e-3);
  EXPECT_NEAR(be->squared_norm(as_view(x)), nx, 1e-3);
  EXPECT_NEAR(be->squared_distance(as_view(x), as_view(y)), dist, 1e-3);
  auto z = mutable_buffer::copy_of(as_view(y));
  be->axpy(3.0f, as_view(x), z.span());
  be->scale(0.5f, z.span());
  for (size_t j = 0; j < n; ++j)
    ASSERT_NEAR(z[j], 0.5f * (y[j] + 3.0f * x[j]), 1e-5);
}

INSTANTIATE_TEST_SUITE_P(sizes, backend_sizes, ::testing::Values(0u, 1u, 1000u, 4099u));

TEST(eigen_backend, mean_of_integers_is_exact) {
  auto be = make_eigen_backend();
  for (int k : {1, 2, 3, 8}) {
    std::vector<std::vector<float>> inputs;
    std::vector<cview> views;
    for (int i = 0; i < k; ++i)
      inputs.emplace_back(1000, static_cast<float>(i));
    for (auto& v : inputs)
      views.push_back(as_view(v));
    auto out = be->zeros(1000);
    be->mean(views, out.span());
    for (size_t j = 0; j < 1000; ++j)
      ASSERT_EQ(out[j], (k - 1) / 2.0f) << "k=" << k;
  }
}

TEST(eigen_backend, size_mismatch_is_a_broken_invariant) {
  auto be = make_eigen_backend();
  std::vector<float> a(3), b(4);
  auto out = be->zeros(3);
  EXPECT_THROW(be->mean({as_view(a), as_view(b)}, out.span()), invariant_error);
  EXPECT_THROW(be->dot(as_view(a), as_view(b)), invariant_error);
  EXPECT_THROW(be->mean({}, out.span()), invariant_error);
}

TEST(eigen_backend, an_unknown_regularizer_kind_is_a_broken_invariant) {
  auto be = make_eigen_backend();
  auto w = be->zeros(4);
  regularizer r;
  r.kind = 7;  // e.g. from a peer built with more kinds
  r.l1 = 0.1f;
  EXPECT_THROW(be->prox(r, 0.5f, w.span()), invariant_error);
  r.kind = regularizer::kind_l1;
  EXPECT_NO_THROW(be->prox(r, 0.5f, w.span()));
}

TEST(eigen_backend, all_finite_detects_nan_and_inf) {
  auto be = make_eigen_backend();
  std::vector<float> v(100, 1.0f);
  EXPECT_TRUE(be->all_finite(as_view(v)));
  v[57] = std::nanf("");
  EXPECT_FALSE(be->all_finite(as_view(v)));
  v[57] = INFINITY;
  EXPECT_FALSE(be->all_finite(as_view(v)));
}

// Prox closed forms, checked element by element and against the definition
// argmin_u r(u) + (u - v)^2 / (2 eta) by a fine grid search.
TEST(prox, l1_is_soft_thresholding) {
  auto be = make_eigen_backend();
  auto r = regularizer::parse("l1:0.5");
  std::vector<float> v = {-3.0f, -1.0f, -0.2f, 0.0f, 0.1f, 0.2f, 0.21f, 2.0f};
  auto w = mutable_buffer::copy_of(as_view(v));
  be->prox(r, 0.4f, w.span());  // threshold eta * lambda = 0.2
  std::vector<float> expect = {-2.8f, -0.8f, 0.0f, 0.0f, 0.0f, 0.0f, 0.01f, 1.8f};
  for (size_t i = 0; i < v.size(); ++i)
    EXPECT_NEAR(w[i], expect[i], 1e-6) << i;
}

TEST(prox, l2_is_shrinkage) {
  auto be = make_eigen_backend();
  auto r = regularizer::parse("l2:2");
  std::vector<float> v = {-3.0f, 0.0f, 1.5f};
  auto w = mutable_buffer::copy_of(as_view(v));
  be->prox(r, 0.25f, w.span());  // v / (1 + 0.5)
  EXPECT_NEAR(w[0], -2.0f, 1e-6);
  EXPECT_NEAR(w[1], 0.0f, 1e-6);
  EXPECT_NEAR(w[2], 1.0f, 1e-6);
}

TEST(prox, every_kind_minimizes_its_definition) {
  auto be = make_eigen_backend();
  const float eta = 0.3f;
  for (auto spec : {"none", "l1:0.7", "l2:1.3", "elastic:0.4,0.9"}) {
    auto r = regularizer::parse(spec);
    for (float v = -2.0f; v <= 2.0f; v += 0.37f) {
      auto w = mutable_buffer::filled(1, v);
      be->prox(r, eta, w.span());
      // Grid search of u -> r(u) + (u - v)^2 / (2 eta).
      double best_u = 0, best = INFINITY;
      for (double u = -3.0; u <= 3.0; u += 1e-4) {
        float uf = static_cast<float>(u);
        double obj = r.value(&uf, 1) + (u - v) * (u - v) / (2 * eta);
        if (obj < best)
          best = obj, best_u = u;
      }
      EXPECT_NEAR(w[0], best_u, 2e-4) << spec << " v=" << v;
    }
  }
}

TEST(prox, prox_step_is_gradient_step_then_prox) {
  auto be = make_eigen_backend();
  auto r = regularizer::parse("elastic:0.1,0.2");
  std::vector<float> w0 = {1.0f, -0.05f, 0.3f}, g = {0.5f, 0.5f, -1.0f};
  auto a = mutable_buffer::copy_of(as_view(w0));
  be->prox_step(r, 0.2f, as_view(g), a.span());
  auto b = mutable_buffer::copy_of(as_view(w0));
  be->axpy(-0.2f, as_view(g), b.span());
  be->prox(r, 0.2f, b.span());
  for (size_t i = 0; i < 3; ++i)
    EXPECT_EQ(a[i], b[i]);
}

TEST(regularizer, parse_accepts_valid_forms_and_round_trips) {
  for (auto spec : {"none", "l1:0.0001", "l2:0.5", "elastic:0.1,0.2"}) {
    auto r = regularizer::parse(spec);
    EXPECT_EQ(regularizer::parse(r.to_string()).to_string(), r.to_string()) << spec;
  }
  EXPECT_EQ(regularizer::parse("l1:0.25").kind, regularizer::kind_l1);
  EXPECT_FLOAT_EQ(regularizer::parse("elastic:0.1,0.2").l2, 0.2f);
}

TEST(regularizer, bad_specs_name_the_valid_forms) {
  for (auto spec : {"l3:1", "l1", "l1:abc", "l1:-1", "elastic:0.1", "l2:nan", "lasso"}) {
    try {
      regularizer::parse(spec);
      ADD_FAILURE() << "accepted " << spec;
    } catch (const std::invalid_argument& e) {
      std::string what = e.what();
      EXPECT_NE(what.find(spec), std::string::npos) << what;
    }
  }
}

TEST_P(backend_sizes, mean_axpy_is_base_plus_scaled_mean) {
  auto be = make_eigen_backend();
  const size_t n = GetParam();
  auto base = random_vector(n, 7);
  std::vector<std::vector<float>> xs = {random_vector(n, 8), random_vector(n, 9), random_vector(n, 10)};
  auto out = be->zeros(n);
  be->mean_axpy(as_view(base), {as_view(xs[0]), as_view(xs[1]), as_view(xs[2])}, -0.5f, out.span());
  for (size_t j = 0; j < n; ++j)
    ASSERT_NEAR(out[j], base[j] - 0.5 * (xs[0][j] + xs[1][j] + xs[2][j]) / 3, 1e-5);
}

TEST(eigen_backend, all_finite_finds_a_single_bad_value_anywhere) {
  auto be = make_eigen_backend();
  std::vector<float> v(10000, 1.5f);
  for (size_t pos : {0u, 4095u, 4096u, 9999u})
    for (float bad : {std::nanf(""), INFINITY, -INFINITY}) {
      auto w = v;
      w[pos] = bad;
      EXPECT_FALSE(be->all_finite(as_view(w))) << pos;
    }
  std::vector<float> edge = {std::numeric_limits<float>::max(), -std::numeric_limits<float>::max(),
                             std::numeric_limits<float>::denorm_min(), 0.0f, -0.0f};
  EXPECT_TRUE(be->all_finite(as_view(edge)));
}
