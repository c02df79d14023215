// Tests for the device models (models/cuda/, make_device_model): "softmax",
// "mlp:32,16" and "cnn:4,8" on a GPU against their CPU twins (models/mlp.cpp,
// models/cnn.cpp) on the same weights and batches: name, layout and init
// identical; loss and gradient equal within float rounding; evaluate equal;
// bad calls rejected like the CPU's; the resident dataset copy not fooled by a
// dataset rebuilt at the same address. The first test runs in every build
// (with or without CUDA or a GPU); the others skip when no device is visible.
//
// Every device result is read back with device::copy right after the call,
// on another stream than the model's: that it matches the CPU also checks
// that each call returns with its device work finished.
//
// Tolerances. Loss: relative rtol / 10, i.e. 1e-5 for the dense models (float
// rounding of the forward pass is ~1e-7 relative here) and 1e-4 for the CNN,
// whose forward convolutions cuDNN may also run as Winograd or FFT. Gradient, per parameter tensor: max |gpu - cpu| <=
// rtol * max |cpu| over that tensor + 1e-7, with rtol 1e-4 for the dense
// models (cuBLAS and Eigen sum in different orders, nothing else differs)
// and 1e-3 for the CNN (cuDNN may pick Winograd or FFT convolutions, whose
// rounding is larger). A layout or indexing bug gives errors of order 1.
// ReLU and max pooling make the gradient discontinuous: a pre-activation
// within rounding of 0, or two pooled values within rounding of each other,
// would legitimately send CPU and GPU different ways. The CNN test therefore
// draws its weights until a double-precision reference forward pass shows
// every such margin above 1e-5 (rounding is ~1e-7); for the dense models
// (a few thousand pre-activations summed over 784 inputs) the chance of such a
// near-tie is about 1e-3 and is not guarded.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "gpu/device.hpp"
#include "messages/buffer.hpp"
#include "models/model.hpp"
#include "tests/gpu/gpu_test_util.hpp"

