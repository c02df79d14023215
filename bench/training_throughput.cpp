// Training throughput of the MLP 784-256-10 ("mlp:256") on Fashion-MNIST,
// against what the hardware allows.
//
//   gemm_bound      Eigen SGEMMs of exactly the shapes one loss_grad does at
//                   batch 64 (forward W1 X, W2 H; backward dW2 = dZ2 H^T,
//                   dH = W2^T dZ2, dW1 = dZ1 X^T), timed alone: 64 samples per
//                   that time is the most one core can do with these GEMMs.
//   gemm_bound_all_cores  the same GEMMs on every usable core at once (one
//                   thread per core, each with its own matrices): the bound
//                   when all cores compute, shared caches and clocks included.
//   raw_loss_grad   model::loss_grad in a loop, no actors: the model's own
//                   overhead over the GEMMs (gathering, softmax, bias, ReLU).
//   sync_sgd        run_experiment with 1 and 2 workers (one scheduler thread
//                   per worker): adds actors, the barrier and the server's
//                   update. ratio = samples_per_s / (workers * per-core bound).
//                   Once with CAF's polling (the default), once with
//                   spin_polls 100000 (actors/system.hpp).
//
// Run: build/bench/training_throughput   (CHORUS_BENCH_QUICK=1: fewer steps;
//      CHORUS_BENCH_ONLY=gemm_bound,raw_loss_grad: only the listed modes)
// Needs /usr/share/datasets/fashion-mnist (Debian's dataset-fashion-mnist)
// or CHORUS_FASHION_MNIST=DIR; exits 1 with a message when it is missing.
#include <Eigen/Core>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <numeric>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "actors/system.hpp"
#include "tools/experiment.hpp"
#include "bench/bench_util.hpp"
#include "data/dataset.hpp"
#include "models/model.hpp"

using namespace chorus;

namespace {

constexpr int32_t batch = 64;
const char* model_spec = "mlp:256";

// The five GEMMs of one mlp:256 step at batch 64, on matrices of its own.
struct gemm_step {
  using mat = Eigen::MatrixXf;
  static constexpr Eigen::Index d = 784, h = 256, c = 10, n = batch;
  mat w1 = mat::Random(h, d), w2 = mat::Random(c, h), x = mat::Random(d, n);
  mat z1 = mat(h, n), z2 = mat(c, n), dw1 = mat(h, d), dw2 = mat(c, h), dh = mat(h, n);
  mat dz2 = mat::Random(c, n);

  void operator()() {
    z1.noalias() = w1 * x;                 // 256x784 * 784x64
    z2.noalias() = w2 * z1;                // 10x256 * 256x64
    dw2.noalias() = dz2 * z1.transpose();  // 10x64 * 64x256
    dh.noalias() = w2.transpose() * dz2;   // 256x10 * 10x64
    dw1.noalias() = dh * x.transpose();    // 256x64 * 64x784
  }

  // `iters` steps after a warm-up of a tenth of them; seconds per step.
  double time(int iters) {
    for (int i = 0; i < iters / 10 + 1; ++i)
      (*this)();
    bench::timer t;
    for (int i = 0; i < iters; ++i)
      (*this)();
    const double s = t.seconds() / iters;
    bench::keep(dw1(0, 0));
    return s;
  }
};

// Per-core time of the five GEMMs of one mlp:256 step at batch 64.
double gemm_step_seconds(int reps, int iters) {
  gemm_step step;
  std::vector<double> ts;
  for (int r = 0; r < reps; ++r)
    ts.push_back(step.time(iters));
  return bench::median(ts);
}

// Samples/s of `threads` threads running those GEMMs at once, each on its
// own matrices, started together; a repetition ends with its slowest thread.
double gemm_all_cores_samples_per_s(int threads, int reps, int iters) {
  std::vector<double> rates;
  for (int r = 0; r < reps; ++r) {
    std::vector<double> step_s(static_cast<size_t>(threads));
    std::atomic<int> ready{0};
    std::atomic<bool> go{false};
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t)
      pool.emplace_back([&, t] {
        gemm_step step;
        ready.fetch_add(1);
        while (!go.load())
          std::this_thread::yield();
        step_s[static_cast<size_t>(t)] = step.time(iters);
      });
    while (ready.load() < threads)
      std::this_thread::yield();
    go.store(true);
    for (auto& th : pool)
      th.join();
    const double slowest = *std::max_element(step_s.begin(), step_s.end());
    rates.push_back(threads * batch / slowest);
  }
  return bench::median(rates);
}

// Whether CHORUS_BENCH_ONLY (a comma list of modes) is unset or names `mode`.
bool wanted(const std::string& mode) {
  const char* only = std::getenv("CHORUS_BENCH_ONLY");
  if (only == nullptr || *only == '\0')
    return true;
  const std::string list = std::string(",") + only + ",";
  return list.find("," + mode + ",") != std::string::npos;
}

// model::loss_grad over shuffled batches of the training set, no actors.
double raw_samples_per_s(const dataset& train, int64_t steps, int reps) {
  auto net = make_model(model_spec, train.num_features, train.num_classes);
  std::mt19937_64 rng(1);
  std::vector<float> w(static_cast<size_t>(net->num_params())), g(w.size());
  net->init(w.data(), rng);
  std::vector<int64_t> order(static_cast<size_t>(train.size()));
  std::iota(order.begin(), order.end(), int64_t{0});
  std::shuffle(order.begin(), order.end(), rng);
  const int64_t per_pass = train.size() / batch;
  auto run = [&](int64_t k) {
    for (int64_t s = 0; s < k; ++s) {
      const int64_t* idx = order.data() + (s % per_pass) * batch;
      net->loss_grad(w.data(), train, idx, batch, g.data());
      // An SGD step keeps the activations realistic (ReLU sparsity).
      for (size_t i = 0; i < w.size(); ++i)
        w[i] -= 0.1f * g[i];
    }
  };
  run(steps / 10 + 1);  // warm-up
  std::vector<double> rates;
  for (int r = 0; r < reps; ++r) {
    bench::timer t;
    run(steps);
    rates.push_back(static_cast<double>(steps * batch) / t.seconds());
  }
  return bench::median(rates);
}

