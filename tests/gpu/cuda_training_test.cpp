// Training with --backend cuda: the same protocols over workers whose model,
// gradients and local models live on a GPU. `cuda_training_gpu.*` need a GPU
// and skip without one; `cuda_training.*` run in every build and check that
// asking for the cuda backend where it cannot run is a clear error.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include <sys/wait.h>

#include "algorithms/registry.hpp"
#include "data/dataset.hpp"
#include "tools/experiment.hpp"
#include "gpu/device.hpp"
#include "tests/gpu/gpu_test_util.hpp"

using namespace chorus;
using chorus::test::small_softmax_run;

namespace {

// On a lent GPU machine the build folder and the data sit under other paths
// than where they were built: CHORUS_BIN_DIR and CHORUS_FASHION_MNIST say where
// (tools/gpu-bundle.sh sets both).
std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && *v != '\0' ? v : fallback;
}

int run_cli(const std::string& args, std::string* output) {
  std::string cmd = env_or("CHORUS_BIN_DIR", CHORUS_BINARY_DIR) + "/chorus " + args + " 2>&1";
  FILE* pipe = popen(cmd.c_str(), "r");
  if (pipe == nullptr)
    return -1;
  std::array<char, 4096> chunk;
  while (size_t n = fread(chunk.data(), 1, chunk.size(), pipe))
    output->append(chunk.data(), n);
  int raw = pclose(pipe);
  return WIFEXITED(raw) ? WEXITSTATUS(raw) : -1;
}

} // namespace

// -- every build -----------------------------------------------------------------

TEST(cuda_training, algorithms_without_a_gpu_path_refuse_the_cuda_backend_by_name) {
  auto cfg = small_softmax_run("gossip_sgd", "cuda");
  try {
    validate(cfg);
    FAIL() << "gossip_sgd accepted --backend cuda";
  } catch (const std::invalid_argument& e) {
    std::string what = e.what();
    EXPECT_NE(what.find("gossip_sgd does not run on --backend cuda"), std::string::npos) << what;
    for (auto& name : cuda_algorithms())
      EXPECT_NE(what.find(name), std::string::npos) << what;
  }
  for (auto& name : cuda_algorithms())
    EXPECT_NO_THROW(validate(small_softmax_run(name, "cuda"))) << name;
}

TEST(cuda_training, bad_backend_and_device_values_are_refused) {
  auto cfg = small_softmax_run("sync_sgd", "rocm");
  EXPECT_THROW(validate(cfg), std::invalid_argument);
  cfg.backend = "cuda";
  cfg.devices = {};
  EXPECT_THROW(validate(cfg), std::invalid_argument);
  cfg.devices = {0, -1};
  EXPECT_THROW(validate(cfg), std::invalid_argument);
}

TEST(cuda_training, without_a_gpu_the_run_fails_before_training_with_a_clear_error) {
  if (device::count() > 0)
    GTEST_SKIP() << "a CUDA device is present";
  auto cfg = small_softmax_run("sync_sgd", "cuda");
  EXPECT_THROW(run_experiment(cfg), device_error);
  std::string out;
  int status = run_cli("train --backend cuda --dataset synthetic-logistic --model softmax "
                       "--steps 5 --quiet",
                       &out);
  EXPECT_EQ(status, 1) << out;
  EXPECT_NE(out.find("--backend cuda"), std::string::npos) << out;
  out.clear();
  status = run_cli("train --backend cuda --devices 0,x --steps 5", &out);
  EXPECT_EQ(status, 2) << out;
}

// -- on a GPU --------------------------------------------------------------------

TEST(cuda_training_gpu, every_cuda_algorithm_matches_its_cpu_run) {
  CHORUS_SKIP_WITHOUT_GPUS(1);
  // Same seeds, same batches, same initial weights: the two runs differ only
  // by float rounding (GEMM order, FMA), so the losses must agree closely.
  for (auto& name : cuda_algorithms()) {
    auto cpu_cfg = small_softmax_run(name, "eigen");
    auto gpu_cfg = small_softmax_run(name, "cuda");
    if (name == "async_sgd") {
      // Arrival order decides async updates: compare one worker only.
      cpu_cfg.workers = gpu_cfg.workers = 1;
    }
    auto cpu = run_experiment(cpu_cfg).summary;
    auto gpu = run_experiment(gpu_cfg).summary;
    EXPECT_EQ(gpu.steps, cpu.steps) << name;
    EXPECT_NEAR(gpu.test_loss, cpu.test_loss, 1e-3 * (1 + cpu.test_loss)) << name;
    EXPECT_NEAR(gpu.test_acc, cpu.test_acc, 0.01) << name;
    ASSERT_EQ(gpu.final_weights.kind(), memory_kind::host) << name;  // results leave as host memory
    auto a = gpu.final_weights.to_vector(), b = cpu.final_weights.to_vector();
    ASSERT_EQ(a.size(), b.size());
    double diff = 0, norm = 0;
    for (size_t i = 0; i < a.size(); ++i)
      diff += (a[i] - b[i]) * double(a[i] - b[i]), norm += double(b[i]) * b[i];
    EXPECT_LT(std::sqrt(diff), 1e-3 * (1 + std::sqrt(norm))) << name;
  }
}

TEST(cuda_training_gpu, four_workers_sharing_one_gpu_reach_the_cpu_accuracy_on_fashion_mnist) {
  CHORUS_SKIP_WITHOUT_GPUS(1);
  const std::string data_dir = env_or("CHORUS_FASHION_MNIST", default_fashion_mnist_dir);
  if (!std::filesystem::exists(data_dir))
    GTEST_SKIP() << "no Fashion-MNIST at " << data_dir;
  experiment_config cfg;
  cfg.data_dir = data_dir;
  cfg.algorithm = "sync_sgd";
  cfg.workers = 4;
  cfg.model = "mlp:256";
  cfg.epochs = 1;
  cfg.lr = 0.2;
  cfg.progress = false;
  auto cpu = run_experiment(cfg).summary;
  cfg.backend = "cuda";
  cfg.devices = {0};
  auto gpu = run_experiment(cfg).summary;
  EXPECT_GE(gpu.test_acc, 0.82);
  EXPECT_NEAR(gpu.test_acc, cpu.test_acc, 0.01);
}
