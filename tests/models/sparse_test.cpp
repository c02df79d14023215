// Sparse (CSR) datasets through the models. The contract: on a sparse
// dataset every model that takes one (linear, logistic, softmax, mlp on
// sparse rows; cnn by densifying each batch) gives the loss, gradient and
// evaluation it gives on the same data stored dense, and linear/logistic
// match a double-precision reference. Then a malformed sparse dataset is an
// error, not a write out of bounds, and a LIBSVM file written here trains a
// logistic regression through run_experiment.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include <unistd.h>

#include "models/model.hpp"
#include "tools/experiment.hpp"

namespace chorus {
namespace {

// A dense dataset where about 70% of the features are exactly zero.
dataset mostly_zero_dataset(int64_t n, int64_t d, int64_t classes, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal;
  dataset ds;
  ds.name = "mostly-zero";
  ds.task = classes == 0 ? task_kind::regression : task_kind::classification;
  ds.num_features = d;
  ds.num_classes = classes;
  ds.x.resize(static_cast<size_t>(n * d));
  for (float& v : ds.x)
    v = rng() % 10 < 3 ? normal(rng) : 0.0f;
  ds.y.resize(static_cast<size_t>(n));
  for (float& y : ds.y)
    y = classes == 0 ? normal(rng) : static_cast<float>(rng() % static_cast<uint64_t>(classes));
  return ds;
}

// The same samples as CSR rows (x empty).
dataset to_sparse(const dataset& dense) {
  dataset s = dense;
  s.name = dense.name + " (sparse)";
  s.x.clear();
  s.sparse.offsets.push_back(0);
  for (int64_t i = 0; i < dense.size(); ++i) {
    for (int64_t j = 0; j < dense.num_features; ++j)
      if (float v = dense.sample(i)[j]; v != 0.0f) {
        s.sparse.columns.push_back(static_cast<int32_t>(j));
        s.sparse.values.push_back(v);
      }
    s.sparse.offsets.push_back(static_cast<int64_t>(s.sparse.columns.size()));
  }
  return s;
}

std::vector<float> random_weights(int64_t count, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal(0.0f, 0.3f);
  std::vector<float> w(static_cast<size_t>(count));
  for (float& v : w)
    v = normal(rng);
  return w;
}

double max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i)
    m = std::max(m, std::fabs(static_cast<double>(a[i]) - static_cast<double>(b[i])));
  return m;
}

double max_abs(const std::vector<float>& a) {
  double m = 0;
  for (float v : a)
    m = std::max(m, std::fabs(static_cast<double>(v)));
  return m;
}

struct model_case {
  const char* spec;
  int64_t features;
  int64_t classes;
};

const model_case sparse_models[] = {
    {"linear", 13, 0}, {"logistic", 13, 2}, {"softmax", 13, 3},
    {"mlp:5", 13, 3},  {"mlp:4,3", 13, 4},  {"cnn:1,2", 64, 2},
};

TEST(sparse_models, loss_gradient_and_evaluation_equal_the_dense_ones) {
  for (const auto& c : sparse_models) {
    SCOPED_TRACE(c.spec);
    const dataset dense = mostly_zero_dataset(40, c.features, c.classes, 5);
    const dataset sparse = to_sparse(dense);
    ASSERT_TRUE(sparse.is_sparse() && sparse.well_formed());
    ASSERT_LT(sparse.sparse.values.size(), dense.x.size() / 2);  // really sparse

    auto on_dense = make_model(c.spec, c.features, c.classes);
    auto on_sparse = make_model(c.spec, c.features, c.classes);
    const auto w = random_weights(on_dense->num_params(), 11);
    const std::vector<int64_t> idx = {3, 17, 3, 0, 39, 22, 8};  // a repeat too
    for (const int64_t* batch : {idx.data(), static_cast<const int64_t*>(nullptr)}) {
      const int64_t n = batch ? static_cast<int64_t>(idx.size()) : dense.size();
      std::vector<float> g_dense(w.size()), g_sparse(w.size());
      const double l_dense = on_dense->loss_grad(w.data(), dense, batch, n, g_dense.data());
      const double l_sparse = on_sparse->loss_grad(w.data(), sparse, batch, n, g_sparse.data());
      EXPECT_NEAR(l_sparse, l_dense, 1e-5 * (1 + std::fabs(l_dense)));
      EXPECT_LE(max_abs_diff(g_sparse, g_dense), 1e-5 * (1 + max_abs(g_dense)));
      EXPECT_GT(max_abs(g_dense), 1e-3);  // not trivially equal

      const auto e_dense = on_dense->evaluate(w.data(), dense, batch, n);
      const auto e_sparse = on_sparse->evaluate(w.data(), sparse, batch, n);
      EXPECT_NEAR(e_sparse.loss, e_dense.loss, 1e-5 * (1 + std::fabs(e_dense.loss)));
      EXPECT_EQ(e_sparse.accuracy, e_dense.accuracy);
      EXPECT_EQ(e_sparse.samples, e_dense.samples);
    }
  }
}

