// Multilayer perceptrons with a softmax cross-entropy head ("mlp:H1[,H2...]"),
// and "softmax" (multinomial logistic regression), which is the same network
// with no hidden layer. Eigen on the calling thread: the batch is gathered
// into a workspace and each layer is one GEMM over maps of the flat parameter
// block, so steady-state calls allocate nothing of their own. Not a layer
// library: dense ReLU layers only, no dropout, no normalization, no dX for the
// input (nothing upstream of the data needs it). On a sparse dataset (LIBSVM)
// the first layer reads each sample's nonzeros directly (W1 x as a sum of
// columns of W1, its gradient scattered into those columns), so no batch is
// ever densified; every later layer is dense as usual.
#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "messages/checked.hpp"
#include "models/model.hpp"

#ifdef CHORUS_USE_BLAS
// OpenBLAS's own threads would fight the actor system's: every worker is
// already one thread, so each GEMM runs on the thread that calls it.
extern "C" void openblas_set_num_threads(int);
#endif

namespace chorus {

namespace {

using mat = Eigen::MatrixXf;
using mat_map = Eigen::Map<mat>;
using cmat_map = Eigen::Map<const mat>;
using vec_map = Eigen::Map<Eigen::VectorXf>;
using cvec_map = Eigen::Map<const Eigen::VectorXf>;

// evaluate() walks its samples this many columns at a time, bounding the
// workspace at (sum of layer widths + d) * 1024 floats.
constexpr int64_t eval_chunk = 1024;

// A float buffer that only grows: alternating batch sizes (a short last batch,
// evaluate's chunks) never reallocate once the largest has been seen.
// at_least(n) returns room for n floats; what was there before is kept.
class workspace {
public:
  float* at_least(int64_t n) {
    if (static_cast<size_t>(n) > data_.size())
      data_.resize(static_cast<size_t>(n));
    return data_.data();
  }

private:
  std::vector<float, Eigen::aligned_allocator<float>> data_;
};

// Portable uniform draw in [-a, a): uses the engine's raw bits, not
// std::uniform_real_distribution, whose output differs between libraries.
float uniform_sym(std::mt19937_64& rng, double a) {
  double u = static_cast<double>(rng() >> 11) * 0x1.0p-53;  // [0, 1)
  return static_cast<float>(a * (2 * u - 1));
}

// offset + rows * cols, refusing a parameter count past 2^63 (a LIBSVM file
// can name millions of features, and a spec can list many wide layers).
int64_t grown(const std::string& spec, int64_t features, int64_t offset, int64_t rows,
              int64_t cols) {
  auto size = checked_mul(rows, cols);
  auto end = size ? checked_add(offset, *size) : std::nullopt;
  if (!end)
    throw std::invalid_argument(spec + ": the parameter count for " + std::to_string(features) +
                                " inputs overflows a 64-bit integer");
  return *end;
}

class mlp_model final : public model {
public:
  mlp_model(std::string spec, int64_t num_features, const std::vector<int64_t>& hidden,
            int64_t num_classes)
      : spec_(std::move(spec)), d_(num_features), c_(num_classes) {
    int64_t in = d_;
    int64_t offset = 0;
    std::vector<int64_t> outs = hidden;
    outs.push_back(c_);
    for (int64_t out : outs) {
      layer l;
      l.in = in;
      l.out = out;
      l.w_offset = offset;
      offset = grown(spec_, d_, offset, in, out);
      l.b_offset = offset;
      offset = grown(spec_, d_, offset, out, 1);
      layers_.push_back(l);
      in = out;
    }
    num_params_ = offset;
    act_.resize(layers_.size());
    delta_.resize(layers_.size());
  }

  std::string name() const override { return spec_; }
  int64_t num_params() const override { return num_params_; }

  std::vector<param_tensor> layout() const override {
    std::vector<param_tensor> out;
    bool single = layers_.size() == 1;
    for (size_t i = 0; i < layers_.size(); ++i) {
      const layer& l = layers_[i];
      std::string k = single ? "" : std::to_string(i + 1);
      out.push_back({"W" + k, {l.out, l.in}, l.w_offset});
      out.push_back({"b" + k, {l.out}, l.b_offset});
    }
    return out;
  }

