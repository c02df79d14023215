// Tests for the "cnn" model (models/cnn.cpp): gradients against the
// derivatives of a direct-loop reference in double of the documented
// parameter layout (and the reference against the model's loss), hand-made
// convolutions with delta filters (border padding included), the
// batch/index/evaluate contract, spec errors, and that SGD learns a small
// image task. Images are tiny (8x8) and made here; no files are read.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
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

// n images side x side with N(0, 1) pixels and uniform labels in [0, classes).
dataset random_images(int64_t n, int64_t side, int64_t classes, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal;
  dataset ds;
  ds.name = "random-images";
  ds.num_features = side * side;
  ds.num_classes = classes;
  ds.x.resize(static_cast<size_t>(n * side * side));
  ds.y.resize(static_cast<size_t>(n));
  for (float& v : ds.x)
    v = normal(rng);
  for (float& y : ds.y)
    y = static_cast<float>(rng() % static_cast<uint64_t>(classes));
  return ds;
}

std::vector<int64_t> all_indices(int64_t n) {
  std::vector<int64_t> idx(static_cast<size_t>(n));
  std::iota(idx.begin(), idx.end(), 0);
  return idx;
}

double l2(const std::vector<double>& v) {
  double s = 0;
  for (double x : v)
    s += x * x;
  return std::sqrt(s);
}

int64_t offset_of(const model& m, const std::string& tensor) {
  for (const param_tensor& t : m.layout())
    if (t.name == tensor)
      return t.offset;
  ADD_FAILURE() << "no tensor " << tensor;
  return 0;
}

// A network at a point: random images, the model, its init perturbed by
// N(0, jitter) (nonzero biases, no trivially zero gradient), and a batch of
// every sample in order.
struct net_at_point {
  dataset data;
  std::unique_ptr<model> net;
  std::vector<float> w;
  std::vector<int64_t> batch;

  net_at_point(const std::string& spec, int64_t side, int64_t classes, int64_t n, uint64_t seed,
               float jitter)
      : data(random_images(n, side, classes, seed)),
        net(make_model(spec, side * side, classes)),
        w(static_cast<size_t>(net->num_params())),
        batch(all_indices(n)) {
    draw_weights(seed + 1000, jitter);
  }

  // w = the init from rng(seed), perturbed by N(0, jitter).
  void draw_weights(uint64_t seed, float jitter) {
    std::mt19937_64 rng(seed);
    net->init(w.data(), rng);
    if (jitter > 0) {
      std::normal_distribution<float> normal(0.0f, jitter);
      for (float& v : w)
        v += normal(rng);
    }
  }

  // Mean loss over the batch at `at`; the gradient goes to *grad if given.
  double loss(const std::vector<float>& at, std::vector<float>* grad = nullptr) {
    std::vector<float> scratch;
    std::vector<float>& g = grad ? *grad : scratch;
    g.resize(at.size());
    return net->loss_grad(at.data(), data, batch.data(), static_cast<int64_t>(batch.size()),
                          g.data());
  }
};

