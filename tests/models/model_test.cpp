// Tests for models/: one contract suite that every registry spec passes
// (gradients against the derivatives of a double reference of each model's
// definition, batch linearity, init determinism, layout), closed-form checks
// per model, hand-made evaluate cases, and the registry's errors. Data are
// small seeded random sets built here; no files are read.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdint>
#include <memory>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "models/model.hpp"
#include "tests/models/reference_slope.hpp"

namespace chorus {
namespace {

// A random dataset: x ~ N(0, 1), labels uniform in [0, classes) or, for
// regression (classes == 0), y = <1, x> / sqrt(d) + noise.
dataset random_dataset(int64_t n, int64_t d, int64_t classes, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal;
  dataset ds;
  ds.name = "random";
  ds.task = classes == 0 ? task_kind::regression : task_kind::classification;
  ds.num_features = d;
  ds.num_classes = classes;
  ds.x.resize(static_cast<size_t>(n * d));
  ds.y.resize(static_cast<size_t>(n));
  for (float& v : ds.x)
    v = normal(rng);
  for (int64_t i = 0; i < n; ++i) {
    if (classes == 0) {
      float s = 0;
      for (int64_t j = 0; j < d; ++j)
        s += ds.x[static_cast<size_t>(i * d + j)];
      ds.y[static_cast<size_t>(i)] = s / std::sqrt(static_cast<float>(d)) + 0.1f * normal(rng);
    } else {
      ds.y[static_cast<size_t>(i)] = static_cast<float>(rng() % static_cast<uint64_t>(classes));
    }
  }
  return ds;
}

// A dataset from explicit columns.
dataset make_dataset(int64_t d, int64_t classes, const std::vector<std::vector<float>>& xs,
                     const std::vector<float>& ys) {
  dataset ds;
  ds.name = "hand";
  ds.num_features = d;
  ds.num_classes = classes;
  ds.task = classes == 0 ? task_kind::regression : task_kind::classification;
  for (const auto& x : xs)
    ds.x.insert(ds.x.end(), x.begin(), x.end());
  ds.y = ys;
  return ds;
}

std::vector<int64_t> iota_indices(int64_t n) {
  std::vector<int64_t> idx(static_cast<size_t>(n));
  std::iota(idx.begin(), idx.end(), 0);
  return idx;
}

double norm(const std::vector<double>& v) {
  double s = 0;
  for (double x : v)
    s += x * x;
  return std::sqrt(s);
}

// The loss of a registry model in double, straight from its definition in
// models/model.hpp, reading the tensors off its layout(): "linear" and
// "logistic" score <w, x>; "softmax" and "mlp" are dense layers W (out x in,
// column-major) and b, with ReLU between them, under a mean softmax
// cross-entropy. Records the ReLUs' piece and margin for test::reference_slope.
test::piecewise_loss reference_loss(const model& m, const std::vector<double>& w,
                                    const dataset& ds) {
  test::piecewise_loss r;
  const std::vector<param_tensor> layout = m.layout();
  const int64_t n = ds.size();
  for (int64_t i = 0; i < n; ++i) {
    const float* x = ds.sample(i);
    const double y = ds.y[static_cast<size_t>(i)];
    double loss = 0;
    if (m.name() == "linear" || m.name() == "logistic") {
      double score = 0;
      for (int64_t j = 0; j < ds.num_features; ++j)
        score += w[static_cast<size_t>(j)] * x[j];
      if (m.name() == "linear")
        loss = 0.5 * (score - y) * (score - y);
      else
        loss = std::log1p(std::exp(-(2 * y - 1) * score));
    } else {
      std::vector<double> a(x, x + ds.num_features);
      for (size_t t = 0; t < layout.size(); t += 2) {
        const int64_t out = layout[t].shape[0], in = layout[t].shape[1];
        const double* W = w.data() + layout[t].offset;
        const double* b = w.data() + layout[t + 1].offset;
        std::vector<double> z(b, b + out);
        for (int64_t c = 0; c < in; ++c)
          for (int64_t k = 0; k < out; ++k)
            z[static_cast<size_t>(k)] += W[k + out * c] * a[static_cast<size_t>(c)];
        if (t + 2 < layout.size()) {  // hidden: ReLU
          for (double& v : z) {
            r.piece.push_back(v > 0);
            r.margin = std::min(r.margin, std::fabs(v));
            v = std::max(v, 0.0);
          }
        }
        a = z;
      }
      const double top = *std::max_element(a.begin(), a.end());
      double sum = 0;
      for (double v : a)
        sum += std::exp(v - top);
      loss = std::log(sum) + top - a[static_cast<size_t>(y)];
    }
    r.loss += loss / static_cast<double>(n);
  }
  return r;
}

// -- the contract every spec passes ------------------------------------------

struct spec_case {
  std::string spec;
  int64_t classes;
};

void PrintTo(const spec_case& c, std::ostream* os) { *os << c.spec; }

class model_contract : public ::testing::TestWithParam<spec_case> {
protected:
  static constexpr int64_t d = 5;
  static constexpr int64_t n = 12;