namespace chorus {
namespace {

constexpr int64_t side = 28;
constexpr int64_t features = side * side;
constexpr int64_t classes = 10;

// n 28x28 images in 10 classes: each class a fixed N(0, 1) template, each
// image its class's template plus N(0, 1) noise.
dataset image_classes(int64_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> normal;
  std::vector<float> templates(static_cast<size_t>(classes * features));
  for (float& v : templates)
    v = normal(rng);
  dataset ds;
  ds.name = "image-classes";
  ds.num_features = features;
  ds.num_classes = classes;
  ds.x.resize(static_cast<size_t>(n * features));
  ds.y.resize(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    const auto c = static_cast<int64_t>(rng() % classes);
    ds.y[static_cast<size_t>(i)] = static_cast<float>(c);
    for (int64_t f = 0; f < features; ++f)
      ds.x[static_cast<size_t>(i * features + f)] =
        templates[static_cast<size_t>(c * features + f)] + normal(rng);
  }
  return ds;
}

mutable_buffer upload(const std::vector<float>& host) {
  mutable_buffer b = device::make_buffer(host.size(), 0);
  device::copy(b.data(), memory_kind::device, host.data(), memory_kind::host,
               host.size() * sizeof(float));
  return b;
}

std::vector<float> download(const mutable_buffer& b) {
  std::vector<float> host(b.size());
  device::copy(host.data(), memory_kind::host, b.data(), memory_kind::device,
               host.size() * sizeof(float));
  return host;
}

// `count` random sample indices of d, with at least one repeat.
std::vector<int64_t> random_batch(const dataset& d, int64_t count, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::vector<int64_t> idx(static_cast<size_t>(count));
  for (int64_t& i : idx)
    i = static_cast<int64_t>(rng() % static_cast<uint64_t>(d.size()));
  if (count > 1)
    idx[1] = idx[0];
  return idx;
}

struct step {
  double loss = 0;
  std::vector<float> g;
};

step cpu_step(model& m, const std::vector<float>& w, const dataset& d, const int64_t* idx,
              int64_t n) {
  step s;
  s.g.assign(static_cast<size_t>(m.num_params()), std::nanf(""));
  s.loss = m.loss_grad(w.data(), d, idx, n, s.g.data());
  return s;
}

step gpu_step(model& m, const mutable_buffer& w, mutable_buffer& g, const dataset& d,
              const int64_t* idx, int64_t n) {
  // Poison g first: every entry must be written by the call.
  device::copy(g.data(), memory_kind::device,
               std::vector<float>(g.size(), std::nanf("")).data(), memory_kind::host,
               g.size() * sizeof(float));
  step s;
  s.loss = m.loss_grad(w.data(), d, idx, n, g.data());
  s.g = download(g);
  return s;
}

// Loss within rtol / 10 relative; each tensor's gradient within rtol of that
// tensor's largest CPU entry (and that entry nonzero, so the check has teeth).
void expect_same_step(const model& m, const step& cpu, const step& gpu, double rtol,
                      const std::string& what) {
  EXPECT_TRUE(std::isfinite(gpu.loss)) << what;
  EXPECT_NEAR(gpu.loss, cpu.loss, rtol / 10 * std::abs(cpu.loss)) << what << ": loss";
  ASSERT_EQ(gpu.g.size(), cpu.g.size());
  for (const param_tensor& t : m.layout()) {
    int64_t count = 1;
    for (int64_t s : t.shape)
      count *= s;
    double scale = 0, worst = 0;
    int64_t worst_at = 0, non_finite = 0;
    for (int64_t i = t.offset; i < t.offset + count; ++i) {
      const auto k = static_cast<size_t>(i);
      if (!std::isfinite(gpu.g[k])) {
        ++non_finite;
        continue;
      }
      scale = std::max(scale, std::abs(static_cast<double>(cpu.g[k])));
      const double diff = std::abs(static_cast<double>(gpu.g[k]) - cpu.g[k]);
      if (diff > worst) {
        worst = diff;
        worst_at = i - t.offset;
      }
    }
    EXPECT_EQ(non_finite, 0) << what << ": " << t.name << " has non-finite (unwritten?) entries";
    EXPECT_GT(scale, 0.0) << what << ": " << t.name << " has an all-zero CPU gradient";
    const auto at = static_cast<size_t>(t.offset + worst_at);
    EXPECT_LE(worst, rtol * scale + 1e-7)
      << what << ": " << t.name << "[" << worst_at << "] cpu " << cpu.g[at] << " gpu " << gpu.g[at]
      << " (largest |cpu| in the tensor " << scale << ")";
  }
}

// Evaluation: same loss within loss_rtol relative, same number of hits up to
// one (an argmax between two logits within rounding of each other).
void expect_same_eval(const eval_result& cpu, const eval_result& gpu, const std::string& what,
                      double loss_rtol = 1e-5) {
  EXPECT_EQ(gpu.samples, cpu.samples) << what;
  EXPECT_NEAR(gpu.loss, cpu.loss, loss_rtol * std::abs(cpu.loss)) << what << ": loss";
  const double hits_cpu = cpu.accuracy * static_cast<double>(cpu.samples);
  const double hits_gpu = gpu.accuracy * static_cast<double>(gpu.samples);
  EXPECT_LE(std::abs(hits_gpu - hits_cpu), 1.0 + 1e-9) << what << ": accuracy " << gpu.accuracy
                                                        << " vs " << cpu.accuracy;
}

const param_tensor& tensor(const model& m, const std::vector<param_tensor>& layout,
                           const std::string& name) {
  for (const param_tensor& t : layout)
    if (t.name == name)
      return t;
  throw std::logic_error(m.name() + " has no tensor " + name);
}

// The smallest distance of the CNN's forward pass at w (in double, straight
// from the documented layout) to a point where its gradient jumps: |pre-ReLU
// value| over every unit, and the gap between a pooling window's two largest
// (post-ReLU) values wherever the largest is positive.
double cnn_margin(const model& m, const std::vector<float>& w, const dataset& d,
                  const std::vector<int64_t>& samples) {
  const std::vector<param_tensor> layout = m.layout();
  double margin = std::numeric_limits<double>::infinity();
  std::vector<double> in, z, pooled;
  for (int64_t s : samples) {
    in.assign(d.sample(s), d.sample(s) + features);
    int64_t cin = 1, sd = side;
    for (int stage = 1; stage <= 2; ++stage) {
      const param_tensor& wt = tensor(m, layout, "conv" + std::to_string(stage) + ".W");
      const param_tensor& bt = tensor(m, layout, "conv" + std::to_string(stage) + ".b");
      const int64_t cout = wt.shape[0];
      z.assign(static_cast<size_t>(cout * sd * sd), 0.0);
      for (int64_t k = 0; k < cout; ++k)
        for (int64_t y = 0; y < sd; ++y)
          for (int64_t x = 0; x < sd; ++x) {
            double acc = w[static_cast<size_t>(bt.offset + k)];
            for (int64_t c = 0; c < cin; ++c)
              for (int64_t ky = 0; ky < 3; ++ky)
                for (int64_t kx = 0; kx < 3; ++kx) {
                  const int64_t iy = y + ky - 1, ix = x + kx - 1;
                  if (iy < 0 || iy >= sd || ix < 0 || ix >= sd)
                    continue;
                  // W(k, tap) at k + cout * tap, tap = (c * 3 + ky) * 3 + kx.
                  const int64_t tap = (c * 3 + ky) * 3 + kx;
                  acc += static_cast<double>(w[static_cast<size_t>(wt.offset + k + cout * tap)])
                         * in[static_cast<size_t>((c * sd + iy) * sd + ix)];
                }
            margin = std::min(margin, std::abs(acc));
            z[static_cast<size_t>((k * sd + y) * sd + x)] = std::max(acc, 0.0);
          }
      const int64_t q = sd / 2;
      pooled.assign(static_cast<size_t>(cout * q * q), 0.0);
      for (int64_t k = 0; k < cout; ++k)
        for (int64_t py = 0; py < q; ++py)
          for (int64_t px = 0; px < q; ++px) {
            const size_t corner = static_cast<size_t>((k * sd + 2 * py) * sd + 2 * px);
            double v[4] = {z[corner], z[corner + 1], z[corner + static_cast<size_t>(sd)],
                           z[corner + static_cast<size_t>(sd) + 1]};
            std::sort(v, v + 4, [](double a, double b) { return a > b; });
            if (v[0] > 0)
              margin = std::min(margin, v[0] - v[1]);
            pooled[static_cast<size_t>((k * q + py) * q + px)] = v[0];
          }
      in.swap(pooled);
      cin = cout;
      sd = q;
    }
  }
  return margin;
}

// The CPU init at `seed` plus N(0, jitter) noise: nonzero biases, and no
// trivially symmetric gradient.
std::vector<float> jittered_init(const model& m, uint64_t seed, float jitter) {
  std::vector<float> w(static_cast<size_t>(m.num_params()));
  std::mt19937_64 rng(seed);
  m.init(w.data(), rng);
  std::normal_distribution<float> normal(0.0f, jitter);
  for (float& v : w)
    v += normal(rng);
  return w;
}

// A CPU model and its device twin at the same weights (jittered_init).
struct twins {
  std::unique_ptr<model> cpu, gpu;
  std::vector<float> w;
  mutable_buffer w_dev, g_dev;

