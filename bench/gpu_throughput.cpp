// GPU benchmarks (issue 5), run on a machine with an NVIDIA GPU:
//
//   device_mean     the CUDA backend averaging k = 2, 4, 8 device buffers of
//                   16M floats, against a device-to-device copy of 16M floats
//                   timed in the same run. Both are memory bound: the figure
//                   is the bandwidth each reaches, counting (k + 1) * 64 MB
//                   moved for the mean and 2 * 64 MB for the copy.
//                   ratio = mean GB/s / copy GB/s (target >= 0.7).
//   gpu_training    samples/s of sync_sgd on Fashion-MNIST with 1, 4 and 8
//                   workers sharing device 0, for the MLP 784-1024-1024-10
//                   and the CNN (models "mlp:1024,1024" and "cnn"), batch 64.
//                   bench/pytorch_gpu.py trains the same models in PyTorch on
//                   the same GPU for the ratio.
//
// Without a GPU it prints one {"bench":"gpu","skipped":...} line and exits 0,
// so `make bench` stays green on CPU machines.
//
// Run: build/bench/gpu_throughput   (CHORUS_BENCH_QUICK=1: fewer steps)
#include <exception>
#include <filesystem>
#include <string>
#include <vector>

#include "tools/experiment.hpp"
#include "bench/bench_util.hpp"
#include "gpu/backend.hpp"
#include "gpu/device.hpp"

using namespace chorus;

namespace {

void device_mean(int dev) {
  const size_t n = size_t{1} << 24;  // 16M floats = 64 MB
  const int reps = bench::quick() ? 3 : 15;
  auto be = make_cuda_backend(dev);
  auto src = be->zeros(n);
  auto dst = be->allocate(n);
  // Device-to-device copy: the bandwidth bound in the same binary.
  double t_copy = bench::median_seconds(reps, [&] {
    device::copy(dst.data(), memory_kind::device, src.data(), memory_kind::device,
                 n * sizeof(float));
  });
  const double copy_gbs = 2.0 * n * sizeof(float) / t_copy / 1e9;
  for (size_t k : {2, 4, 8}) {
    std::vector<buffer> xs;
    std::vector<cview> views;
    for (size_t i = 0; i < k; ++i)
      xs.push_back(be->zeros(n).freeze());
    for (auto& x : xs)
      views.push_back(x);
    auto out = be->allocate(n);
    be->mean(views, out.span());  // warm-up
    double t = bench::median_seconds(reps, [&] { be->mean(views, out.span()); });
    const double gbs = double(k + 1) * n * sizeof(float) / t / 1e9;
    bench::print(bench::line("device_mean")
                   .add("device", device::name(dev))
                   .add("k", static_cast<int64_t>(k))
                   .add("floats", static_cast<int64_t>(n))
                   .add("mean_ms", t * 1e3)
                   .add("mean_gb_per_s", gbs)
                   .add("copy_ms", t_copy * 1e3)
                   .add("copy_gb_per_s", copy_gbs)
                   .add("ratio", gbs / copy_gbs));
  }
}

void gpu_training(int dev) {
  const std::string dir = bench::fashion_mnist_dir();
  if (!std::filesystem::exists(dir)) {
    bench::print(bench::line("gpu_training").add("error", "no Fashion-MNIST at " + dir));
    return;
  }
  train_test data = load_fashion_mnist(dir);
  const int64_t steps = bench::quick() ? 30 : 600;
  for (std::string model : {"mlp:1024,1024", "cnn"}) {
    for (int workers : {1, 4, 8}) {
      experiment_config cfg;
      cfg.algorithm = "sync_sgd";
      cfg.backend = "cuda";
      cfg.devices = {dev};
      cfg.workers = workers;
      cfg.model = model;
      cfg.batch = 64;
      cfg.lr = 0.05;
      cfg.steps = steps;
      cfg.eval_every = steps;  // one evaluation, at the end
      cfg.threads = 2;
      cfg.progress = false;
      auto r = run_experiment(cfg, data).summary;
      bench::print(bench::line("gpu_training")
                     .add("device", device::name(dev))
                     .add("model", model)
                     .add("workers", static_cast<int64_t>(workers))
                     .add("batch", static_cast<int64_t>(cfg.batch))
                     .add("steps", r.steps)
                     .add("wall_s", r.wall_s)
                     .add("samples_per_s", double(r.samples) / (r.wall_s - r.eval_s))
                     .add("test_acc", r.test_acc));
    }
  }
}

} // namespace

int main() {
  if (device::count() == 0) {
    bench::print(bench::line("gpu").add(
      "skipped", device::built_with_cuda() ? "no CUDA device" : "built without CUDA"));
    return 0;
  }
  try {
    device_mean(0);
    gpu_training(0);
  } catch (const std::exception& e) {
    bench::note(std::string("gpu_throughput: ") + e.what());
    return 1;
  }
  return 0;
}
