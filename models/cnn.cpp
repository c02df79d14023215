// A small convolutional network for square one-channel images ("cnn",
// "cnn:C1,C2"; default 8,16), the CPU reference for GPU convolutions:
//
//   input 1 x H x H
//   -> conv 3x3, C1 filters, padding 1, stride 1, + bias, ReLU -> max pool 2x2
//   -> conv 3x3, C2 filters, padding 1, stride 1, + bias, ReLU -> max pool 2x2
//   -> dense to the classes, softmax cross-entropy
//
// Convolutions are cross-correlations, as in cuDNN and PyTorch:
//   out[k](y, x) = b[k] + sum_{c, ky, kx} W[k][c][ky][kx] * in[c](y + ky - 1, x + kx - 1)
// with in = 0 outside the image. Pooling floors odd sides (a last odd row or
// column is dropped); ties go to the first maximum in row-major window order.
//
// Each convolution is im2col plus one Eigen GEMM over the whole batch. The
// im2col matrix is (pixels * n) x taps, column-major: one row per output
// pixel (sample-major, then y, then x), one column per filter tap, ordered
// (c, ky, kx) with kx fastest. A tap's column is thus the input planes
// shifted by (ky - 1, kx - 1) with zeros pulled in at the border, filled a
// row of pixels at a time. The GEMM act = cols * W^T gives (pixels * n) x
// C_out: each channel's n output planes contiguous (CNHW). Pooling reads
// those planes and writes its result per sample, channel-major (NCHW), the
// layout that the next im2col and the dense layer read; the dataset's own
// rows are the first NCHW input (C = 1).
// Backward routes each pooled gradient to the argmax recorded in forward,
// masks by ReLU, takes the weight gradient as one GEMM against the im2col
// matrix and, for the second convolution only, the input gradient as one
// GEMM followed by col2im (the adjoint of im2col). Workspace buffers only
// grow, so steady-state calls allocate nothing.
#include <Eigen/Core>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "messages/checked.hpp"
#include "models/model.hpp"

#ifdef CHORUS_USE_BLAS
// One GEMM thread per worker: the actor system already runs a thread each.
extern "C" void openblas_set_num_threads(int);
#endif

namespace chorus {

namespace {

using fmat = Eigen::MatrixXf;
using fmap = Eigen::Map<fmat>;
using cfmap = Eigen::Map<const fmat>;
using cvmap = Eigen::Map<const Eigen::VectorXf>;

constexpr int64_t default_c1 = 8;
constexpr int64_t default_c2 = 16;
constexpr int64_t max_channels = 4096;  // more is surely a typo
// evaluate() runs this many samples per pass; at 28 x 28 with the default
// channels its workspace then stays near 35 MB.
constexpr int64_t eval_batch = 256;

// Room for at least n elements of v (contents kept, never shrinks).
template <class T>
T* grow(std::vector<T>& v, int64_t n) {
  if (static_cast<size_t>(n) > v.size())
    v.resize(static_cast<size_t>(n));
  return v.data();
}

// Uniform in [-a, a) from the engine's top 53 bits; the standard
// distributions give different numbers under different standard libraries.
float symmetric_draw(std::mt19937_64& rng, double a) {
  const double u = std::ldexp(static_cast<double>(rng() >> 11), -53);
  return static_cast<float>((u + u - 1.0) * a);
}

// One convolution + ReLU + pooling stage. Its input is n images of cin x
// side x side (NCHW); its output n images of cout x pooled x pooled (NCHW).
struct stage {
  int64_t cin = 0, cout = 0, side = 0, pooled = 0;
  int64_t w_offset = 0, b_offset = 0;  // W [cout x cin*3*3], b [cout]