  void init(float* w, std::mt19937_64& rng) const override {
    for (size_t i = 0; i < layers_.size(); ++i) {
      const layer& l = layers_[i];
      bool hidden = i + 1 < layers_.size();
      // He-uniform keeps ReLU activations' variance constant through depth;
      // the head gets the smaller 1/sqrt(fan_in) range so initial logits are
      // O(1) and the first loss is near log(C).
      double a = hidden ? std::sqrt(6.0 / static_cast<double>(l.in))
                        : std::sqrt(1.0 / static_cast<double>(l.in));
      for (int64_t j = 0; j < l.in * l.out; ++j)
        w[l.w_offset + j] = uniform_sym(rng, a);
      std::fill(w + l.b_offset, w + l.b_offset + l.out, 0.0f);
    }
  }

  double loss_grad(const float* w, const dataset& d, const int64_t* idx, int64_t n,
                   float* g) override {
    // A null idx means samples 0..n-1, as in evaluate (no gather then).
    if (n <= 0)
      throw std::invalid_argument(spec_ + ": loss_grad needs at least one sample");
    check_dataset(d, idx, n);
    cmat_map x = load_inputs(d, idx, 0, n);
    load_labels(d, idx, 0, n);
    forward(w, x, n);

    const layer& head = layers_.back();
    mat_map logits(act_.back().at_least(head.out * n), head.out, n);
    mat_map dlogits(delta_.back().at_least(head.out * n), head.out, n);
    double loss = softmax_xent(logits, &dlogits, 1.0f / static_cast<float>(n), nullptr);

    // Backward, last layer first. delta_[i] holds dLoss/dZ_i (pre-activation).
    for (size_t i = layers_.size(); i-- > 0;) {
      const layer& l = layers_[i];
      cmat_map dz(delta_[i].at_least(l.out * n), l.out, n);
      vec_map(g + l.b_offset, l.out).noalias() = dz.rowwise().sum();
      mat_map gw(g + l.w_offset, l.out, l.in);
      if (i == 0 && sparse_batch_) {
        // dW1 = dZ X^T, one nonzero of X at a time.
        gw.setZero();
        for (int64_t j = 0; j < n; ++j) {
          const sparse_row& r = rows_[static_cast<size_t>(j)];
          for (int64_t k = 0; k < r.size; ++k)
            gw.col(r.columns[k]) += r.values[k] * dz.col(j);
        }
        break;
      }
      cmat_map a_in = layer_input(i, x, n);
      gw.noalias() = dz * a_in.transpose();
      if (i == 0)
        break;  // the data needs no gradient
      mat_map dz_in(delta_[i - 1].at_least(l.in * n), l.in, n);
      dz_in.noalias() = cmat_map(w + l.w_offset, l.out, l.in).transpose() * dz;
      // ReLU backward: pass the gradient where the unit was active.
      dz_in.array() *= (a_in.array() > 0.0f).cast<float>();
    }
    return loss;
  }

  eval_result evaluate(const float* w, const dataset& d, const int64_t* idx,
                       int64_t n) override {
    if (!idx && n != d.size())
      throw std::invalid_argument(spec_ + ": evaluate without indices needs n == dataset size");
    eval_result r;
    if (n <= 0)
      return r;
    check_dataset(d, idx, n);
    double loss = 0;
    int64_t correct = 0;
    for (int64_t start = 0; start < n; start += eval_chunk) {
      int64_t m = std::min(eval_chunk, n - start);
      cmat_map x = load_inputs(d, idx, start, m);
      load_labels(d, idx, start, m);
      forward(w, x, m);
      mat_map logits(act_.back().at_least(c_ * m), c_, m);
      loss += softmax_xent(logits, nullptr, 0.0f, &correct) * static_cast<double>(m);
    }
    r.loss = loss / static_cast<double>(n);
    r.accuracy = static_cast<double>(correct) / static_cast<double>(n);
    r.samples = n;
    return r;
  }

  void prefetch(const dataset& d, const int64_t* idx, int64_t n) override {
    staged_.clear();
    if (!idx || n <= 0 || d.is_sparse() || d.num_features != d_)
      return;
    try {
      load_inputs(d, idx, 0, n);
    } catch (const std::exception&) {
      return;  // the loss_grad that reads this batch reports it
    }
    staged_.assign(idx, idx + n);
    staged_from_ = &d;
  }

  double flops_per_sample() const override {
    // Forward: 2 flops per multiply-add. Backward: weight gradient (2) plus
    // the gradient to the layer below (2), except the first layer, which has
    // no layer below. Bias, ReLU and softmax are O(width), left out.
    double flops = 0;
    for (size_t i = 0; i < layers_.size(); ++i) {
      double macs = static_cast<double>(layers_[i].in) * static_cast<double>(layers_[i].out);
      flops += (i == 0 ? 4.0 : 6.0) * macs;
    }
    return flops;
  }

private:
  struct layer {
    int64_t in = 0, out = 0;
    int64_t w_offset = 0, b_offset = 0;
  };