  void SetUp() override {
    data_ = random_dataset(n, d, GetParam().classes, 7);
    model_ = make_model(GetParam().spec, d, GetParam().classes);
    w_.resize(static_cast<size_t>(model_->num_params()));
    std::mt19937_64 rng(3);
    model_->init(w_.data(), rng);
    // Move away from init (zeros for the linear models) so that no gradient
    // is trivially small and the check exercises every term.
    std::normal_distribution<float> normal(0.0f, 0.3f);
    for (float& v : w_)
      v += normal(rng);
    idx_ = iota_indices(n);
  }

  double loss_at(const std::vector<float>& w) {
    std::vector<float> g(w.size());
    return model_->loss_grad(w.data(), data_, idx_.data(), n, g.data());
  }

  dataset data_;
  std::unique_ptr<model> model_;
  std::vector<float> w_;
  std::vector<int64_t> idx_;
};

// Every coordinate of loss_grad's gradient against the derivative of the
// reference loss in double (test::reference_slope: a Richardson central
// difference that crosses no ReLU kink, exact to ~1e-12). What is left is
// the float gradient's rounding, measured 4e-8 to 1e-7 relative; 1e-4 leaves
// a factor of several hundred for any summation order. The ReLU inputs are at
// least 7e-4 from 0 here (checked: float rounding, ~1e-7, cannot send the
// model to another side of a kink than the reference).
TEST_P(model_contract, gradient_matches_finite_differences) {
  std::vector<float> g(w_.size());
  model_->loss_grad(w_.data(), data_, idx_.data(), n, g.data());
  const std::vector<double> w(w_.begin(), w_.end());
  auto f = [&](const std::vector<double>& at) { return reference_loss(*model_, at, data_); };
  ASSERT_GT(f(w).margin, 1e-5);
  std::vector<double> diff(w_.size()), ref(w_.size()), unit(w_.size(), 0.0);
  for (size_t i = 0; i < w_.size(); ++i) {
    unit[i] = 1;
    test::slope_estimate d = test::reference_slope(f, w, unit);
    unit[i] = 0;
    ASSERT_GT(d.step, 0) << "coordinate " << i << " sits on a kink";
    ref[i] = d.slope;
    diff[i] = d.slope - g[i];
  }
  EXPECT_GT(norm(ref), 1e-3);
  EXPECT_LE(norm(diff), 1e-4 * norm(ref)) << GetParam().spec;
}

// Directional derivatives along random directions, every coordinate at once,
// against the reference's. Measured: up to 1e-6 of max(|slope|, 1e-2).
TEST_P(model_contract, directional_derivatives_match) {
  std::vector<float> g(w_.size());
  model_->loss_grad(w_.data(), data_, idx_.data(), n, g.data());
  const std::vector<double> w(w_.begin(), w_.end());
  auto f = [&](const std::vector<double>& at) { return reference_loss(*model_, at, data_); };
  std::mt19937_64 rng(11);
  std::normal_distribution<double> normal;
  for (int trial = 0; trial < 5; ++trial) {
    std::vector<double> v(w_.size());
    for (double& x : v)
      x = normal(rng);
    double vn = norm(v);
    for (double& x : v)
      x /= vn;
    test::slope_estimate d = test::reference_slope(f, w, v);
    ASSERT_GT(d.step, 0) << "direction " << trial << " sits on a kink";
    double an = 0;
    for (size_t i = 0; i < w_.size(); ++i)
      an += g[i] * v[i];
    EXPECT_NEAR(d.slope, an, 1e-4 * std::max(std::fabs(an), 1e-2)) << "direction " << trial;
  }
}

// The reference is the model's loss (so the slopes above are of the right
// function): measured within 3e-8, float rounding of the forward pass.
TEST_P(model_contract, reference_loss_matches_the_model) {
  const double loss = loss_at(w_);
  const double ref = reference_loss(*model_, std::vector<double>(w_.begin(), w_.end()), data_).loss;
  EXPECT_NEAR(loss, ref, 1e-5 * std::max(1.0, ref)) << GetParam().spec;
}

// The mean gradient over a batch is the mean of the per-sample gradients.
TEST_P(model_contract, batch_gradient_is_mean_of_sample_gradients) {
  std::vector<float> g(w_.size()), gi(w_.size());
  double loss = model_->loss_grad(w_.data(), data_, idx_.data(), n, g.data());
  std::vector<double> sum(w_.size(), 0.0);
  double loss_sum = 0;
  for (int64_t i = 0; i < n; ++i) {
    loss_sum += model_->loss_grad(w_.data(), data_, &idx_[static_cast<size_t>(i)], 1, gi.data());
    for (size_t k = 0; k < w_.size(); ++k)
      sum[k] += gi[k];
  }
  EXPECT_NEAR(loss, loss_sum / n, 1e-5 * std::max(1.0, std::fabs(loss)));
  for (size_t k = 0; k < w_.size(); ++k)
    EXPECT_NEAR(g[k], sum[k] / n, 1e-5) << "coordinate " << k;
}

// Indices select samples: a permuted batch gives the same loss and gradient,
// and so does the batch without indices (the contiguous path).
TEST_P(model_contract, indices_and_contiguous_batches_agree) {
  std::vector<float> g1(w_.size()), g2(w_.size()), g3(w_.size());
  std::vector<int64_t> rev(idx_.rbegin(), idx_.rend());
  double l1 = model_->loss_grad(w_.data(), data_, idx_.data(), n, g1.data());
  double l2 = model_->loss_grad(w_.data(), data_, rev.data(), n, g2.data());
  double l3 = model_->loss_grad(w_.data(), data_, nullptr, n, g3.data());
  EXPECT_NEAR(l1, l2, 1e-6);
  EXPECT_NEAR(l1, l3, 1e-6);
  for (size_t k = 0; k < w_.size(); ++k) {
    EXPECT_NEAR(g1[k], g2[k], 1e-6);
    EXPECT_NEAR(g1[k], g3[k], 1e-6);
  }
}

// model::prefetch stages a batch's inputs; the next loss_grad on exactly
// those samples uses them, any other batch is gathered afresh. Both give
// the gradient of a plain loss_grad, bit for bit (a stale staged batch
// would give the first batch's gradient for the second).
TEST_P(model_contract, a_prefetched_batch_gives_the_same_gradient_and_a_different_one_is_not_reused) {
  const std::vector<int64_t> first{0, 3, 5, 7}, second{1, 2, 4, 6};
  auto grad = [&](const std::vector<int64_t>& idx, std::vector<float>& g) {
    return model_->loss_grad(w_.data(), data_, idx.data(), 4, g.data());
  };
  std::vector<float> plain1(w_.size()), plain2(w_.size()), got(w_.size());
  const double l1 = grad(first, plain1), l2 = grad(second, plain2);
  ASSERT_NE(plain1, plain2);  // the two batches are told apart

  model_->prefetch(data_, first.data(), 4);
  EXPECT_EQ(grad(first, got), l1);
  EXPECT_EQ(got, plain1);
  model_->prefetch(data_, first.data(), 4);
  EXPECT_EQ(grad(second, got), l2);  // staged for another batch: not reused
  EXPECT_EQ(got, plain2);
  model_->prefetch(data_, first.data(), 4);
  model_->evaluate(w_.data(), data_, second.data(), 4);  // another batch in between
  EXPECT_EQ(grad(first, got), l1);
  EXPECT_EQ(got, plain1);
  // A bad index is left to the loss_grad that reads it.
  const std::vector<int64_t> bad{0, 1, 2, n + 5};
  EXPECT_NO_THROW(model_->prefetch(data_, bad.data(), 4));
  EXPECT_THROW(grad(bad, got), std::invalid_argument);
}

TEST_P(model_contract, evaluate_loss_matches_loss_grad) {
  std::vector<float> g(w_.size());
  double loss = model_->loss_grad(w_.data(), data_, idx_.data(), n, g.data());
  eval_result all = model_->evaluate(w_.data(), data_, nullptr, n);
  eval_result some = model_->evaluate(w_.data(), data_, idx_.data(), n);
  EXPECT_NEAR(all.loss, loss, 1e-5);
  EXPECT_NEAR(some.loss, loss, 1e-5);
  EXPECT_EQ(all.samples, n);
  EXPECT_DOUBLE_EQ(all.accuracy, some.accuracy);
  EXPECT_GE(all.accuracy, 0.0);
  EXPECT_LE(all.accuracy, 1.0);
  EXPECT_THROW(model_->evaluate(w_.data(), data_, nullptr, n - 1), std::invalid_argument);
}

TEST_P(model_contract, init_is_deterministic_per_seed) {
  std::vector<float> a(w_.size()), b(w_.size()), c(w_.size());
  std::mt19937_64 r1(42), r2(42), r3(43);
  model_->init(a.data(), r1);
  model_->init(b.data(), r2);
  model_->init(c.data(), r3);
  EXPECT_EQ(a, b);
  for (float v : a)
    EXPECT_TRUE(std::isfinite(v));
  bool zero_init = GetParam().spec == "linear" || GetParam().spec == "logistic";
  if (zero_init)
    EXPECT_EQ(a, std::vector<float>(a.size(), 0.0f));
  else
    EXPECT_NE(a, c);
}

TEST_P(model_contract, layout_tiles_the_parameter_block) {
  int64_t offset = 0;
  for (const param_tensor& t : model_->layout()) {
    EXPECT_EQ(t.offset, offset) << t.name;
    int64_t size = 1;
    for (int64_t s : t.shape) {
      EXPECT_GT(s, 0) << t.name;
      size *= s;
    }
    offset += size;
  }
  EXPECT_EQ(offset, model_->num_params());
  EXPECT_GT(model_->flops_per_sample(), 0.0);
  EXPECT_EQ(model_->name(), GetParam().spec);
}

TEST_P(model_contract, rejects_mismatched_data_and_bad_indices) {
  std::vector<float> g(w_.size());
  dataset wide = random_dataset(4, d + 1, GetParam().classes, 1);
  EXPECT_THROW(model_->loss_grad(w_.data(), wide, nullptr, 4, g.data()), std::invalid_argument);
  int64_t bad = n;
  EXPECT_THROW(model_->loss_grad(w_.data(), data_, &bad, 1, g.data()), std::invalid_argument);
  bad = -1;
  EXPECT_THROW(model_->loss_grad(w_.data(), data_, &bad, 1, g.data()), std::invalid_argument);
  EXPECT_THROW(model_->loss_grad(w_.data(), data_, idx_.data(), 0, g.data()),
               std::invalid_argument);
}

INSTANTIATE_TEST_SUITE_P(all_specs, model_contract,
                         ::testing::Values(spec_case{"linear", 0}, spec_case{"logistic", 2},
                                           spec_case{"softmax", 3}, spec_case{"mlp:16", 3},
                                           spec_case{"mlp:8,6", 4}),
                         [](const ::testing::TestParamInfo<spec_case>& info) {
                           std::string s;
                           for (char ch : info.param.spec)
                             s += std::isalnum(static_cast<unsigned char>(ch)) ? ch : '_';
                           return s;
                         });

// -- closed forms ----------------------------------------------------------------

// Least squares: loss 0.5 mean r^2 and gradient X^T (X w - y) / n, computed
// here in double straight from the definition.
TEST(linear_model, gradient_is_normal_equations_residual) {
  const int64_t n = 20, d = 7;
  dataset ds = random_dataset(n, d, 0, 5);
  auto m = make_model("linear", d, 0);
  std::vector<float> w(d);
  std::mt19937_64 rng(9);
  std::normal_distribution<float> normal;
  for (float& v : w)
    v = normal(rng);
  std::vector<float> g(d);
  double loss = m->loss_grad(w.data(), ds, nullptr, n, g.data());

  std::vector<double> expect(d, 0.0);
  double expect_loss = 0;
  for (int64_t i = 0; i < n; ++i) {
    double r = -ds.y[static_cast<size_t>(i)];
    for (int64_t j = 0; j < d; ++j)
      r += static_cast<double>(w[static_cast<size_t>(j)]) * ds.x[static_cast<size_t>(i * d + j)];
    expect_loss += 0.5 * r * r / n;
    for (int64_t j = 0; j < d; ++j)
      expect[static_cast<size_t>(j)] += r * ds.x[static_cast<size_t>(i * d + j)] / n;
  }
  EXPECT_NEAR(loss, expect_loss, 1e-5 * expect_loss);
  for (int64_t j = 0; j < d; ++j)
    EXPECT_NEAR(g[static_cast<size_t>(j)], expect[static_cast<size_t>(j)], 1e-5);
}

TEST(logistic_model, loss_at_zero_is_log_two) {
  dataset ds = random_dataset(10, 4, 2, 2);
  auto m = make_model("logistic", 4, 2);
  std::vector<float> w(4, 0.0f), g(4);
  EXPECT_NEAR(m->loss_grad(w.data(), ds, nullptr, 10, g.data()), std::log(2.0), 1e-12);
}

// Huge margins: the loss must stay finite (no exp overflow) and be ~0 or ~|m|.
TEST(logistic_model, large_margins_are_stable) {
  dataset ds = make_dataset(1, 2, {{1.0f}, {1.0f}}, {1.0f, 0.0f});
  auto m = make_model("logistic", 1, 2);
  std::vector<float> w{1000.0f}, g(1);
  int64_t first = 0, second = 1;
  EXPECT_NEAR(m->loss_grad(w.data(), ds, &first, 1, g.data()), 0.0, 1e-12);
  EXPECT_NEAR(g[0], 0.0f, 1e-12);
  EXPECT_NEAR(m->loss_grad(w.data(), ds, &second, 1, g.data()), 1000.0, 1e-9);
  EXPECT_NEAR(g[0], 1.0f, 1e-6);
}

// At W = 0, b = 0 every class has probability 1/C: loss log C, and the bias
// gradient is the mean of (1/C - onehot).
TEST(softmax_model, loss_at_zero_is_log_classes) {
  const int64_t n = 30, d = 6, c = 5;
  dataset ds = random_dataset(n, d, c, 4);
  auto m = make_model("softmax", d, c);
  std::vector<float> w(static_cast<size_t>(m->num_params()), 0.0f), g(w.size());
  EXPECT_NEAR(m->loss_grad(w.data(), ds, nullptr, n, g.data()), std::log(double(c)), 1e-6);
  std::vector<double> count(c, 0.0);
  for (float y : ds.y)
    count[static_cast<size_t>(y)] += 1;
  int64_t b_offset = m->layout().at(1).offset;
  for (int64_t k = 0; k < c; ++k)
    EXPECT_NEAR(g[static_cast<size_t>(b_offset + k)], 1.0 / c - count[static_cast<size_t>(k)] / n,
                1e-6);
}

// Logits of 1e4: a naive exp overflows; log-softmax must not.
TEST(softmax_model, large_logits_are_stable) {
  dataset ds = make_dataset(1, 2, {{1.0f}, {1.0f}}, {0.0f, 1.0f});
  auto m = make_model("softmax", 1, 2);
  std::vector<float> w{1e4f, -1e4f, 0.0f, 0.0f}, g(4);  // W = [1e4; -1e4], b = 0
  double loss = m->loss_grad(w.data(), ds, nullptr, 2, g.data());
  EXPECT_NEAR(loss, 0.5 * 2e4, 1e-3);  // sample 0 costs 0, sample 1 costs 2e4
  for (float v : g)
    EXPECT_TRUE(std::isfinite(v));
}

// -- evaluate on hand-made cases ------------------------------------------------

// W = I, b = 0 on two features and two classes: the larger feature wins.
TEST(evaluate, softmax_counts_argmax_hits) {
  dataset ds = make_dataset(2, 2, {{1, 0}, {0, 1}, {1, 0}, {2, 0}}, {0, 1, 1, 0});
  auto m = make_model("softmax", 2, 2);
  std::vector<float> w{1, 0, 0, 1, 0, 0};  // W column-major, then b
  eval_result r = m->evaluate(w.data(), ds, nullptr, ds.size());
  EXPECT_DOUBLE_EQ(r.accuracy, 0.75);
  EXPECT_EQ(r.samples, 4);
  // Per-sample loss log(1 + exp(-margin)): margins 1, 1, -1, 2.
  double expect = (2 * std::log1p(std::exp(-1.0)) + std::log1p(std::exp(1.0)) +
                   std::log1p(std::exp(-2.0))) / 4;
  EXPECT_NEAR(r.loss, expect, 1e-6);
  // A subset through indices: samples 2 and 3, one hit.
  std::vector<int64_t> idx{2, 3};
  EXPECT_DOUBLE_EQ(m->evaluate(w.data(), ds, idx.data(), 2).accuracy, 0.5);
}

TEST(evaluate, logistic_uses_the_sign_of_the_score) {
  dataset ds = make_dataset(2, 2, {{2, 1}, {1, 2}, {1, 2}}, {1, 0, 1});
  auto m = make_model("logistic", 2, 2);
  std::vector<float> w{1, -1};
  eval_result r = m->evaluate(w.data(), ds, nullptr, 3);
  EXPECT_NEAR(r.accuracy, 2.0 / 3.0, 1e-12);
  double expect = (2 * std::log1p(std::exp(-1.0)) + std::log1p(std::exp(1.0))) / 3;
  EXPECT_NEAR(r.loss, expect, 1e-9);
}

TEST(evaluate, linear_reports_loss_and_zero_accuracy) {
  dataset ds = make_dataset(1, 0, {{1}, {2}}, {0, 0});
  auto m = make_model("linear", 1, 0);
  std::vector<float> w{1};
  eval_result r = m->evaluate(w.data(), ds, nullptr, 2);
  EXPECT_DOUBLE_EQ(r.loss, (0.5 * 1 + 0.5 * 4) / 2);
  EXPECT_DOUBLE_EQ(r.accuracy, 0.0);
}

// More samples than one evaluation chunk: the chunks must add up to the mean.
TEST(evaluate, chunked_evaluation_matches_per_sample_mean) {
  const int64_t n = 2500, d = 9, c = 4;
  dataset ds = random_dataset(n, d, c, 8);
  auto m = make_model("mlp:7", d, c);
  std::vector<float> w(static_cast<size_t>(m->num_params())), g(w.size());
  std::mt19937_64 rng(1);
  m->init(w.data(), rng);
  eval_result r = m->evaluate(w.data(), ds, nullptr, n);
  double sum = 0;
  for (int64_t i = 0; i < n; ++i)
    sum += m->loss_grad(w.data(), ds, &i, 1, g.data());
  EXPECT_EQ(r.samples, n);
  EXPECT_NEAR(r.loss, sum / n, 1e-5);
  // And the batch gradient path still works at a new, smaller batch size.
  std::vector<int64_t> idx = iota_indices(64);
  EXPECT_NEAR(m->loss_grad(w.data(), ds, idx.data(), 64, g.data()),
              m->evaluate(w.data(), ds, idx.data(), 64).loss, 1e-5);
}

// -- parameters and layout ------------------------------------------------------

TEST(mlp_model, layout_of_two_hidden_layers) {
  auto m = make_model("mlp:8,6", 5, 3);
  std::vector<param_tensor> l = m->layout();
  ASSERT_EQ(l.size(), 6u);
  std::vector<std::vector<int64_t>> shapes{{8, 5}, {8}, {6, 8}, {6}, {3, 6}, {3}};
  std::vector<int64_t> offsets{0, 40, 48, 96, 102, 120};
  for (size_t i = 0; i < l.size(); ++i) {
    EXPECT_EQ(l[i].shape, shapes[i]) << l[i].name;
    EXPECT_EQ(l[i].offset, offsets[i]) << l[i].name;
  }
  EXPECT_EQ(m->num_params(), 123);
  EXPECT_EQ(l[0].name, "W1");
  EXPECT_EQ(l[5].name, "b3");
}

TEST(mlp_model, init_ranges_and_zero_biases) {
  auto m = make_model("mlp:32", 50, 10);
  std::vector<float> w(static_cast<size_t>(m->num_params()));
  std::mt19937_64 rng(5);
  m->init(w.data(), rng);
  std::vector<param_tensor> l = m->layout();
  float hidden_bound = std::sqrt(6.0f / 50), out_bound = std::sqrt(1.0f / 32);
  float hidden_max = 0, out_max = 0;
  for (int64_t i = 0; i < 32 * 50; ++i)
    hidden_max = std::max(hidden_max, std::fabs(w[static_cast<size_t>(l[0].offset + i)]));
  for (int64_t i = 0; i < 10 * 32; ++i)
    out_max = std::max(out_max, std::fabs(w[static_cast<size_t>(l[2].offset + i)]));
  EXPECT_LE(hidden_max, hidden_bound);
  EXPECT_GT(hidden_max, 0.9f * hidden_bound);  // spread over the whole range
  EXPECT_LE(out_max, out_bound);
  for (int k : {1, 3})
    for (int64_t i = 0; i < l[static_cast<size_t>(k)].shape[0]; ++i)
      EXPECT_EQ(w[static_cast<size_t>(l[static_cast<size_t>(k)].offset + i)], 0.0f);
}

TEST(mlp_model, flops_per_sample_counts_the_gemms) {
  auto m = make_model("mlp:256", 784, 10);
  // forward 2 * MACs; backward 2 * MACs for the first layer (weights only)
  // and 4 * MACs for the head (weights and input gradient).
  double first = 784.0 * 256, head = 256.0 * 10;
  EXPECT_DOUBLE_EQ(m->flops_per_sample(), 2 * (first + head) + 2 * first + 4 * head);
  EXPECT_DOUBLE_EQ(make_model("linear", 100, 0)->flops_per_sample(), 400.0);
}

// A few hundred SGD steps on a learnable problem: the MLP must fit it.
TEST(mlp_model, sgd_reduces_the_loss) {
  const int64_t n = 200, d = 4, c = 3;
  dataset ds = random_dataset(n, d, c, 6);
  for (int64_t i = 0; i < n; ++i) {  // label = argmax of the first 3 features
    const float* x = ds.sample(i);
    ds.y[static_cast<size_t>(i)] =
        static_cast<float>(std::max_element(x, x + 3) - x);
  }
  auto m = make_model("mlp:16", d, c);
  std::vector<float> w(static_cast<size_t>(m->num_params())), g(w.size());
  std::mt19937_64 rng(2);
  m->init(w.data(), rng);
  double before = m->evaluate(w.data(), ds, nullptr, n).loss;
  for (int step = 0; step < 300; ++step) {
    m->loss_grad(w.data(), ds, nullptr, n, g.data());
    for (size_t k = 0; k < w.size(); ++k)
      w[k] -= 0.5f * g[k];
  }
  eval_result after = m->evaluate(w.data(), ds, nullptr, n);
  EXPECT_LT(after.loss, 0.3 * before);
  EXPECT_GT(after.accuracy, 0.9);
}

// -- labels -----------------------------------------------------------------------

TEST(labels, out_of_range_or_fractional_labels_throw) {
  auto m = make_model("mlp:4", 2, 3);
  std::vector<float> w(static_cast<size_t>(m->num_params()), 0.1f), g(w.size());
  for (float bad : {3.0f, -1.0f, 1.5f, std::nanf("")}) {
    dataset ds = make_dataset(2, 3, {{1, 2}}, {bad});
    EXPECT_THROW(m->loss_grad(w.data(), ds, nullptr, 1, g.data()), std::invalid_argument) << bad;
    EXPECT_THROW(m->evaluate(w.data(), ds, nullptr, 1), std::invalid_argument) << bad;
  }
  auto lr = make_model("logistic", 2, 2);
  dataset ds = make_dataset(2, 2, {{1, 2}}, {2.0f});
  EXPECT_THROW(lr->loss_grad(w.data(), ds, nullptr, 1, g.data()), std::invalid_argument);
  ds.y = {-1.0f};
  EXPECT_THROW(lr->evaluate(w.data(), ds, nullptr, 1), std::invalid_argument);
}

// -- the registry -------------------------------------------------------------------

TEST(model_registry, names_list_every_spec) {
  std::vector<std::string> names;
  for (const auto& [form, help] : model_names()) {
    names.push_back(form);
    EXPECT_FALSE(help.empty()) << form;
  }
  EXPECT_EQ(names, (std::vector<std::string>{"linear", "logistic", "softmax", "mlp:H1[,H2...]",
                                             "cnn[:C1,C2]"}));
}

TEST(model_registry, unknown_spec_lists_valid_ones) {
  try {
    make_model("resnet", 4, 2);
    FAIL() << "no exception";
  } catch (const std::invalid_argument& e) {
    std::string what = e.what();
    EXPECT_NE(what.find("resnet"), std::string::npos) << what;
    for (const auto& [form, help] : model_names())
      EXPECT_NE(what.find(form), std::string::npos) << what;
  }
}

TEST(model_registry, bad_mlp_specs_throw) {
  for (const char* spec : {"mlp:", "mlp:0", "mlp:abc", "mlp:-3", "mlp", "mlp:8,", "mlp:,8",
                           "mlp:8,,8", "mlp:8 ", "mlp:1.5", "mlp:99999999999999999999", "mlp:4,0"}) {
    try {
      make_model(spec, 4, 3);
      ADD_FAILURE() << spec << ": no exception";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("mlp"), std::string::npos) << e.what();
    }
  }
  EXPECT_THROW(make_model("softmax:3", 4, 3), std::invalid_argument);
  EXPECT_THROW(make_model("", 4, 3), std::invalid_argument);
}

TEST(model_registry, canonical_mlp_name) {
  EXPECT_EQ(make_model("mlp:016,8", 4, 3)->name(), "mlp:16,8");
  EXPECT_EQ(make_model("mlp:256", 784, 10)->num_params(), 784 * 256 + 256 + 256 * 10 + 10);
}

TEST(model_registry, dimension_mismatches_throw) {
  EXPECT_THROW(make_model("logistic", 4, 10), std::invalid_argument);
  EXPECT_THROW(make_model("logistic", 4, 0), std::invalid_argument);
  EXPECT_THROW(make_model("linear", 4, 3), std::invalid_argument);
  EXPECT_THROW(make_model("linear", 4, 2), std::invalid_argument);
  EXPECT_THROW(make_model("softmax", 4, 0), std::invalid_argument);
  EXPECT_THROW(make_model("softmax", 4, 1), std::invalid_argument);
  EXPECT_THROW(make_model("mlp:8", 4, 0), std::invalid_argument);
  EXPECT_THROW(make_model("softmax", 0, 3), std::invalid_argument);
  EXPECT_THROW(make_model("linear", -1, 0), std::invalid_argument);
  try {
    make_model("logistic", 4, 10);
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("2 classes"), std::string::npos) << e.what();
  }
}