// (1/n) sum_j loss(<w, x_j>) and its gradient, in double from the dense rows.
double reference_loss_grad(const std::string& spec, const std::vector<float>& w, const dataset& d,
                           const std::vector<int64_t>& idx, std::vector<double>* g) {
  g->assign(w.size(), 0.0);
  double loss = 0;
  const double inv_n = 1.0 / static_cast<double>(idx.size());
  for (int64_t s : idx) {
    const float* x = d.sample(s);
    double score = 0;
    for (size_t k = 0; k < w.size(); ++k)
      score += static_cast<double>(w[k]) * x[k];
    const double y = d.y[static_cast<size_t>(s)];
    double dscore = 0;
    if (spec == "linear") {
      loss += 0.5 * (score - y) * (score - y);
      dscore = score - y;
    } else {
      const double sign = 2 * y - 1;
      loss += std::log1p(std::exp(-sign * score));
      dscore = -sign / (1 + std::exp(sign * score));
    }
    for (size_t k = 0; k < w.size(); ++k)
      (*g)[k] += dscore * x[k] * inv_n;
  }
  return loss * inv_n;
}

TEST(sparse_models, linear_and_logistic_on_sparse_rows_match_a_double_reference) {
  for (const auto& c : {model_case{"linear", 50, 0}, model_case{"logistic", 50, 2}}) {
    SCOPED_TRACE(c.spec);
    const dataset dense = mostly_zero_dataset(60, c.features, c.classes, 21);
    const dataset sparse = to_sparse(dense);
    auto net = make_model(c.spec, c.features, c.classes);
    const auto w = random_weights(net->num_params(), 4);
    std::vector<int64_t> idx(60);
    for (size_t i = 0; i < idx.size(); ++i)
      idx[i] = static_cast<int64_t>((i * 7) % 60);
    std::vector<float> g(w.size());
    const double loss = net->loss_grad(w.data(), sparse, idx.data(),
                                       static_cast<int64_t>(idx.size()), g.data());
    std::vector<double> g_ref;
    const double loss_ref = reference_loss_grad(c.spec, w, dense, idx, &g_ref);
    EXPECT_NEAR(loss, loss_ref, 1e-6 * (1 + std::fabs(loss_ref)));
    double scale = 0;
    for (double v : g_ref)
      scale = std::max(scale, std::fabs(v));
    for (size_t k = 0; k < g.size(); ++k)
      EXPECT_NEAR(g[k], g_ref[k], 1e-5 * (1 + scale)) << k;
  }
}