  int64_t taps() const { return cin * 9; }
  int64_t pixels() const { return side * side; }
  int64_t in_size() const { return cin * side * side; }        // per sample
  int64_t out_size() const { return cout * pooled * pooled; }  // per sample
};

// Calls f(dst, src, lo, hi) once per image row of every tap column of the
// im2col matrix of n images: the row is entries dst + x, x in [0, side), of
// the matrix's flat column-major storage. Entry dst + x copies input pixel
// src + x for x in [lo, hi), and is zero padding elsewhere (lo = hi = 0 where
// the tap's input row lies outside the image). im2col and col2im both walk
// this, so each is the other's adjoint.
template <class F>
void for_each_tap_row(const stage& s, int64_t n, F f) {
  const int64_t side = s.side, rows = s.pixels() * n;
  for (int64_t c = 0; c < s.cin; ++c)
    for (int64_t ky = 0; ky < 3; ++ky)
      for (int64_t kx = 0; kx < 3; ++kx) {
        const int64_t tap = (c * 3 + ky) * 3 + kx;
        // Output x reads input x + kx - 1, which is inside for x in [lo, hi).
        const int64_t lo = kx == 0 ? 1 : 0, hi = kx == 2 ? side - 1 : side;
        for (int64_t j = 0; j < n; ++j)
          for (int64_t y = 0; y < side; ++y) {
            const int64_t dst = tap * rows + j * s.pixels() + y * side;
            const int64_t iy = y + ky - 1;
            if (iy < 0 || iy >= side)
              f(dst, int64_t{0}, int64_t{0}, int64_t{0});
            else
              f(dst, (j * s.cin + c) * s.pixels() + iy * side + kx - 1, lo, hi);
          }
      }
}

void im2col(const stage& s, int64_t n, const float* image, float* cols) {
  for_each_tap_row(s, n, [&](int64_t dst, int64_t src, int64_t lo, int64_t hi) {
    float* row = cols + dst;
    std::fill(row, row + lo, 0.0f);
    std::copy(image + (src + lo), image + (src + hi), row + lo);
    std::fill(row + hi, row + s.side, 0.0f);
  });
}

// Sums the im2col-shaped gradient back onto the images it was taken from.
void col2im(const stage& s, int64_t n, const float* dcols, float* dimage) {
  std::fill(dimage, dimage + s.in_size() * n, 0.0f);
  for_each_tap_row(s, n, [&](int64_t dst, int64_t src, int64_t lo, int64_t hi) {
    for (int64_t x = lo; x < hi; ++x)
      dimage[src + x] += dcols[dst + x];
  });
}

// 2x2 max pooling of act ((pixels * n) x cout: plane (k, j) starts at
// (k * n + j) * pixels) into out (NCHW). argmax[o] is the index into act that
// out[o] came from.
void max_pool(const stage& s, int64_t n, const float* act, float* out, int64_t* argmax) {
  const int64_t side = s.side, q = s.pooled;
  int64_t o = 0;
  for (int64_t j = 0; j < n; ++j)
    for (int64_t k = 0; k < s.cout; ++k) {
      const int64_t plane = (k * n + j) * s.pixels();
      for (int64_t py = 0; py < q; ++py)
        for (int64_t px = 0; px < q; ++px, ++o) {
          const int64_t corner = plane + 2 * py * side + 2 * px;
          int64_t best = corner;
          for (int64_t at : {corner + 1, corner + side, corner + side + 1})
            if (act[at] > act[best])
              best = at;
          out[o] = act[best];
          argmax[o] = best;
        }
    }
}

// The adjoint of max_pool followed by the ReLU mask: dact is zero except at
// each window's argmax, which receives that window's gradient if the unit
// was active (act > 0). Windows do not overlap, so nothing accumulates.
void max_pool_backward(const stage& s, int64_t n, const float* act, const int64_t* argmax,
                       const float* dout, float* dact) {
  std::fill(dact, dact + s.cout * s.pixels() * n, 0.0f);
  const int64_t outs = s.out_size() * n;
  for (int64_t o = 0; o < outs; ++o)
    if (act[argmax[o]] > 0.0f)
      dact[argmax[o]] = dout[o];
}

// "C1,C2" -> the two channel counts, each a plain positive decimal integer.
std::pair<int64_t, int64_t> parse_channels(const std::string& spec, const std::string& args) {
  auto fail = [&](const std::string& why) {
    return std::invalid_argument("model spec \"" + spec + "\": " + why +
                                 "; expected cnn or cnn:C1,C2 with two positive channel "
                                 "counts, e.g. cnn:8,16");
  };
  const size_t comma = args.find(',');
  if (comma == std::string::npos)
    throw fail("needs two channel counts");
  const std::string parts[2] = {args.substr(0, comma), args.substr(comma + 1)};
  int64_t counts[2] = {0, 0};
  for (int p = 0; p < 2; ++p) {
    if (parts[p].empty())
      throw fail("empty channel count");
    for (char ch : parts[p]) {
      if (ch < '0' || ch > '9')
        throw fail("channel count \"" + parts[p] + "\" is not a positive integer");
      counts[p] = counts[p] * 10 + (ch - '0');
      if (counts[p] > max_channels)
        throw fail("channel count " + parts[p] + " exceeds " + std::to_string(max_channels));
    }
    if (counts[p] == 0)
      throw fail("channel counts must be at least 1");
  }
  return {counts[0], counts[1]};
}

class cnn_model final : public model {
public:
  cnn_model(std::string spec, int64_t side, int64_t c1, int64_t c2, int64_t classes)
      : spec_(std::move(spec)), side_(side), classes_(classes) {
    int64_t offset = 0;
    int64_t cin = 1, s = side;
    for (int i = 0; i < 2; ++i) {
      stage& st = stages_[i];
      st.cin = cin;
      st.cout = i == 0 ? c1 : c2;
      st.side = s;
      st.pooled = s / 2;
      st.w_offset = offset;
      offset += st.cout * st.taps();
      st.b_offset = offset;
      offset += st.cout;
      cin = st.cout;
      s = st.pooled;
    }
    features_ = stages_[1].out_size();
    fc_w_ = offset;
    offset += classes_ * features_;
    fc_b_ = offset;
    num_params_ = offset + classes_;
  }