  void check_dataset(const dataset& d, const int64_t* idx, int64_t n) const {
    if (d.num_features != d_)
      throw std::invalid_argument(spec_ + ": model has " + std::to_string(d_) +
                                  " inputs, dataset '" + d.name + "' has " +
                                  std::to_string(d.num_features) + " features");
    if (!d.well_formed())
      throw std::invalid_argument(spec_ + ": dataset '" + d.name +
                                  "' has features for a different number of samples than labels");
    if (!idx && n > d.size())
      throw std::invalid_argument(spec_ + ": " + std::to_string(n) + " samples asked of dataset '" +
                                  d.name + "' with " + std::to_string(d.size()));
  }

  // Columns [start, start + m) of the batch as a d x m matrix: the dataset's
  // own memory when the samples are contiguous (no indices), else a copy.
  // A sparse dataset fills rows_ instead and returns an empty map (d x 0),
  // which only the dense branches would read.
  cmat_map load_inputs(const dataset& d, const int64_t* idx, int64_t start, int64_t m) {
    if (staged_matches(d, idx, start, m)) {
      staged_.clear();
      sparse_batch_ = false;
      return cmat_map(x_.at_least(d_ * m), d_, m);
    }
    staged_.clear();
    sparse_batch_ = d.is_sparse();
    if (sparse_batch_) {
      rows_.resize(static_cast<size_t>(m));  // no reallocation below capacity
      for (int64_t j = 0; j < m; ++j)
        rows_[static_cast<size_t>(j)] = checked_row(d, idx ? idx[start + j] : start + j);
      return cmat_map(nullptr, d_, 0);
    }
    if (!idx)
      return cmat_map(d.sample(start), d_, m);
    float* x = x_.at_least(d_ * m);
    const int64_t size = d.size();
    for (int64_t j = 0; j < m; ++j) {
      int64_t s = idx[start + j];
      if (s < 0 || s >= size)
        throw std::invalid_argument(spec_ + ": sample index " + std::to_string(s) +
                                    " outside dataset '" + d.name + "' of " + std::to_string(size));
      std::memcpy(x + j * d_, d.sample(s), static_cast<size_t>(d_) * sizeof(float));
    }
    return cmat_map(x, d_, m);
  }

  // Whether x_ already holds samples idx[start, start + m) of d (prefetch).
  bool staged_matches(const dataset& d, const int64_t* idx, int64_t start, int64_t m) const {
    return !staged_.empty() && idx && start == 0 && staged_from_ == &d
           && static_cast<size_t>(m) == staged_.size()
           && std::equal(staged_.begin(), staged_.end(), idx);
  }

  // Row s of a sparse dataset, its index and columns checked against d.
  sparse_row checked_row(const dataset& d, int64_t s) const {
    if (s < 0 || s >= d.size())
      throw std::invalid_argument(spec_ + ": sample index " + std::to_string(s) +
                                  " outside dataset '" + d.name + "' of " + std::to_string(d.size()));
    const sparse_row r = d.row(s);
    for (int64_t k = 0; k < r.size; ++k)
      if (r.columns[k] < 0 || r.columns[k] >= d_)
        throw std::invalid_argument(spec_ + ": dataset '" + d.name + "' sample " +
                                    std::to_string(s) + " has column " +
                                    std::to_string(r.columns[k]) + " outside [0, " +
                                    std::to_string(d_) + ")");
    return r;
  }

  void load_labels(const dataset& d, const int64_t* idx, int64_t start, int64_t m) {
    labels_.resize(static_cast<size_t>(m));  // no reallocation below capacity
    for (int64_t j = 0; j < m; ++j) {
      float y = d.y[static_cast<size_t>(idx ? idx[start + j] : start + j)];
      // Written so that NaN fails too; a float label must be an exact index.
      if (!(y >= 0.0f && y < static_cast<float>(c_) && y == std::floor(y)))
        throw std::invalid_argument(spec_ + ": label " + std::to_string(y) + " of dataset '" +
                                    d.name + "' is not a class in [0, " + std::to_string(c_) + ")");
      labels_[static_cast<size_t>(j)] = static_cast<int32_t>(y);
    }
  }

