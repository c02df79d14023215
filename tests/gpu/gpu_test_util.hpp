// Shared helpers for the GPU tests: the skip that every GPU-only test starts
// with, and the random vectors the backend tests compare on.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "tools/experiment.hpp"
#include "gpu/device.hpp"

namespace chorus::test {

/// Skips the calling test unless at least n CUDA devices are visible, saying
/// how many are and whether this build has CUDA at all.
#define CHORUS_SKIP_WITHOUT_GPUS(n)                                                           \
  do {                                                                                        \
    if (::chorus::device::count() < (n))                                                      \
      GTEST_SKIP() << "needs " << (n) << " CUDA device(s), " << ::chorus::device::count()    \
                   << " visible (built with CUDA: "                                           \
                   << (::chorus::device::built_with_cuda() ? "yes" : "no") << ")";            \
  } while (false)

/// n draws from N(0, 1), the same for the same seed.
inline std::vector<float> random_vector(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  std::vector<float> v(n);
  for (auto& x : v)
    x = dist(rng);
  return v;
}

/// A short run everyone can afford: 4 softmax workers, 60 steps of batch 32
/// on the seeded synthetic logistic problem, quiet.
inline experiment_config small_softmax_run(const std::string& algorithm, const std::string& backend) {
  experiment_config cfg;
  cfg.algorithm = algorithm;
  cfg.backend = backend;
  cfg.workers = 4;
  cfg.model = "softmax";
  cfg.dataset = "synthetic-logistic";
  cfg.batch = 32;
  cfg.lr = 0.5;
  cfg.steps = 60;
  cfg.progress = false;
  return cfg;
}

} // namespace chorus::test