  std::string name() const override { return spec_; }
  int64_t num_params() const override { return num_params_; }

  // conv1.W [C1 x 1*3*3], conv1.b [C1], conv2.W [C2 x C1*3*3], conv2.b [C2],
  // fc.W [classes x C2*H4*H4], fc.b [classes], H4 = (H / 2) / 2 (7 at 28).
  // Matrices are column-major as everywhere in Chorus: W(k, col) is at
  // k + rows * col. A filter column is col = (c * 3 + ky) * 3 + kx (PyTorch's
  // weight[k][c][ky][kx] is W(k, col)); a feature is f = (k * H4 + y) * H4 + x,
  // PyTorch's flatten of the NCHW pooled map.
  std::vector<param_tensor> layout() const override {
    std::vector<param_tensor> out;
    for (int i = 0; i < 2; ++i) {
      const stage& st = stages_[i];
      const std::string conv = "conv" + std::to_string(i + 1);
      out.push_back({conv + ".W", {st.cout, st.taps()}, st.w_offset});
      out.push_back({conv + ".b", {st.cout}, st.b_offset});
    }
    out.push_back({"fc.W", {classes_, features_}, fc_w_});
    out.push_back({"fc.b", {classes_}, fc_b_});
    return out;
  }

  // He-uniform filters (ReLU follows each convolution), a dense head drawn
  // from +-1/sqrt(fan_in) so the first loss is near log(classes), zero biases.
  // Draws go in layout order: conv1.W, conv2.W, fc.W.
  void init(float* w, std::mt19937_64& rng) const override {
    for (const stage& st : stages_) {
      const double a = std::sqrt(6.0 / static_cast<double>(st.taps()));
      for (int64_t i = 0; i < st.cout * st.taps(); ++i)
        w[st.w_offset + i] = symmetric_draw(rng, a);
      std::fill(w + st.b_offset, w + st.b_offset + st.cout, 0.0f);
    }
    const double a = std::sqrt(1.0 / static_cast<double>(features_));
    for (int64_t i = 0; i < classes_ * features_; ++i)
      w[fc_w_ + i] = symmetric_draw(rng, a);
    std::fill(w + fc_b_, w + fc_b_ + classes_, 0.0f);
  }

