// Linear models on w in R^d with no bias: "linear" (least squares,
// 0.5 (<w,x> - y)^2, regression) and "logistic" (binary, labels {0,1},
// log(1 + exp(-s <w,x>)) with s = 2y - 1). Both share one per-sample loop that
// differs only in the scalar loss of the score <w,x>. Not for multiclass data
// (that is "softmax", in mlp.cpp) and with no regularizer (the protocol's prox
// applies it). On a sparse dataset (LIBSVM) the score and the gradient walk
// each row's nonzeros only; the gradient stays a dense vector of d floats,
// as every protocol exchanges, so a step costs O(d + nonzeros of the batch).
#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <memory>
#include <stdexcept>
#include <string>

#include "messages/checked.hpp"
#include "models/model.hpp"

namespace chorus {

namespace {

using vec_map = Eigen::Map<Eigen::VectorXf>;
using cvec_map = Eigen::Map<const Eigen::VectorXf>;

/// 0.5 (score - y)^2 for real targets.
struct squared_loss {
  static constexpr const char* spec = "linear";
  static void check_label(float) {}  // any real target
  static double value(double score, double y, double* dscore) {
    double r = score - y;
    *dscore = r;
    return 0.5 * r * r;
  }
  static bool correct(double, double) { return false; }  // accuracy is 0
};

/// log(1 + exp(-s score)), s = 2y - 1, for labels {0, 1}.
struct logistic_loss {
  static constexpr const char* spec = "logistic";
  static void check_label(float y) {
    if (!(y == 0.0f || y == 1.0f))
      throw std::invalid_argument(std::string("logistic: label ") + std::to_string(y) +
                                  " is not 0 or 1");
  }
  static double value(double score, double y, double* dscore) {
    double s = 2 * y - 1;
    double m = s * score;
    // d/dscore = -s sigmoid(-m); 1/(1+exp(m)) is exact at both ends (exp
    // overflowing to inf gives 0), so no branch is needed for it.
    *dscore = -s / (1 + std::exp(m));
    // softplus(-m) without overflow: the exp argument is never positive.
    return m > 0 ? std::log1p(std::exp(-m)) : -m + std::log1p(std::exp(m));
  }
  static bool correct(double score, double y) { return (score > 0) == (y == 1.0); }
};

template <class Loss>
class linear_model final : public model {
public:
  explicit linear_model(int64_t num_features) : d_(num_features) {}

  std::string name() const override { return Loss::spec; }
  int64_t num_params() const override { return d_; }
  std::vector<param_tensor> layout() const override { return {{"w", {d_}, 0}}; }

  void init(float* w, std::mt19937_64&) const override { std::fill(w, w + d_, 0.0f); }

  double loss_grad(const float* w, const dataset& d, const int64_t* idx, int64_t n,
                   float* g) override {
    if (n <= 0)
      throw std::invalid_argument(std::string(Loss::spec) + ": loss_grad needs at least one sample");
    check(d, idx, n);
    cvec_map wv(w, d_);
    vec_map gv(g, d_);
    gv.setZero();
    const double inv_n = 1.0 / static_cast<double>(n);
    double loss = 0;
    for (int64_t j = 0; j < n; ++j) {
      int64_t s = sample_index(d, idx, j);
      float y = d.y[static_cast<size_t>(s)];
      Loss::check_label(y);
      double ds = 0;
      if (d.is_sparse()) {
        const sparse_row r = checked_row(d, s);
        loss += Loss::value(sparse_dot(w, r), y, &ds);
        const auto scale = static_cast<float>(ds * inv_n);
        for (int64_t k = 0; k < r.size; ++k)
          g[r.columns[k]] += scale * r.values[k];
      } else {
        cvec_map x(d.sample(s), d_);
        loss += Loss::value(wv.dot(x), y, &ds);
        gv += static_cast<float>(ds * inv_n) * x;
      }
    }
    return loss * inv_n;
  }