TEST(model_registry, parameter_counts_past_64_bits_are_refused) {
  const int64_t huge = int64_t{1} << 62;  // also (2^31)^2, a square image
  for (auto spec : {"softmax", "mlp:1048576", "mlp:4,1048576", "cnn"}) {
    try {
      make_model(spec, huge, 10);
      ADD_FAILURE() << spec << ": accepted 2^62 features";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("overflows a 64-bit integer"), std::string::npos)
          << e.what();
    }
  }
}

// 2^16 samples of 2^48 features claim 2^64 values, which wraps to 0 = the
// size of the (empty) feature block: every model must still refuse it
// instead of reading features that are not there.
TEST(model_registry, feature_counts_whose_product_wraps_are_refused) {
  const int64_t features = int64_t{1} << 48;
  for (auto [spec, classes] : {std::pair<const char*, int64_t>{"linear", 0}, {"logistic", 2},
                               {"softmax", 3}, {"mlp:4", 3}, {"cnn", 3}}) {
    dataset d;
    d.name = "wrapped";
    d.task = classes == 0 ? task_kind::regression : task_kind::classification;
    d.num_features = features;
    d.num_classes = classes;
    d.y.assign(size_t{1} << 16, 0.0f);
    auto m = make_model(spec, features, classes);
    const int64_t idx = 0;
    try {
      m->loss_grad(nullptr, d, &idx, 1, nullptr);
      ADD_FAILURE() << spec << ": loss_grad accepted a dataset without its features";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("wrapped"), std::string::npos) << e.what();
    }
    EXPECT_THROW(m->evaluate(nullptr, d, nullptr, d.size()), std::invalid_argument) << spec;
  }
}

} // namespace
} // namespace chorus