// The network straight from the comment on layout(), in double with direct
// loops: conv (cross-correlation, zero padding 1) + bias + ReLU, 2x2 max pool
// (flooring), twice; then the dense head. Returns the logits of one image.
// With `kinks`, appends the piece the image lies on (every ReLU input's sign,
// every pooling window's argmax, first maximum in row-major order) and lowers
// its margin to the nearest kink (test::piecewise_loss).
std::vector<double> reference_logits(const std::vector<double>& w, const float* image,
                                     int64_t side, int64_t c1, int64_t c2, int64_t classes,
                                     test::piecewise_loss* kinks = nullptr) {
  std::vector<double> in(image, image + side * side);
  int64_t cin = 1, offset = 0;
  for (int64_t cout : {c1, c2}) {
    const double* W = w.data() + offset;  // cout x cin*9, column-major
    const double* b = W + cout * cin * 9;
    offset += cout * cin * 9 + cout;
    const int64_t q = side / 2, used = 2 * q;  // pooling reads rows and columns < used
    std::vector<double> act(static_cast<size_t>(cout * used * used));
    for (int64_t k = 0; k < cout; ++k)
      for (int64_t y = 0; y < used; ++y)
        for (int64_t x = 0; x < used; ++x) {
          double s = b[k];
          for (int64_t c = 0; c < cin; ++c)
            for (int64_t ky = 0; ky < 3; ++ky)
              for (int64_t kx = 0; kx < 3; ++kx) {
                int64_t iy = y + ky - 1, ix = x + kx - 1;
                if (iy < 0 || iy >= side || ix < 0 || ix >= side)
                  continue;
                s += W[k + cout * ((c * 3 + ky) * 3 + kx)] *
                     in[static_cast<size_t>((c * side + iy) * side + ix)];
              }
          if (kinks) {
            kinks->piece.push_back(s > 0);
            kinks->margin = std::min(kinks->margin, std::fabs(s));
          }
          act[static_cast<size_t>((k * used + y) * used + x)] = std::max(s, 0.0);
        }
    std::vector<double> out(static_cast<size_t>(cout * q * q));
    for (int64_t k = 0; k < cout; ++k)
      for (int64_t py = 0; py < q; ++py)
        for (int64_t px = 0; px < q; ++px) {
          double window[4];
          for (int t = 0; t < 4; ++t)
            window[t] = act[static_cast<size_t>((k * used + 2 * py + t / 2) * used + 2 * px +
                                                t % 2)];
          const auto best = std::max_element(window, window + 4) - window;  // first maximum
          out[static_cast<size_t>((k * q + py) * q + px)] = window[best];
          if (kinks && window[best] > 0) {
            kinks->piece.push_back(static_cast<int32_t>(best));
            double second = 0;
            for (int t = 0; t < 4; ++t)
              if (t != best)
                second = std::max(second, window[t]);
            kinks->margin = std::min(kinks->margin, window[best] - second);
          } else if (kinks) {
            kinks->piece.push_back(-1);  // nothing active: the window passes no gradient
          }
        }
    in = out;
    cin = cout;
    side = q;
  }
  const int64_t features = static_cast<int64_t>(in.size());
  std::vector<double> logits(static_cast<size_t>(classes));
  for (int64_t c = 0; c < classes; ++c) {
    double s = w[static_cast<size_t>(offset + classes * features + c)];
    for (int64_t f = 0; f < features; ++f)
      s += w[static_cast<size_t>(offset + c + classes * f)] * in[static_cast<size_t>(f)];
    logits[static_cast<size_t>(c)] = s;
  }
  return logits;
}

// The reference's mean cross-entropy over all of d, and its accuracy (first
// argmax wins). With `kinks`, also its loss, piece and margin.
struct reference_eval {
  double loss = 0, accuracy = 0;
};
reference_eval reference_evaluate(const std::vector<double>& w, const dataset& d, int64_t c1,
                                  int64_t c2, test::piecewise_loss* kinks = nullptr) {
  const auto side = static_cast<int64_t>(std::lround(std::sqrt(double(d.num_features))));
  reference_eval r;
  for (int64_t i = 0; i < d.size(); ++i) {
    std::vector<double> z = reference_logits(w, d.sample(i), side, c1, c2, d.num_classes, kinks);
    const auto top = std::max_element(z.begin(), z.end());
    double sum = 0;
    for (double v : z)
      sum += std::exp(v - *top);
    const auto y = static_cast<int64_t>(d.y[static_cast<size_t>(i)]);
    r.loss += (std::log(sum) + *top - z[static_cast<size_t>(y)]) / double(d.size());
    r.accuracy += (top - z.begin() == y ? 1.0 : 0.0) / double(d.size());
  }
  if (kinks)
    kinks->loss = r.loss;
  return r;
}

// The reference loss of p's network and data as a function of the
// parameters, for test::reference_slope.
auto reference_loss_of(const net_at_point& p, int64_t c1, int64_t c2) {
  return [&p, c1, c2](const std::vector<double>& at) {
    test::piecewise_loss kinks;
    reference_evaluate(at, p.data, c1, c2, &kinks);
    return kinks;
  };
}

// How far p.w must lie from every kink for the comparisons below to be
// between derivatives of one smooth piece. ReLU and max pooling make the
// gradient jump at a kink, and loss_grad computes in float: a ReLU input
// within float rounding of 0, or two pooled values within rounding of each
// other, could go the other way in the model than in the double reference,
// and which way would depend on the instruction set (FMA, vector width,
// OpenBLAS's kernel). Rounding of these inputs is ~1e-7 here, so a margin of
// 1e-5 (the one tests/gpu/cuda_model_test.cpp uses) leaves a factor 100.
constexpr double safe_margin = 1e-5;