  // Z_i = W_i A_{i-1} + b_i for every layer; ReLU on all but the head.
  // act_[i] ends up holding the activations (the logits for the head).
  void forward(const float* w, const cmat_map& x, int64_t n) {
    for (size_t i = 0; i < layers_.size(); ++i) {
      const layer& l = layers_[i];
      cvec_map bl(w + l.b_offset, l.out);
      mat_map z(act_[i].at_least(l.out * n), l.out, n);
      cmat_map wl(w + l.w_offset, l.out, l.in);
      if (i == 0 && sparse_batch_) {
        // W1 x = sum over the nonzeros of x of x_k W1[:, k].
        for (int64_t j = 0; j < n; ++j) {
          auto zj = z.col(j);
          zj.setZero();
          const sparse_row& r = rows_[static_cast<size_t>(j)];
          for (int64_t k = 0; k < r.size; ++k)
            zj += r.values[k] * wl.col(r.columns[k]);
        }
      } else {
        z.noalias() = wl * layer_input(i, x, n);
      }
      if (i + 1 < layers_.size())
        z = (z.array().colwise() + bl.array()).max(0.0f).matrix();  // bias + ReLU, one pass
      else
        z.colwise() += bl;
    }
  }

  // What layer i reads: the batch for the first layer, else the activations
  // of the layer below (valid after forward()).
  cmat_map layer_input(size_t i, const cmat_map& x, int64_t n) {
    if (i == 0)
      return x;
    return cmat_map(act_[i - 1].at_least(layers_[i].in * n), layers_[i].in, n);
  }

  // Mean cross-entropy of the logits against labels_. With `dlogits`, writes
  // scale * (softmax - onehot) per column; with `correct`, counts argmax hits.
  double softmax_xent(const mat_map& logits, mat_map* dlogits, float scale, int64_t* correct) {
    const int64_t n = logits.cols();
    double loss = 0;
    for (int64_t j = 0; j < n; ++j) {
      auto z = logits.col(j);
      Eigen::Index arg = 0;
      float top = z.maxCoeff(&arg);
      int32_t y = labels_[static_cast<size_t>(j)];
      // log-softmax after subtracting the max: exp never overflows and the
      // sum is at least 1, so the log is well conditioned.
      if (dlogits) {
        auto e = dlogits->col(j);
        e = (z.array() - top).exp().matrix();
        float s = e.sum();
        loss += std::log(static_cast<double>(s)) + top - z(y);
        e *= scale / s;
        e(y) -= scale;
      } else {
        float s = (z.array() - top).exp().sum();
        loss += std::log(static_cast<double>(s)) + top - z(y);
      }
      if (correct && arg == y)
        ++*correct;
    }
    return loss / static_cast<double>(n);
  }

  std::string spec_;
  int64_t d_;
  int64_t c_;
  int64_t num_params_ = 0;
  std::vector<layer> layers_;
  workspace x_;                    // gathered inputs, d x n
  std::vector<int64_t> staged_;    // the samples prefetch gathered into x_; empty: none
  const dataset* staged_from_ = nullptr;
  bool sparse_batch_ = false;      // the current batch is rows_, not x
  std::vector<sparse_row> rows_;   // the current sparse batch, one row per sample
  std::vector<workspace> act_;     // per layer: activations, out x n
  std::vector<workspace> delta_;   // per layer: dLoss/dZ, out x n
  std::vector<int32_t> labels_;
};

} // namespace

namespace detail {

/// Builds "softmax" (no hidden sizes) or "mlp:..." for registry.cpp.
std::unique_ptr<model> make_mlp(const std::string& spec, int64_t num_features,
                                const std::vector<int64_t>& hidden, int64_t num_classes) {
#ifdef CHORUS_USE_BLAS
  static const bool single_threaded = [] {
    openblas_set_num_threads(1);
    return true;
  }();
  (void)single_threaded;
#endif
  if (num_features <= 0)
    throw std::invalid_argument(spec + ": needs at least one input feature, got " +
                                std::to_string(num_features));
  if (num_classes < 2)
    throw std::invalid_argument(spec + ": needs classification data with at least 2 classes, got " +
                                (num_classes == 0 ? std::string("regression data")
                                                  : std::to_string(num_classes) + " class"));
  for (int64_t h : hidden)
    if (h <= 0)
      throw std::invalid_argument(spec + ": hidden sizes must be positive");
  return std::make_unique<mlp_model>(spec, num_features, hidden, num_classes);
}

} // namespace detail

} // namespace chorus