  twins(const std::string& spec, uint64_t seed, float jitter)
      : cpu(make_model(spec, features, classes)),
        gpu(make_device_model(spec, features, classes, 0)),
        w(jittered_init(*cpu, seed, jitter)),
        w_dev(upload(w)),
        g_dev(device::make_buffer(w.size(), 0)) {}
};

// The whole comparison for one spec: two batches (indices with a repeat,
// and idx == nullptr), workspace reuse across batch sizes, repeatability,
// and evaluate with and without indices over more samples than one chunk.
void check_against_cpu(const std::string& spec, int64_t batch, double rtol, bool guard_margins) {
  const dataset data = image_classes(1100, 7);
  const std::vector<int64_t> idx = random_batch(data, batch, 11);
  const int64_t first = batch - 2;  // the idx == nullptr batch: samples 0..first-1

  // Weights: for the CNN, the first jitter whose margins are safe (see top).
  uint64_t seed = 100;
  if (guard_margins) {
    const auto reference = make_model(spec, features, classes);
    std::vector<int64_t> used = idx;
    for (int64_t i = 0; i < first; ++i)
      used.push_back(i);
    while (cnn_margin(*reference, jittered_init(*reference, seed, 0.05f), data, used) <= 1e-5)
      ASSERT_LT(++seed, 150u) << spec << ": no weights with safe ReLU/pooling margins";
  }
  const auto at = std::make_unique<twins>(spec, seed, 0.05f);
  model& cpu = *at->cpu;
  model& gpu = *at->gpu;

  const step cpu_a = cpu_step(cpu, at->w, data, idx.data(), batch);
  const step gpu_a = gpu_step(gpu, at->w_dev, at->g_dev, data, idx.data(), batch);
  expect_same_step(cpu, cpu_a, gpu_a, rtol, spec + " indexed batch");

  const step cpu_b = cpu_step(cpu, at->w, data, nullptr, first);
  const step gpu_b = gpu_step(gpu, at->w_dev, at->g_dev, data, nullptr, first);
  expect_same_step(cpu, cpu_b, gpu_b, rtol, spec + " first samples (idx == nullptr)");

  // A smaller batch, then the first one again: workspaces are reused, and
  // the same call gives the same bits (deterministic kernels and algorithms).
  const std::vector<int64_t> small(idx.begin(), idx.begin() + 3);
  const step cpu_c = cpu_step(cpu, at->w, data, small.data(), 3);
  const step gpu_c = gpu_step(gpu, at->w_dev, at->g_dev, data, small.data(), 3);
  expect_same_step(cpu, cpu_c, gpu_c, rtol, spec + " batch of 3");
  const step gpu_again = gpu_step(gpu, at->w_dev, at->g_dev, data, idx.data(), batch);
  EXPECT_EQ(gpu_again.loss, gpu_a.loss) << spec << ": repeated call";
  EXPECT_TRUE(gpu_again.g == gpu_a.g) << spec << ": repeated call gives another gradient";

  // Evaluate: a subset with repeats, then all 1100 samples (more than one
  // chunk on either side).
  const std::vector<int64_t> subset = random_batch(data, 700, 13);
  expect_same_eval(cpu.evaluate(at->w.data(), data, subset.data(), 700),
                   gpu.evaluate(at->w_dev.data(), data, subset.data(), 700),
                   spec + " evaluate(subset)", rtol / 10);
  expect_same_eval(cpu.evaluate(at->w.data(), data, nullptr, data.size()),
                   gpu.evaluate(at->w_dev.data(), data, nullptr, data.size()),
                   spec + " evaluate(all)", rtol / 10);
  // A different dataset (a test set) on the same model.
  const dataset test = image_classes(300, 8);
  expect_same_eval(cpu.evaluate(at->w.data(), test, nullptr, test.size()),
                   gpu.evaluate(at->w_dev.data(), test, nullptr, test.size()),
                   spec + " evaluate(test set)", rtol / 10);
}

// -- every build -------------------------------------------------------------------

TEST(cuda_model, missing_device_throws_device_error) {
  // A device index past the last never exists: with CUDA and a GPU, with
  // CUDA and no GPU, and in a build without CUDA (the stub throws too).
  const int missing = device::count();
  EXPECT_THROW(make_device_model("mlp:16", 784, 10, missing), device_error);
  EXPECT_THROW(make_device_model("mlp:16", 784, 10, -1), device_error);
  if (device::count() == 0) {
    EXPECT_THROW(make_device_model("mlp:16", 784, 10, 0), device_error);
    EXPECT_THROW(make_device_model("softmax", 784, 10, 0), device_error);
    EXPECT_THROW(make_device_model("cnn:4,8", 784, 10, 0), device_error);
  }
}

// -- with a GPU ------------------------------------------------------------------

TEST(cuda_model, same_name_layout_and_init_as_cpu) {
  CHORUS_SKIP_WITHOUT_GPUS(1);
  for (const std::string spec : {"softmax", "mlp:32,16", "mlp:8", "cnn:4,8", "cnn"}) {
    SCOPED_TRACE(spec);
    auto cpu = make_model(spec, features, classes);
    auto gpu = make_device_model(spec, features, classes, 0);
    EXPECT_EQ(gpu->name(), cpu->name());
    EXPECT_EQ(gpu->memory(), memory_kind::device);
    EXPECT_EQ(cpu->memory(), memory_kind::host);
    EXPECT_EQ(gpu->flops_per_sample(), cpu->flops_per_sample());
    ASSERT_EQ(gpu->num_params(), cpu->num_params());
    const auto lc = cpu->layout(), lg = gpu->layout();
    ASSERT_EQ(lg.size(), lc.size());
    for (size_t i = 0; i < lc.size(); ++i) {
      EXPECT_EQ(lg[i].name, lc[i].name);
      EXPECT_EQ(lg[i].shape, lc[i].shape);
      EXPECT_EQ(lg[i].offset, lc[i].offset);
    }
    // init writes host memory, bit for bit the CPU model's values.
    std::vector<float> wc(static_cast<size_t>(cpu->num_params()), 1.0f), wg(wc.size(), 2.0f);
    std::mt19937_64 rc(42), rg(42);
    cpu->init(wc.data(), rc);
    gpu->init(wg.data(), rg);
    EXPECT_EQ(std::memcmp(wc.data(), wg.data(), wc.size() * sizeof(float)), 0);
  }
}

TEST(cuda_model, softmax_matches_cpu) {
  CHORUS_SKIP_WITHOUT_GPUS(1);
  check_against_cpu("softmax", 64, 1e-4, false);
}

TEST(cuda_model, mlp_matches_cpu) {
  CHORUS_SKIP_WITHOUT_GPUS(1);
  check_against_cpu("mlp:32,16", 64, 1e-4, false);
}

TEST(cuda_model, cnn_matches_cpu) {
  CHORUS_SKIP_WITHOUT_GPUS(1);
  check_against_cpu("cnn:4,8", 8, 1e-3, true);
}

TEST(cuda_model, cnn_matches_cpu_on_odd_sides) {
  CHORUS_SKIP_WITHOUT_GPUS(1);
  // 10x10 images: pooled 5x5, then 2x2 with the last odd row and column
  // dropped, as on the CPU. Random data; loss and evaluate only (continuous).
  const int64_t s = 10, f = s * s;
  std::mt19937_64 rng(5);
  std::normal_distribution<float> normal;
  dataset d;
  d.name = "odd";
  d.num_features = f;
  d.num_classes = 3;
  d.x.resize(static_cast<size_t>(40 * f));
  d.y.resize(40);
  for (float& v : d.x)
    v = normal(rng);
  for (float& y : d.y)
    y = static_cast<float>(rng() % 3);
  auto cpu = make_model("cnn:3,5", f, 3);
  auto gpu = make_device_model("cnn:3,5", f, 3, 0);
  std::vector<float> w(static_cast<size_t>(cpu->num_params()));
  cpu->init(w.data(), rng);
  mutable_buffer wd = upload(w), gd = device::make_buffer(w.size(), 0);
  std::vector<float> g(w.size());
  const double lc = cpu->loss_grad(w.data(), d, nullptr, 40, g.data());
  const double lg = gpu->loss_grad(wd.data(), d, nullptr, 40, gd.data());
  EXPECT_NEAR(lg, lc, 1e-4 * lc);  // a CNN: see the loss tolerance at the top
  // The dense head's gradient is continuous in the pooled features.
  const std::vector<float> gg = download(gd);
  const auto layout = cpu->layout();
  const param_tensor& fc = tensor(*cpu, layout, "fc.W");
  double scale = 0, worst = 0;
  for (int64_t i = fc.offset; i < fc.offset + fc.shape[0] * fc.shape[1]; ++i) {
    scale = std::max(scale, std::abs(double(g[size_t(i)])));
    worst = std::max(worst, std::abs(double(g[size_t(i)]) - gg[size_t(i)]));
  }
  EXPECT_GT(scale, 0.0);
  EXPECT_LE(worst, 1e-3 * scale + 1e-7);
  expect_same_eval(cpu->evaluate(w.data(), d, nullptr, 40), gpu->evaluate(wd.data(), d, nullptr, 40),
                   "cnn:3,5 on 10x10", 1e-4);
}

TEST(cuda_model, rejects_bad_specs_and_calls) {
  CHORUS_SKIP_WITHOUT_GPUS(1);
  for (const std::string spec : {"linear", "logistic", "resnet"}) {
    try {
      make_device_model(spec, features, classes, 0);
      ADD_FAILURE() << spec << " was accepted";
    } catch (const std::invalid_argument& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find("mlp:H1"), std::string::npos) << what;
      EXPECT_NE(what.find("cnn"), std::string::npos) << what;
    }
  }
  EXPECT_THROW(make_device_model("mlp:0", features, classes, 0), std::invalid_argument);
  EXPECT_THROW(make_device_model("softmax:3", features, classes, 0), std::invalid_argument);
  EXPECT_THROW(make_device_model("cnn", 50, classes, 0), std::invalid_argument);  // not square