// -- gradients ------------------------------------------------------------------

// Every coordinate of loss_grad's gradient against the derivative of the
// direct-loop reference in double (test::reference_slope: a Richardson
// central difference that crosses no ReLU or pooling kink), on "cnn:2,3" with
// 8x8 images. The reference's slope is exact to ~1e-12, so what is left is
// the float gradient's own rounding: measured 1e-7 to 4e-7 relative per
// tensor; 1e-4 leaves a factor of several hundred for other summation
// orders, and a wrong term gives errors of order 1.
TEST(cnn_gradients, every_coordinate_matches_finite_differences) {
  net_at_point p("cnn:2,3", 8, 3, 6, 21, 0.2f);
  std::vector<float> g;
  p.loss(p.w, &g);
  const std::vector<double> w(p.w.begin(), p.w.end());
  auto f = reference_loss_of(p, 2, 3);
  ASSERT_GT(f(w).margin, safe_margin);
  std::vector<double> numeric(g.size()), unit(g.size(), 0.0);
  for (size_t i = 0; i < g.size(); ++i) {
    unit[i] = 1;
    test::slope_estimate d = test::reference_slope(f, w, unit);
    ASSERT_GT(d.step, 0) << "coordinate " << i << " sits on a kink";
    numeric[i] = d.slope;
    unit[i] = 0;
  }
  // |numeric - g| / |numeric| over coordinates [from, from + size).
  auto relative_error = [&](int64_t from, int64_t size) {
    std::vector<double> err, ref;
    for (int64_t i = from; i < from + size; ++i) {
      err.push_back(numeric[static_cast<size_t>(i)] - g[static_cast<size_t>(i)]);
      ref.push_back(numeric[static_cast<size_t>(i)]);
    }
    EXPECT_GT(l2(ref), 1e-4) << "coordinates from " << from;
    return l2(err) / l2(ref);
  };
  EXPECT_LE(relative_error(0, p.net->num_params()), 1e-4);
  // Each tensor on its own, so that a wrong block cannot hide behind the
  // head's larger gradient.
  for (const param_tensor& t : p.net->layout()) {
    int64_t size = 1;
    for (int64_t s : t.shape)
      size *= s;
    EXPECT_LE(relative_error(t.offset, size), 1e-4) << t.name;
  }
}

// Directional derivatives along random unit directions, every coordinate at
// once, against the reference's derivative (test::reference_slope) on every
// shape including the 28x28 default, at weights drawn until every kink is at
// least safe_margin away. Side 9 is odd: the pools drop the last row and
// column. Measured: 4e-8 to 1.4e-6 of max(|slope|, 1e-2), the float
// gradient's rounding; the bound 1e-4 is some 100 times that.
TEST(cnn_gradients, directional_derivatives_match) {
  struct shape {
    const char* spec;
    int64_t c1, c2, side, classes;
  };
  for (shape s : {shape{"cnn:2,3", 2, 3, 8, 3}, shape{"cnn:3,2", 3, 2, 9, 4},
                  shape{"cnn", 8, 16, 28, 10}}) {
    net_at_point p(s.spec, s.side, s.classes, 4, 22, 0.02f);  // weights from seed 1022
    auto f = reference_loss_of(p, s.c1, s.c2);
    for (uint64_t seed = 1022; f(std::vector<double>(p.w.begin(), p.w.end())).margin <= safe_margin;
         ++seed) {
      ASSERT_LT(seed, 1100u) << s.spec << ": no weights with safe ReLU/pooling margins";
      p.draw_weights(seed + 1, 0.02f);
    }
    std::vector<float> g;
    p.loss(p.w, &g);
    const std::vector<double> w(p.w.begin(), p.w.end());
    std::mt19937_64 rng(12);
    std::normal_distribution<double> normal;
    for (int trial = 0; trial < 6; ++trial) {
      std::vector<double> v(g.size());
      for (double& x : v)
        x = normal(rng);
      const double length = l2(v);
      double exact = 0;
      for (size_t i = 0; i < v.size(); ++i) {
        v[i] /= length;
        exact += g[i] * v[i];
      }
      const double scale = std::max(std::fabs(exact), 1e-2);
      test::slope_estimate d = test::reference_slope(f, w, v);
      ASSERT_GT(d.step, 0) << s.spec << " direction " << trial << " sits on a kink";
      EXPECT_NEAR(d.slope, exact, 1e-4 * scale)
          << s.spec << " side " << s.side << " direction " << trial;
    }
  }
}

