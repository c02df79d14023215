// Seeded synthetic problems with known ground truth: dense least squares and
// sparse binary logistic regression.
//
// One std::mt19937_64 per call draws, in order, the ground truth, the training
// samples and then the test samples, so a seed fixes the whole problem (on one
// standard library: std::normal_distribution is not specified bit-for-bit
// across implementations). These are test problems, not benchmarks of data
// realism.
#include "data/dataset.hpp"

#include <cmath>
#include <numeric>
#include <random>

namespace chorus {

namespace {

void check_sizes(const char* fn, int64_t n_train, int64_t n_test, int64_t d) {
  if (n_train < 1 || n_test < 0 || d < 1)
    throw std::invalid_argument(std::string(fn) + ": need n_train >= 1, n_test >= 0, d >= 1; got " +
                                std::to_string(n_train) + ", " + std::to_string(n_test) + ", " +
                                std::to_string(d));
}

std::shared_ptr<dataset> empty_like(const char* name, task_kind task, int64_t num_classes,
                                    int64_t d, int64_t n) {
  auto out = std::make_shared<dataset>();
  out->name = name;
  out->task = task;
  out->num_classes = num_classes;
  out->num_features = d;
  out->x.resize(static_cast<size_t>(n * d));
  out->y.resize(static_cast<size_t>(n));
  return out;
}

// Fills the features of `out` with N(0, 1) draws and returns <w, x_i> per sample.
std::vector<double> draw_features(dataset& out, const std::vector<float>& w, std::mt19937_64& rng,
                                  std::normal_distribution<double>& normal) {
  const int64_t d = out.num_features;
  std::vector<double> margins(static_cast<size_t>(out.size()));
  for (int64_t i = 0; i < out.size(); ++i) {
    float* xi = out.x.data() + i * d;
    double dot = 0.0;
    for (int64_t j = 0; j < d; ++j) {
      xi[j] = static_cast<float>(normal(rng));
      // The stored (float) feature defines the label, so the ground truth is
      // exact for the data the model actually sees.
      dot += static_cast<double>(w[j]) * xi[j];
    }
    margins[i] = dot;
  }
  return margins;
}

} // namespace

train_test make_least_squares(int64_t n_train, int64_t n_test, int64_t d, double noise,
                              uint64_t seed) {
  check_sizes("make_least_squares", n_train, n_test, d);
  if (!(noise >= 0.0))
    throw std::invalid_argument("make_least_squares: noise must be >= 0");
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, 1.0);

  std::vector<float> w(static_cast<size_t>(d));
  for (float& v : w)
    v = static_cast<float>(normal(rng));

  auto make = [&](int64_t n) {
    auto out = empty_like("synthetic-lsq", task_kind::regression, 0, d, n);
    auto margins = draw_features(*out, w, rng, normal);
    for (int64_t i = 0; i < n; ++i)
      out->y[i] = static_cast<float>(margins[i] + noise * normal(rng));
    return out;
  };
  train_test result;
  result.train = make(n_train);
  result.test = make(n_test);
  result.ground_truth = std::move(w);
  return result;
}

train_test make_sparse_logistic(int64_t n_train, int64_t n_test, int64_t d, int64_t nonzeros,
                                uint64_t seed) {
  check_sizes("make_sparse_logistic", n_train, n_test, d);
  if (nonzeros < 0 || nonzeros > d)
    throw std::invalid_argument("make_sparse_logistic: nonzeros must be in [0, d], got " +
                                std::to_string(nonzeros));
  std::mt19937_64 rng(seed);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::uniform_real_distribution<double> magnitude(1.0, 2.0);
  std::bernoulli_distribution coin(0.5);

  // Random support: a partial Fisher-Yates shuffle picks `nonzeros` distinct
  // positions.
  std::vector<int64_t> positions(static_cast<size_t>(d));
  std::iota(positions.begin(), positions.end(), int64_t{0});
  std::vector<float> w(static_cast<size_t>(d), 0.0f);
  for (int64_t k = 0; k < nonzeros; ++k) {
    std::uniform_int_distribution<int64_t> pick(k, d - 1);
    std::swap(positions[k], positions[pick(rng)]);
    double sign = coin(rng) ? 1.0 : -1.0;
    w[positions[k]] = static_cast<float>(sign * magnitude(rng));
  }

  std::uniform_real_distribution<double> unit(0.0, 1.0);
  auto make = [&](int64_t n) {
    auto out = empty_like("synthetic-logistic", task_kind::classification, 2, d, n);
    auto margins = draw_features(*out, w, rng, normal);
    for (int64_t i = 0; i < n; ++i) {
      double p = 1.0 / (1.0 + std::exp(-margins[i]));
      out->y[i] = unit(rng) < p ? 1.0f : 0.0f;
    }
    return out;
  };
  train_test result;
  result.train = make(n_train);
  result.test = make(n_test);
  result.ground_truth = std::move(w);
  return result;
}

} // namespace chorus