  double loss_grad(const float* w, const dataset& d, const int64_t* idx, int64_t n,
                   float* g) override {
    if (n <= 0)
      throw std::invalid_argument(spec_ + ": loss_grad needs at least one sample");
    validate(d, idx, n);
    const float* x = load_batch(d, idx, 0, n);
    fmap logits = forward(w, x, n);
    // The logits are not needed again: they become dLoss/dlogits in place.
    const double loss = cross_entropy(logits, 1.0 / static_cast<double>(n), nullptr);

    // Dense head: gradients of fc.W and fc.b, and of the pooled features.
    const stage& s1 = stages_[0];
    const stage& s2 = stages_[1];
    cfmap feats(pool_[1].data(), features_, n);
    fmap(g + fc_w_, classes_, features_).noalias() = logits * feats.transpose();
    Eigen::Map<Eigen::VectorXf>(g + fc_b_, classes_).noalias() = logits.rowwise().sum();
    fmap dfeats(grow(dpool_[1], features_ * n), features_, n);
    dfeats.noalias() = cfmap(w + fc_w_, classes_, features_).transpose() * logits;

    // Second convolution: its weights, then the gradient of its input (the
    // first stage's pooled output) by GEMM and col2im.
    fmap dact2 = stage_backward(1, n, g);
    fmap dcols(grow(dcols_, s2.pixels() * n * s2.taps()), s2.pixels() * n, s2.taps());
    dcols.noalias() = dact2 * cfmap(w + s2.w_offset, s2.cout, s2.taps());
    col2im(s2, n, dcols.data(), grow(dpool_[0], s1.out_size() * n));

    // First convolution: weights only; the data needs no gradient.
    stage_backward(0, n, g);
    return loss;
  }

  eval_result evaluate(const float* w, const dataset& d, const int64_t* idx,
                       int64_t n) override {
    if (idx == nullptr && n != d.size())
      throw std::invalid_argument(spec_ + ": evaluate without indices needs n == dataset size (" +
                                  std::to_string(d.size()) + "), got " + std::to_string(n));
    if (n <= 0)
      return {};
    validate(d, idx, n);
    double total = 0;
    int64_t hits = 0;
    for (int64_t start = 0; start < n; start += eval_batch) {
      const int64_t m = std::min(eval_batch, n - start);
      fmap logits = forward(w, load_batch(d, idx, start, m), m);
      total += cross_entropy(logits, 0.0, &hits) * static_cast<double>(m);
    }
    const auto count = static_cast<double>(n);
    return {total / count, static_cast<double>(hits) / count, n};
  }

  // 2 flops per multiply-add. Forward: both convolutions and the head.
  // Backward: every weight gradient (same MACs again), and every input
  // gradient but the first convolution's. Bias, ReLU, pooling, im2col and
  // softmax are O(activations) and left out.
  double flops_per_sample() const override {
    double conv1 = 0, conv2 = 0;
    for (int i = 0; i < 2; ++i) {
      const stage& st = stages_[i];
      const double macs = static_cast<double>(st.pixels()) * static_cast<double>(st.cout) *
                          static_cast<double>(st.taps());
      (i == 0 ? conv1 : conv2) = macs;
    }
    const double head = static_cast<double>(features_) * static_cast<double>(classes_);
    return 4 * conv1 + 6 * conv2 + 6 * head;
  }

private:
  void validate(const dataset& d, const int64_t* idx, int64_t n) const {
    const int64_t inputs = side_ * side_;
    if (d.num_features != inputs)
      throw std::invalid_argument(spec_ + ": model takes " + std::to_string(side_) + "x" +
                                  std::to_string(side_) + " = " + std::to_string(inputs) +
                                  " inputs, but dataset '" + d.name + "' has " +
                                  std::to_string(d.num_features) + " features");
    if (!d.well_formed())
      throw std::invalid_argument(spec_ + ": dataset '" + d.name + "' holds " +
                                  (d.is_sparse() ? std::to_string(d.sparse.offsets.size()) + " row offsets"
                                                 : std::to_string(d.x.size()) + " feature values") +
                                  " for " + std::to_string(d.size()) + " labels");
    if (!idx && n > d.size())
      throw std::invalid_argument(spec_ + ": asked for " + std::to_string(n) +
                                  " samples of dataset '" + d.name + "', which has " +
                                  std::to_string(d.size()));
  }