// The loss and accuracy of evaluate() and loss_grad() against the direct-loop
// reference of the documented layout, at several channel counts and an odd
// side (9: the pools drop the last row and column).
TEST(cnn_model, matches_a_direct_reference_of_the_layout) {
  struct shape {
    int64_t side, c1, c2, classes;
  };
  for (shape s : {shape{8, 2, 3, 3}, shape{9, 3, 2, 4}, shape{12, 1, 1, 2}}) {
    const int64_t n = 7;
    std::string spec = "cnn:" + std::to_string(s.c1) + "," + std::to_string(s.c2);
    net_at_point p(spec, s.side, s.classes, n, 30 + static_cast<uint64_t>(s.side), 0.3f);
    reference_eval ref =
        reference_evaluate(std::vector<double>(p.w.begin(), p.w.end()), p.data, s.c1, s.c2);
    const double tol = 1e-5 * std::max(1.0, ref.loss);
    eval_result r = p.net->evaluate(p.w.data(), p.data, nullptr, n);
    EXPECT_NEAR(r.loss, ref.loss, tol) << spec << " side " << s.side;
    EXPECT_NEAR(r.accuracy, ref.accuracy, 1e-12) << spec << " side " << s.side;
    EXPECT_NEAR(p.loss(p.w), ref.loss, tol) << spec << " side " << s.side;
  }
}

// -- hand-made convolutions ------------------------------------------------------

// "cnn:1,2" on 8x8 images, 2 classes. With the head at zero the softmax is
// uniform, so for one sample of label 0 the gradient of fc.W(1, f) is exactly
// 0.5 * feature f: the features can be read off the gradient.
std::vector<float> features_of(const std::vector<float>& w, const std::vector<float>& image) {
  auto m = make_model("cnn:1,2", 64, 2);
  dataset ds;
  ds.name = "one";
  ds.num_features = 64;
  ds.num_classes = 2;
  ds.x = image;
  ds.y = {0.0f};
  std::vector<float> g(w.size());
  m->loss_grad(w.data(), ds, nullptr, 1, g.data());
  const int64_t fc_w = offset_of(*m, "fc.W");
  std::vector<float> f(8);
  for (int64_t k = 0; k < 8; ++k)
    f[static_cast<size_t>(k)] = 2 * g[static_cast<size_t>(fc_w + 1 + 2 * k)];
  return f;
}

// conv1 is a delta at tap (ky, kx), so its output at (y, x) is the input at
// (y + ky - 1, x + kx - 1), or 0 past the border: each bright pixel moves by
// (1 - ky, 1 - kx) or falls off the image. conv2 channel 0 is the centre
// delta (identity) and channel 1 twice that. Two 2x2 pools leave a 2x2 map
// per channel whose cell (Y, X) is the largest pixel that landed in rows
// 4Y..4Y+3, columns 4X..4X+3; features are (channel, Y, X), X fastest.
// Biases shift every output, border outputs included.
TEST(cnn_model, delta_filters_move_pixels_with_zero_padding) {
  auto m = make_model("cnn:1,2", 64, 2);
  ASSERT_EQ(m->num_params(), 9 + 1 + 18 + 2 + 16 + 2);
  std::vector<float> image(64, 0.0f);
  auto at = [&](int y, int x) -> float& { return image[static_cast<size_t>(y * 8 + x)]; };
  at(0, 0) = 3;  // top-left corner
  at(4, 7) = 5;  // right border: a wrapped index would carry it to (5 or 6, 0)
  at(3, 3) = 2;
  at(7, 1) = 4;  // bottom border

  struct tap_case {
    int ky, kx;
    float b1, b2;
    std::vector<float> features;
  };
  const std::vector<tap_case> cases = {
      // Shift down-right: (0,0)->(1,1), (3,3)->(4,4); (4,7) and (7,1) fall off.
      {0, 0, 0.0f, 0.0f, {3, 0, 0, 2, 6, 0, 0, 4}},
      // Shift up-left: (0,0) falls off, (4,7)->(3,6), (3,3)->(2,2), (7,1)->(6,0).
      {2, 2, 0.0f, 0.0f, {2, 5, 4, 0, 4, 10, 8, 0}},
      // Down-left (a flipped kernel would go up-right): (4,7)->(5,6), (3,3)->(4,2).
      {0, 2, 0.0f, 0.0f, {0, 0, 2, 5, 0, 0, 4, 10}},
      // Identity with biases: conv1 adds 0.5 everywhere, conv2 adds 0.25 to
      // channel 0 and -0.5 to channel 1 (after doubling), then the ReLU.
      {1, 1, 0.5f, 0.25f, {3.75f, 0.75f, 4.75f, 5.75f, 6.5f, 0.5f, 8.5f, 10.5f}},
  };
  const int64_t w1 = offset_of(*m, "conv1.W"), b1 = offset_of(*m, "conv1.b");
  const int64_t w2 = offset_of(*m, "conv2.W"), b2 = offset_of(*m, "conv2.b");
  for (const tap_case& c : cases) {
    std::vector<float> w(static_cast<size_t>(m->num_params()), 0.0f);
    w[static_cast<size_t>(w1 + c.ky * 3 + c.kx)] = 1;
    w[static_cast<size_t>(b1)] = c.b1;
    // conv2.W is 2 x 9, column-major: W(k, tap) at k + 2 * tap; centre tap 4.
    w[static_cast<size_t>(w2 + 0 + 2 * 4)] = 1;
    w[static_cast<size_t>(w2 + 1 + 2 * 4)] = 2;
    w[static_cast<size_t>(b2)] = c.b2;
    w[static_cast<size_t>(b2 + 1)] = c.b2 == 0 ? 0.0f : -0.5f;
    EXPECT_EQ(features_of(w, image), c.features) << "tap " << c.ky << "," << c.kx;
  }
}

