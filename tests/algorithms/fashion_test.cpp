// The real-data check: sync SGD with 4 workers trains the MLP on
// Fashion-MNIST to at least 0.82 test accuracy within 3 epochs. Skipped
// when Debian's dataset-fashion-mnist is not installed (make test installs it).
#include <gtest/gtest.h>

#include <filesystem>

#include "tools/experiment.hpp"

using namespace chorus;

TEST(fashion_mnist, sync_sgd_with_4_workers_reaches_0_82_within_3_epochs) {
  if (!std::filesystem::exists(std::string(default_fashion_mnist_dir) + "/train-images-idx3-ubyte.gz"))
    GTEST_SKIP() << "Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)";
  experiment_config cfg;
  cfg.algorithm = "sync_sgd";
  cfg.workers = 4;
  cfg.model = "mlp:256";
  cfg.epochs = 3;
  cfg.lr = 0.1;
  cfg.target_acc = 0.82;
  cfg.progress = false;
  auto r = run_experiment(cfg);
  EXPECT_TRUE(r.summary.reached_target) << "test_acc " << r.summary.test_acc;
  EXPECT_GE(r.summary.test_acc, 0.82);
  EXPECT_LE(r.summary.epochs, 3.01);
  EXPECT_EQ(r.summary.workers_lost, 0);
}