TEST(sparse_models, a_malformed_sparse_dataset_is_an_error_not_a_stray_write) {
  for (const auto& c : sparse_models) {
    SCOPED_TRACE(c.spec);
    dataset bad = to_sparse(mostly_zero_dataset(4, c.features, c.classes, 2));
    auto net = make_model(c.spec, c.features, c.classes);
    const auto w = random_weights(net->num_params(), 1);
    std::vector<float> g(w.size());
    const int64_t first[] = {0};

    // A column past num_features, in sample 0.
    dataset wide = bad;
    wide.sparse.columns.insert(wide.sparse.columns.begin() + wide.sparse.offsets[1],
                               static_cast<int32_t>(c.features + 1000));
    wide.sparse.values.insert(wide.sparse.values.begin() + wide.sparse.offsets[1], 1.0f);
    for (size_t i = 1; i < wide.sparse.offsets.size(); ++i)
      ++wide.sparse.offsets[i];
    ASSERT_TRUE(wide.well_formed());
    EXPECT_THROW(net->loss_grad(w.data(), wide, first, 1, g.data()), std::invalid_argument);
    EXPECT_THROW(net->evaluate(w.data(), wide, nullptr, wide.size()), std::invalid_argument);

    // Offsets that do not cover the values.
    dataset short_rows = bad;
    short_rows.sparse.offsets.back() += 5;
    EXPECT_FALSE(short_rows.well_formed());
    EXPECT_THROW(net->loss_grad(w.data(), short_rows, first, 1, g.data()), std::invalid_argument);
  }
}

// --- a LIBSVM file trained end to end -----------------------------------------

struct temp_file {
  std::string path;
  explicit temp_file(const std::string& text) {
    std::string pattern = ::testing::TempDir() + "chorus_sparse_XXXXXX";
    int fd = mkstemp(pattern.data());
    if (fd < 0)
      throw std::runtime_error("mkstemp failed for " + pattern);
    close(fd);
    path = pattern;
    std::ofstream(path, std::ios::binary) << text;
  }
  ~temp_file() {
    std::error_code ec;
    std::filesystem::remove(path, ec);
  }
};

// 1000 rows over 200 features, 10 nonzeros each (written in random order,
// 1-based), labelled +1/-1 by the sign of <w*, x> for a random w*.
std::string separable_libsvm_text() {
  std::mt19937_64 rng(9);
  std::normal_distribution<double> normal;
  const int features = 200;
  std::vector<double> truth(features);
  for (double& v : truth)
    v = normal(rng);
  std::string text;
  for (int r = 0; r < 1000; ++r) {
    std::vector<int> cols;
    while (cols.size() < 10) {
      int c = static_cast<int>(rng() % features);
      if (std::find(cols.begin(), cols.end(), c) == cols.end())
        cols.push_back(c);
    }
    std::string line;
    double score = 0;
    for (int c : cols) {
      const double v = 0.5 + static_cast<double>(rng() % 100) / 100.0;
      score += truth[static_cast<size_t>(c)] * v;
      line += " " + std::to_string(c + 1) + ":" + std::to_string(v);
    }
    text += (score >= 0 ? "+1" : "-1") + line + "\n";
  }
  return text;
}

TEST(sparse_training, logistic_regression_learns_a_libsvm_file_through_run_experiment) {
  temp_file file(separable_libsvm_text());
  experiment_config cfg;
  cfg.algorithm = "sync_sgd";
  cfg.workers = 2;
  cfg.model = "logistic";
  cfg.dataset = "libsvm:" + file.path;
  cfg.epochs = 15;
  cfg.batch = 16;
  cfg.lr = 1.0;
  cfg.progress = false;

  dataset_options opts;
  const auto data = load_dataset(cfg.dataset, opts);
  ASSERT_TRUE(data.train->is_sparse() && data.test->is_sparse());
  EXPECT_EQ(data.train->num_features, 200);

  const auto result = run_experiment(cfg);
  EXPECT_EQ(result.train_size, 800);
  EXPECT_EQ(result.test_size, 200);
  EXPECT_GT(result.summary.test_acc, 0.8);
  EXPECT_LT(result.summary.train_loss, std::log(2.0));  // below the loss at w = 0

  // The feature bound reaches the loader: 200 features refused under 100.
  cfg.max_features = 100;
  try {
    run_experiment(cfg);
    ADD_FAILURE() << "expected data_error";
  } catch (const data_error& e) {
    EXPECT_NE(std::string(e.what()).find("--max-features"), std::string::npos) << e.what();
  }
}

} // namespace
} // namespace chorus