// Pooling ties go to the window's first pixel in row-major order. "cnn:1,1"
// on 4x4, both convolutions the identity, the image 1 on its top-left 2x2
// block: conv1's first pooling window is a four-way tie. Its gradient goes to
// output (0, 0), whose 3x3 receptive field holds the block in taps (1..2,
// 1..2); so the gradient of conv1.W is dlogit_0 there and 0 elsewhere (the
// last pixel, (1, 1), would put it in taps (0..1, 0..1) instead).
TEST(cnn_model, pooling_ties_go_to_the_first_pixel) {
  auto m = make_model("cnn:1,1", 16, 2);
  std::vector<float> w(static_cast<size_t>(m->num_params()), 0.0f), g(w.size());
  w[static_cast<size_t>(offset_of(*m, "conv1.W") + 4)] = 1;
  w[static_cast<size_t>(offset_of(*m, "conv2.W") + 4)] = 1;
  w[static_cast<size_t>(offset_of(*m, "fc.W"))] = 1;  // logits (feature, 0)
  dataset ds;
  ds.name = "tie";
  ds.num_features = 16;
  ds.num_classes = 2;
  ds.x = {1, 1, 0, 0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
  ds.y = {0.0f};
  double loss = m->loss_grad(w.data(), ds, nullptr, 1, g.data());
  EXPECT_NEAR(loss, std::log1p(std::exp(-1.0)), 1e-6);  // the feature is 1
  const float dlogit0 = static_cast<float>(-1.0 / (1.0 + std::exp(1.0)));
  const int64_t w1 = offset_of(*m, "conv1.W");
  for (int tap = 0; tap < 9; ++tap) {
    bool sees_block = tap / 3 >= 1 && tap % 3 >= 1;
    EXPECT_NEAR(g[static_cast<size_t>(w1 + tap)], sees_block ? dlogit0 : 0.0f, 1e-6) << tap;
  }
}

// -- batches ----------------------------------------------------------------------

// The batch loss and gradient are the means of the samples' own, and neither
// the order of the indices nor their absence (the contiguous path) changes
// them.
TEST(cnn_batches, mean_of_the_samples_in_any_order) {
  const int64_t n = 10;
  net_at_point p("cnn:3,4", 8, 4, n, 5, 0.0f);
  std::vector<float> whole;
  const double whole_loss = p.loss(p.w, &whole);

  std::vector<double> summed(whole.size(), 0.0);
  std::vector<float> one(whole.size());
  double summed_loss = 0;
  for (int64_t i = 0; i < n; ++i) {
    summed_loss += p.net->loss_grad(p.w.data(), p.data, &i, 1, one.data());
    std::transform(summed.begin(), summed.end(), one.begin(), summed.begin(),
                   [](double acc, float x) { return acc + x; });
  }
  EXPECT_NEAR(whole_loss, summed_loss / n, 1e-5 * std::max(1.0, whole_loss));
  for (size_t k = 0; k < whole.size(); ++k)
    EXPECT_NEAR(whole[k], summed[k] / n, 1e-5) << "coordinate " << k;

  std::vector<int64_t> shuffled = p.batch;
  std::mt19937_64 rng(3);
  std::shuffle(shuffled.begin(), shuffled.end(), rng);
  for (const int64_t* order : {static_cast<const int64_t*>(shuffled.data()),
                               static_cast<const int64_t*>(nullptr)}) {
    std::vector<float> g(whole.size());
    EXPECT_NEAR(p.net->loss_grad(p.w.data(), p.data, order, n, g.data()), whole_loss, 1e-6);
    for (size_t k = 0; k < whole.size(); ++k)
      EXPECT_NEAR(g[k], whole[k], 1e-6) << (order ? "shuffled" : "contiguous") << " " << k;
  }
}

// More samples than one evaluation pass (256): evaluate() over all of them
// must agree with evaluating them one by one, through indices or not, and a
// training batch must still work after the larger passes.
TEST(cnn_batches, evaluation_in_passes_matches_one_by_one) {
  const int64_t n = 600;
  net_at_point p("cnn:2,2", 8, 3, n, 9, 0.0f);
  double loss = 0, accuracy = 0;
  for (int64_t i = 0; i < n; ++i) {
    eval_result one = p.net->evaluate(p.w.data(), p.data, &i, 1);
    loss += one.loss / n;
    accuracy += one.accuracy / n;
  }
  std::vector<int64_t> reversed(p.batch.rbegin(), p.batch.rend());
  for (const int64_t* order : {static_cast<const int64_t*>(nullptr),
                               static_cast<const int64_t*>(reversed.data())}) {
    eval_result all = p.net->evaluate(p.w.data(), p.data, order, n);
    EXPECT_EQ(all.samples, n);
    EXPECT_NEAR(all.loss, loss, 1e-5);
    EXPECT_NEAR(all.accuracy, accuracy, 1e-9);
  }
  std::vector<float> g(p.w.size());
  const int64_t* some = p.batch.data() + 100;
  EXPECT_NEAR(p.net->loss_grad(p.w.data(), p.data, some, 64, g.data()),
              p.net->evaluate(p.w.data(), p.data, some, 64).loss, 1e-5);
  EXPECT_THROW(p.net->evaluate(p.w.data(), p.data, nullptr, n - 1), std::invalid_argument);
  EXPECT_EQ(p.net->evaluate(p.w.data(), p.data, some, 0).samples, 0);
}

TEST(cnn_batches, rejects_mismatched_data_bad_indices_and_labels) {
  const int64_t n = 10;
  net_at_point p("cnn:3,4", 8, 4, n, 5, 0.0f);
  std::vector<float> g(p.w.size());
  const float* w = p.w.data();
  dataset wrong = random_images(4, 9, 4, 1);
  EXPECT_THROW(p.net->loss_grad(w, wrong, nullptr, 4, g.data()), std::invalid_argument);
  EXPECT_THROW(p.net->evaluate(w, wrong, nullptr, 4), std::invalid_argument);
  for (int64_t bad : {n, int64_t{-1}})
    EXPECT_THROW(p.net->loss_grad(w, p.data, &bad, 1, g.data()), std::invalid_argument) << bad;
  EXPECT_THROW(p.net->loss_grad(w, p.data, p.batch.data(), 0, g.data()), std::invalid_argument);
  EXPECT_THROW(p.net->loss_grad(w, p.data, nullptr, n + 1, g.data()), std::invalid_argument);
  for (float label : {4.0f, -1.0f, 0.5f, std::nanf("")}) {
    dataset ds = p.data;
    ds.y[3] = label;
    EXPECT_THROW(p.net->loss_grad(w, ds, nullptr, n, g.data()), std::invalid_argument) << label;
    EXPECT_THROW(p.net->evaluate(w, ds, nullptr, n), std::invalid_argument) << label;
  }
}

// -- parameters -----------------------------------------------------------------

TEST(cnn_model, default_layout_on_28x28) {
  auto m = make_model("cnn", 784, 10);
  EXPECT_EQ(m->name(), "cnn");
  std::vector<param_tensor> l = m->layout();
  ASSERT_EQ(l.size(), 6u);
  std::vector<std::string> names{"conv1.W", "conv1.b", "conv2.W", "conv2.b", "fc.W", "fc.b"};
  std::vector<std::vector<int64_t>> shapes{{8, 9}, {8}, {16, 72}, {16}, {10, 784}, {10}};
  int64_t offset = 0;
  for (size_t i = 0; i < l.size(); ++i) {
    EXPECT_EQ(l[i].name, names[i]);
    EXPECT_EQ(l[i].shape, shapes[i]) << l[i].name;
    EXPECT_EQ(l[i].offset, offset) << l[i].name;
    int64_t size = 1;
    for (int64_t s : l[i].shape)
      size *= s;
    offset += size;
  }
  EXPECT_EQ(offset, m->num_params());
  EXPECT_EQ(m->num_params(), 72 + 8 + 1152 + 16 + 7840 + 10);
}

TEST(cnn_model, layout_tiles_the_block_for_other_shapes) {
  for (const char* spec : {"cnn:2,3", "cnn:5,1", "cnn:1,7"}) {
    for (int64_t side : {4, 9, 13}) {
      auto m = make_model(spec, side * side, 3);
      int64_t offset = 0;
      for (const param_tensor& t : m->layout()) {
        EXPECT_EQ(t.offset, offset) << spec << " " << t.name;
        int64_t size = 1;
        for (int64_t s : t.shape)
          size *= s;
        offset += size;
      }
      EXPECT_EQ(offset, m->num_params()) << spec << " side " << side;
      int64_t q = (side / 2) / 2;
      int64_t c2 = m->layout().at(2).shape[0];
      EXPECT_EQ(m->layout().at(4).shape, (std::vector<int64_t>{3, c2 * q * q}))
          << spec << " side " << side;
    }
  }
}

// conv forward 2 * MACs; backward weight gradients 2 * MACs for every layer
// and input gradients 2 * MACs for conv2 and the head (not conv1).
TEST(cnn_model, flops_per_sample_counts_the_gemms) {
  double conv1 = 28.0 * 28 * 8 * 9, conv2 = 14.0 * 14 * 16 * 8 * 9, head = 16.0 * 7 * 7 * 10;
  EXPECT_DOUBLE_EQ(make_model("cnn", 784, 10)->flops_per_sample(),
                   4 * conv1 + 6 * conv2 + 6 * head);
  EXPECT_DOUBLE_EQ(make_model("cnn:2,3", 64, 3)->flops_per_sample(),
                   4 * (64.0 * 2 * 9) + 6 * (16.0 * 3 * 18) + 6 * (3.0 * 4 * 3));
}

TEST(cnn_model, init_is_he_uniform_deterministic_with_zero_biases) {
  auto m = make_model("cnn", 784, 10);
  std::vector<float> a(static_cast<size_t>(m->num_params())), b(a.size()), c(a.size());
  std::mt19937_64 r1(42), r2(42), r3(43);
  m->init(a.data(), r1);
  m->init(b.data(), r2);
  m->init(c.data(), r3);
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  std::vector<param_tensor> l = m->layout();
  // fan-in 9, 72 (He: sqrt(6 / fan_in)) and 784 (head: sqrt(1 / fan_in)).
  std::vector<double> bound{std::sqrt(6.0 / 9), std::sqrt(6.0 / 72), std::sqrt(1.0 / 784)};
  for (size_t t = 0; t < 3; ++t) {
    const param_tensor& W = l[2 * t];
    const param_tensor& B = l[2 * t + 1];
    float top = 0;
    for (int64_t i = 0; i < W.shape[0] * W.shape[1]; ++i)
      top = std::max(top, std::fabs(a[static_cast<size_t>(W.offset + i)]));
    EXPECT_LE(top, bound[t]) << W.name;
    EXPECT_GT(top, 0.8 * bound[t]) << W.name;  // spread over the range
    for (int64_t i = 0; i < B.shape[0]; ++i)
      EXPECT_EQ(a[static_cast<size_t>(B.offset + i)], 0.0f) << B.name;
  }
}

// -- specs ----------------------------------------------------------------------

TEST(cnn_model, specs_and_canonical_names) {
  EXPECT_EQ(make_model("cnn", 64, 3)->name(), "cnn");
  EXPECT_EQ(make_model("cnn:8,16", 64, 3)->name(), "cnn:8,16");
  EXPECT_EQ(make_model("cnn:08,016", 64, 3)->name(), "cnn:8,16");
  EXPECT_EQ(make_model("cnn:8,16", 784, 10)->num_params(),
            make_model("cnn", 784, 10)->num_params());
  EXPECT_EQ(make_model("cnn:4,6", 64, 3)->layout().at(2).shape, (std::vector<int64_t>{6, 36}));
  bool listed = false;
  for (const auto& [form, help] : model_names())
    listed = listed || form.rfind("cnn", 0) == 0;
  EXPECT_TRUE(listed);
}

TEST(cnn_model, bad_specs_throw_naming_the_problem) {
  for (const char* spec : {"cnn:", "cnn:0", "cnn:a", "cnn:8", "cnn:0,16", "cnn:8,0", "cnn:8,16,32",
                           "cnn:8,", "cnn:,8", "cnn:-8,16", "cnn:8 ,16", "cnn:1.5,2",
                           "cnn:99999999999999999999,1", "cnn:8,5000"}) {
    try {
      make_model(spec, 784, 10);
      ADD_FAILURE() << spec << ": no exception";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("cnn"), std::string::npos) << e.what();
    }
  }
}