  dataset data = image_classes(20, 3);
  twins at("mlp:8", 1, 0.05f);
  model& gpu = *at.gpu;
  const std::vector<int64_t> outside = {0, 20};
  EXPECT_THROW(gpu.loss_grad(at.w_dev.data(), data, outside.data(), 2, at.g_dev.data()),
               std::invalid_argument);
  const std::vector<int64_t> negative = {-1};
  EXPECT_THROW(gpu.evaluate(at.w_dev.data(), data, negative.data(), 1), std::invalid_argument);
  EXPECT_THROW(gpu.loss_grad(at.w_dev.data(), data, nullptr, 0, at.g_dev.data()),
               std::invalid_argument);
  EXPECT_THROW(gpu.loss_grad(at.w_dev.data(), data, nullptr, 21, at.g_dev.data()),
               std::invalid_argument);
  EXPECT_THROW(gpu.evaluate(at.w_dev.data(), data, nullptr, 19), std::invalid_argument);
  // Host memory where device memory belongs.
  std::vector<float> host_g(at.w.size());
  EXPECT_THROW(gpu.loss_grad(at.w.data(), data, nullptr, 4, at.g_dev.data()),
               std::invalid_argument);
  EXPECT_THROW(gpu.loss_grad(at.w_dev.data(), data, nullptr, 4, host_g.data()),
               std::invalid_argument);
  EXPECT_THROW(gpu.evaluate(at.w.data(), data, nullptr, data.size()), std::invalid_argument);
  // Labels that are no class: rejected when in the batch, fine otherwise.
  dataset bad = data;
  bad.y[3] = 10.0f;
  bad.y[5] = 1.5f;
  const std::vector<int64_t> with3 = {0, 3}, with5 = {5}, clean = {0, 1, 2};
  EXPECT_THROW(gpu.loss_grad(at.w_dev.data(), bad, with3.data(), 2, at.g_dev.data()),
               std::invalid_argument);
  EXPECT_THROW(gpu.evaluate(at.w_dev.data(), bad, with5.data(), 1), std::invalid_argument);
  EXPECT_NO_THROW(gpu.loss_grad(at.w_dev.data(), bad, clean.data(), 3, at.g_dev.data()));
  // Wrong number of features.
  dataset narrow = image_classes(5, 4);
  narrow.num_features = features - 1;
  narrow.x.resize(static_cast<size_t>(5 * (features - 1)));
  EXPECT_THROW(gpu.loss_grad(at.w_dev.data(), narrow, nullptr, 5, at.g_dev.data()),
               std::invalid_argument);

