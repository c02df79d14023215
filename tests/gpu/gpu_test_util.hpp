// Shared helpers for the GPU tests: the skip that every GPU-only test starts
// with, and the random vectors the backend tests compare on.
#pragma once

#include <cstdint>
#include <random>
#include <vector>

#include <gtest/gtest.h>

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

} // namespace chorus::test