  // Samples start .. start + m - 1 of the batch (idx[...] when given, else
  // consecutive): checks each index and label, fills labels_, and returns
  // their images, contiguous and NCHW — the dataset's own memory when there
  // are no indices, else a copy in x_. A sparse dataset (LIBSVM) is always
  // copied, densified one batch at a time: images are small (side^2 floats).
  const float* load_batch(const dataset& d, const int64_t* idx, int64_t start, int64_t m) {
    const int64_t inputs = side_ * side_;
    labels_.resize(static_cast<size_t>(m));
    float* copy = idx || d.is_sparse() ? grow(x_, inputs * m) : nullptr;
    for (int64_t j = 0; j < m; ++j) {
      const int64_t i = idx ? idx[start + j] : start + j;
      if (i < 0 || i >= d.size())
        throw std::invalid_argument(spec_ + ": sample " + std::to_string(i) +
                                    " is not in dataset '" + d.name + "' (" +
                                    std::to_string(d.size()) + " samples)");
      const float label = d.y[static_cast<size_t>(i)];
      // Also false for NaN: a label must be an exact class index.
      const bool is_class = label >= 0.0f && label < static_cast<float>(classes_) &&
                            std::floor(label) == label;
      if (!is_class)
        throw std::invalid_argument(spec_ + ": dataset '" + d.name + "' sample " +
                                    std::to_string(i) + " has label " + std::to_string(label) +
                                    ", not a class index in [0, " + std::to_string(classes_) +
                                    ")");
      labels_[static_cast<size_t>(j)] = static_cast<int64_t>(label);
      if (copy)
        d.copy_sample(i, copy + j * inputs);
    }
    return copy ? copy : d.sample(start);
  }

  // Both stages and the head on n images x; returns the logits (classes x n),
  // keeping every stage's im2col matrix, activations and argmaxes for backward.
  fmap forward(const float* w, const float* x, int64_t n) {
    const float* in = x;
    for (int i = 0; i < 2; ++i) {
      const stage& st = stages_[i];
      const int64_t rows = st.pixels() * n;
      float* cols = grow(cols_[i], rows * st.taps());
      im2col(st, n, in, cols);
      fmap act(grow(act_[i], rows * st.cout), rows, st.cout);
      cfmap filters(w + st.w_offset, st.cout, st.taps());
      act.noalias() = cfmap(cols, rows, st.taps()) * filters.transpose();
      for (int64_t k = 0; k < st.cout; ++k)  // bias + ReLU, one channel at a time
        act.col(k) = (act.col(k).array() + w[st.b_offset + k]).cwiseMax(0.0f).matrix();
      float* pooled = grow(pool_[i], st.out_size() * n);
      max_pool(st, n, act.data(), pooled, grow(argmax_[i], st.out_size() * n));
      in = pooled;
    }
    fmap logits(grow(logits_, classes_ * n), classes_, n);
    logits.noalias() = cfmap(w + fc_w_, classes_, features_) * cfmap(in, features_, n);
    logits.colwise() += cvmap(w + fc_b_, classes_);
    return logits;
  }

  // Stage i's backward from dpool_[i], the gradient of its pooled output:
  // writes its weight and bias gradients into g and returns dLoss/d(pre-ReLU
  // output), (pixels * n) x cout like the activations.
  fmap stage_backward(int i, int64_t n, float* g) {
    const stage& st = stages_[i];
    const int64_t rows = st.pixels() * n;
    fmap dact(grow(dact_[i], rows * st.cout), rows, st.cout);
    max_pool_backward(st, n, act_[i].data(), argmax_[i].data(), dpool_[i].data(), dact.data());
    cfmap cols(cols_[i].data(), rows, st.taps());
    fmap(g + st.w_offset, st.cout, st.taps()).noalias() = dact.transpose() * cols;
    Eigen::Map<Eigen::VectorXf>(g + st.b_offset, st.cout).noalias() =
        dact.colwise().sum().transpose();
    return dact;
  }