int run_all() {
  const bool quick = bench::quick();
  const std::string dir = bench::fashion_mnist_dir();
  if (!std::filesystem::exists(std::filesystem::path(dir) / "train-images-idx3-ubyte.gz")) {
    bench::note("training_throughput: Fashion-MNIST not found in " + dir
                + " (install dataset-fashion-mnist or set CHORUS_FASHION_MNIST)");
    return 1;
  }
  bench::note("loading Fashion-MNIST from " + dir);
  train_test data = load_fashion_mnist(dir);
  auto net = make_model(model_spec, data.train->num_features, data.train->num_classes);
  const double flops = net->flops_per_sample();

  // The GEMM bound, per core (the other modes' ratios need it, so it always runs).
  const double gemm_s = gemm_step_seconds(quick ? 3 : 7, quick ? 50 : 300);
  const double bound_per_core = batch / gemm_s;
  if (wanted("gemm_bound")) {
    auto o = bench::line("training_throughput");
    o.add("mode", "gemm_bound")
      .add("model", model_spec)
      .add("batch", batch)
      .add("gemm_us_per_step", gemm_s * 1e6)
      .add("gemm_bound_samples_per_s", bound_per_core)
      .add("gflops", flops * bound_per_core / 1e9)
      .add("flops_per_sample", flops);
    bench::print(o);
  }

  // The GEMM bound of every core at once.
  if (wanted("gemm_bound_all_cores")) {
    const int32_t cores = usable_cores();
    bench::note("GEMMs on " + std::to_string(cores) + " cores at once");
    const double sps = gemm_all_cores_samples_per_s(cores, quick ? 3 : 7, quick ? 50 : 300);
    auto o = bench::line("training_throughput");
    o.add("mode", "gemm_bound_all_cores")
      .add("model", model_spec)
      .add("batch", batch)
      .add("threads", cores)
      .add("gemm_bound_samples_per_s", sps)
      .add("gemm_bound_one_core_samples_per_s", bound_per_core)
      .add("ratio_to_cores_x_one_core", sps / (cores * bound_per_core))
      .add("gflops", flops * sps / 1e9);
    bench::print(o);
  }

  // loss_grad alone.
  if (wanted("raw_loss_grad")) {
    bench::note("raw loss_grad loop");
    const double sps = raw_samples_per_s(*data.train, quick ? 100 : 937, quick ? 1 : 3);
    auto o = bench::line("training_throughput");
    o.add("mode", "raw_loss_grad")
      .add("model", model_spec)
      .add("workers", int32_t{1})
      .add("batch", batch)
      .add("samples_per_s", sps)
      .add("gemm_bound_samples_per_s", bound_per_core)
      .add("ratio", sps / bound_per_core)
      .add("gflops", flops * sps / 1e9);
    bench::print(o);
  }

  // sync_sgd through the actors.
  // Both scheduler settings: CAF's polling (the default) and idle threads
  // that poll before they nap (--spin-polls 100000, actors/system.hpp).
  if (!wanted("sync_sgd"))
    return 0;
  for (int64_t spin_polls : {static_cast<int64_t>(default_spin_polls), int64_t{100000}}) {
    for (int32_t workers : {1, 2}) {
      experiment_config cfg;
      cfg.algorithm = "sync_sgd";
      cfg.spin_polls = spin_polls;
      cfg.workers = workers;
      cfg.model = model_spec;
      cfg.batch = batch;
      cfg.lr = 0.1;
      cfg.epochs = 1;
      if (quick)
        cfg.steps = 100;
      cfg.threads = workers;
      cfg.progress = false;
      cfg.eval_every = 1000000;  // evaluations only at step 0 and at the end
      const int reps = quick ? 1 : 3;
      std::vector<double> rates;
      run_summary last;
      for (int r = 0; r < reps; ++r) {
        bench::note("sync_sgd, " + std::to_string(workers) + " worker(s), spin_polls "
                    + std::to_string(spin_polls) + ", run "
                    + std::to_string(r + 1) + "/" + std::to_string(reps));
        auto res = run_experiment(cfg, data);
        const auto& s = res.summary;
        rates.push_back(static_cast<double>(s.samples) / (s.wall_s - s.eval_s));
        last = s;
      }
      const double sps = bench::median(rates);
      const double bound = bound_per_core * workers;
      auto o = bench::line("training_throughput");
      o.add("mode", "sync_sgd")
        .add("model", model_spec)
        .add("workers", workers)
        .add("threads", workers)
        .add("spin_polls", spin_polls)
        .add("batch", batch)
        .add("steps", last.steps)
        .add("reps", reps)
        .add("samples_per_s", sps)
        .add("gemm_bound_samples_per_s", bound)
        .add("ratio", sps / bound)
        .add("gflops", flops * sps / 1e9)
        .add("test_acc", last.test_acc)
        .add("wall_s", last.wall_s)
        .add("eval_s", last.eval_s);
      bench::print(o);
    }
  }
  return 0;
}

} // namespace

int main() {
  try {
    return run_all();
  } catch (const std::exception& e) {
    bench::note(std::string("training_throughput failed: ") + e.what());
    return 1;
  }
}