  // After all that the model still computes the CPU's numbers.
  const step cpu = cpu_step(*at.cpu, at.w, data, clean.data(), 3);
  const step dev = gpu_step(gpu, at.w_dev, at.g_dev, data, clean.data(), 3);
  expect_same_step(*at.cpu, cpu, dev, 1e-4, "mlp:8 after rejected calls");
}

TEST(cuda_model, dataset_rebuilt_at_the_same_address_is_not_confused) {
  CHORUS_SKIP_WITHOUT_GPUS(1);
  // The device copy is cached by dataset; a dataset destroyed and another
  // built in the same place must not be served the old copy.
  twins at("mlp:16", 2, 0.05f);
  std::optional<dataset> slot;
  slot.emplace(image_classes(200, 21));
  const dataset* address = &*slot;
  const step cpu1 = cpu_step(*at.cpu, at.w, *slot, nullptr, 50);
  const step gpu1 = gpu_step(*at.gpu, at.w_dev, at.g_dev, *slot, nullptr, 50);
  expect_same_step(*at.cpu, cpu1, gpu1, 1e-4, "first dataset");

  slot.reset();
  slot.emplace(image_classes(200, 22));
  ASSERT_EQ(&*slot, address);
  const step cpu2 = cpu_step(*at.cpu, at.w, *slot, nullptr, 50);
  const step gpu2 = gpu_step(*at.gpu, at.w_dev, at.g_dev, *slot, nullptr, 50);
  ASSERT_NE(cpu2.loss, cpu1.loss);  // the data did change
  expect_same_step(*at.cpu, cpu2, gpu2, 1e-4, "second dataset at the same address");
}

TEST(cuda_model, models_on_one_device_share_the_data_and_agree) {
  CHORUS_SKIP_WITHOUT_GPUS(1);
  // Two replicas on the same device, calls interleaved: each gives what it
  // gives alone (the shared resident copy and per-model streams/workspaces
  // do not interfere), and both the CPU's numbers.
  const dataset data = image_classes(300, 31);
  twins a("mlp:32,16", 3, 0.05f);
  auto b = make_device_model("mlp:32,16", features, classes, 0);
  mutable_buffer gb = device::make_buffer(a.w.size(), 0);
  const std::vector<int64_t> idx = random_batch(data, 32, 5);
  const step alone = gpu_step(*a.gpu, a.w_dev, a.g_dev, data, idx.data(), 32);
  const step from_b = gpu_step(*b, a.w_dev, gb, data, idx.data(), 32);
  const step again = gpu_step(*a.gpu, a.w_dev, a.g_dev, data, idx.data(), 32);
  EXPECT_EQ(again.loss, alone.loss);
  EXPECT_TRUE(again.g == alone.g);
  const step cpu = cpu_step(*a.cpu, a.w, data, idx.data(), 32);
  expect_same_step(*a.cpu, cpu, from_b, 1e-4, "second replica");
  b.reset();  // the first replica keeps the shared copy alive
  const step after = gpu_step(*a.gpu, a.w_dev, a.g_dev, data, idx.data(), 32);
  EXPECT_TRUE(after.g == alone.g);
}

} // namespace
} // namespace chorus