  // Mean softmax cross-entropy of the logits (classes x n) against labels_.
  // Each column's log-sum-exp is taken after subtracting its maximum, so exp
  // cannot overflow and the sum is at least 1. With scale > 0 the logits are
  // overwritten by scale * (softmax - onehot), the gradient of the mean loss
  // when scale = 1/n. With hits, counts columns whose first argmax is the
  // label.
  double cross_entropy(fmap& logits, double scale, int64_t* hits) const {
    double total = 0;
    for (int64_t j = 0; j < logits.cols(); ++j) {
      auto col = logits.col(j).array();
      const int64_t label = labels_[static_cast<size_t>(j)];
      Eigen::Index top_at = 0;
      const float top = col.maxCoeff(&top_at);
      if (hits && top_at == label)
        ++*hits;
      const float margin = col(label) - top;  // <= 0
      col = (col - top).exp();
      const double sum = static_cast<double>(col.sum());
      total += std::log(sum) - static_cast<double>(margin);
      if (scale > 0) {
        col *= static_cast<float>(scale / sum);
        col(label) -= static_cast<float>(scale);
      }
    }
    return total / static_cast<double>(logits.cols());
  }

  std::string spec_;
  int64_t side_;
  int64_t classes_;
  stage stages_[2];
  int64_t features_ = 0;  // C2 * H4 * H4
  int64_t fc_w_ = 0, fc_b_ = 0;
  int64_t num_params_ = 0;
  // Workspace, per stage where indexed: im2col matrix, post-ReLU activations,
  // pooled output (NCHW), argmaxes, and the gradients of activations and
  // pooled outputs; dpool_[1] is the features' gradient.
  std::vector<float> cols_[2], act_[2], pool_[2], dact_[2], dpool_[2];
  std::vector<int64_t> argmax_[2];
  std::vector<float> x_, logits_, dcols_;
  std::vector<int64_t> labels_;
};

} // namespace

namespace detail {

/// Builds "cnn" or "cnn:C1,C2" for registry.cpp; `args` is what follows the
/// colon (empty for plain "cnn").
std::unique_ptr<model> make_cnn(const std::string& spec, const std::string& args,
                                int64_t num_features, int64_t num_classes) {
#ifdef CHORUS_USE_BLAS
  static const bool one_blas_thread = (openblas_set_num_threads(1), true);
  (void)one_blas_thread;
#endif
  int64_t c1 = default_c1, c2 = default_c2;
  std::string name = "cnn";
  if (spec.find(':') != std::string::npos) {
    std::tie(c1, c2) = parse_channels(spec, args);
    name += ":" + std::to_string(c1) + "," + std::to_string(c2);
  }
  if (num_classes == 0)
    throw std::invalid_argument(name + ": is a classifier; regression data has no classes");
  if (num_classes < 2)
    throw std::invalid_argument(name + ": needs at least 2 classes, got " +
                                std::to_string(num_classes));
  const double root = std::sqrt(static_cast<double>(std::max<int64_t>(num_features, 0)));
  const auto side = static_cast<int64_t>(std::llround(root));
  if (num_features <= 0 || side * side != num_features)
    throw std::invalid_argument(name + ": needs square one-channel images (num_features = H*H), " +
                                "got " + std::to_string(num_features) + " features");
  if (side < 4)
    throw std::invalid_argument(name + ": needs images of at least 4x4 (two 2x2 poolings), got " +
                                std::to_string(side) + "x" + std::to_string(side));
  // The dense head holds classes * C2 * (H/4)^2 weights, and im2col makes
  // 9 * C taps of every pixel: neither may overflow for a huge image.
  if (!checked_product<int64_t>({num_classes, c2, side / 4, side / 4}) ||
      !checked_product<int64_t>({num_features, std::max(c1, c2), 9}))
    throw std::invalid_argument(name + ": the parameter count for " + std::to_string(side) + "x" +
                                std::to_string(side) + " images overflows a 64-bit integer");
  return std::make_unique<cnn_model>(name, side, c1, c2, num_classes);
}

} // namespace detail

} // namespace chorus