TEST(cnn_model, data_that_does_not_fit_throws) {
  struct bad_case {
    int64_t features, classes;
    const char* says;
  };
  for (bad_case c : {bad_case{783, 10, "square"}, bad_case{5, 3, "square"},
                     bad_case{0, 3, "square"}, bad_case{-16, 3, "square"},
                     bad_case{9, 3, "4x4"}, bad_case{784, 1, "2 classes"},
                     bad_case{784, 0, "regression"}}) {
    try {
      make_model("cnn", c.features, c.classes);
      ADD_FAILURE() << c.features << " features, " << c.classes << " classes: no exception";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find(c.says), std::string::npos) << e.what();
    }
  }
  EXPECT_NO_THROW(make_model("cnn", 16, 2));  // 4x4, the smallest
}

// -- training ---------------------------------------------------------------------

// Three classes of 8x8 images: a bright horizontal bar, a vertical bar, or a
// bright 2x2 square, at a random place, on noise. 200 full-batch SGD steps
// must cut the loss by a clear factor and classify nearly all of them.
TEST(cnn_model, sgd_learns_a_small_image_task) {
  const int64_t n = 150, side = 8, c = 3;
  std::mt19937_64 rng(17);
  std::normal_distribution<float> noise(0.0f, 0.3f);
  dataset ds;
  ds.name = "bars";
  ds.num_features = side * side;
  ds.num_classes = c;
  for (int64_t i = 0; i < n; ++i) {
    std::vector<float> img(static_cast<size_t>(side * side));
    for (float& v : img)
      v = noise(rng);
    const int64_t label = i % c;
    const int64_t r = static_cast<int64_t>(rng() % 6) + 1, q = static_cast<int64_t>(rng() % 6) + 1;
    for (int64_t t = -1; t <= 1; ++t) {
      if (label == 0)
        img[static_cast<size_t>(r * side + q + t)] += 2;
      else if (label == 1)
        img[static_cast<size_t>((r + t) * side + q)] += 2;
    }
    if (label == 2)
      for (int64_t k : {int64_t{0}, int64_t{1}, side, side + 1})
        img[static_cast<size_t>(r * side + q + k)] += 2;
    ds.x.insert(ds.x.end(), img.begin(), img.end());
    ds.y.push_back(static_cast<float>(label));
  }
  auto net = make_model("cnn:4,8", side * side, c);
  std::vector<float> w(static_cast<size_t>(net->num_params())), g(w.size());
  std::mt19937_64 init_rng(2);
  net->init(w.data(), init_rng);
  const double first = net->loss_grad(w.data(), ds, nullptr, n, g.data());
  double last = first;
  for (int step = 0; step < 200; ++step) {
    // w -= 0.1 g, then the gradient at the new point.
    std::transform(w.begin(), w.end(), g.begin(), w.begin(),
                   [](float wk, float gk) { return wk - 0.1f * gk; });
    last = net->loss_grad(w.data(), ds, nullptr, n, g.data());
  }
  EXPECT_NEAR(first, std::log(3.0), 0.5);
  EXPECT_LT(last, 0.2 * first) << first << " -> " << last;
  EXPECT_GT(net->evaluate(w.data(), ds, nullptr, n).accuracy, 0.95);
}

} // namespace
} // namespace chorus