  eval_result evaluate(const float* w, const dataset& d, const int64_t* idx,
                       int64_t n) override {
    if (!idx && n != d.size())
      throw std::invalid_argument(std::string(Loss::spec) +
                                  ": evaluate without indices needs n == dataset size");
    eval_result r;
    if (n <= 0)
      return r;
    check(d, idx, n);
    cvec_map wv(w, d_);
    double loss = 0;
    int64_t correct = 0;
    for (int64_t j = 0; j < n; ++j) {
      int64_t s = sample_index(d, idx, j);
      float y = d.y[static_cast<size_t>(s)];
      Loss::check_label(y);
      double score = d.is_sparse() ? sparse_dot(w, checked_row(d, s))
                                   : static_cast<double>(wv.dot(cvec_map(d.sample(s), d_)));
      double unused = 0;
      loss += Loss::value(score, y, &unused);
      correct += Loss::correct(score, y) ? 1 : 0;
    }
    r.loss = loss / static_cast<double>(n);
    r.accuracy = static_cast<double>(correct) / static_cast<double>(n);
    r.samples = n;
    return r;
  }

  // Forward <w,x> and backward g += r x: two multiply-adds per feature.
  double flops_per_sample() const override { return 4.0 * static_cast<double>(d_); }

private:
  void check(const dataset& d, const int64_t* idx, int64_t n) const {
    const std::string spec = Loss::spec;
    if (d.num_features != d_)
      throw std::invalid_argument(spec + ": model has " + std::to_string(d_) +
                                  " inputs, dataset '" + d.name + "' has " +
                                  std::to_string(d.num_features) + " features");
    if (!d.well_formed())
      throw std::invalid_argument(spec + ": dataset '" + d.name +
                                  "' has features for a different number of samples than labels");
    if (!idx && n > d.size())
      throw std::invalid_argument(spec + ": " + std::to_string(n) + " samples asked of dataset '" +
                                  d.name + "' with " + std::to_string(d.size()));
  }

  // Row s of a sparse dataset, its columns checked against d (the loader
  // promises them; a hand-built dataset must not write outside g).
  sparse_row checked_row(const dataset& d, int64_t s) const {
    const sparse_row r = d.row(s);
    for (int64_t k = 0; k < r.size; ++k)
      if (r.columns[k] < 0 || r.columns[k] >= d_)
        throw std::invalid_argument(std::string(Loss::spec) + ": dataset '" + d.name +
                                    "' sample " + std::to_string(s) + " has column " +
                                    std::to_string(r.columns[k]) + " outside [0, " +
                                    std::to_string(d_) + ")");
    return r;
  }

  // <w, x> over the nonzeros of x, summed in double.
  static double sparse_dot(const float* w, const sparse_row& r) {
    double score = 0;
    for (int64_t k = 0; k < r.size; ++k)
      score += static_cast<double>(w[r.columns[k]]) * static_cast<double>(r.values[k]);
    return score;
  }

  static int64_t sample_index(const dataset& d, const int64_t* idx, int64_t j) {
    if (!idx)
      return j;
    int64_t s = idx[j];
    if (s < 0 || s >= d.size())
      throw std::invalid_argument(std::string(Loss::spec) + ": sample index " + std::to_string(s) +
                                  " outside dataset '" + d.name + "' of " +
                                  std::to_string(d.size()));
    return s;
  }

  int64_t d_;
};

void require_features(const char* spec, int64_t num_features) {
  if (num_features <= 0)
    throw std::invalid_argument(std::string(spec) + ": needs at least one input feature, got " +
                                std::to_string(num_features));
}

} // namespace

namespace detail {

/// Builds "linear" for registry.cpp: regression data only.
std::unique_ptr<model> make_linear(int64_t num_features, int64_t num_classes) {
  require_features("linear", num_features);
  if (num_classes != 0)
    throw std::invalid_argument("linear: least squares needs regression data (0 classes), got " +
                                std::to_string(num_classes) +
                                " classes; use \"logistic\", \"softmax\" or \"mlp:H\"");
  return std::make_unique<linear_model<squared_loss>>(num_features);
}

/// Builds "logistic" for registry.cpp: exactly two classes.
std::unique_ptr<model> make_logistic(int64_t num_features, int64_t num_classes) {
  require_features("logistic", num_features);
  if (num_classes != 2)
    throw std::invalid_argument("logistic: binary logistic regression needs 2 classes, got " +
                                (num_classes == 0 ? std::string("regression data")
                                                  : std::to_string(num_classes)) +
                                (num_classes > 2 ? "; use \"softmax\" or \"mlp:H\"" : ""));
  return std::make_unique<linear_model<logistic_loss>>(num_features);
}

} // namespace detail

} // namespace chorus
