// Redundancy infusion for RI-SGD (Haddadpour et al., ICML 2019): each of n
// workers trains on its own shard plus copies of other workers' shards, so the
// survivors of a crash may still hold the whole training set. This file only
// assigns indices; it moves no data and knows nothing about the protocol.
//
// Cyclic replication. With redundancy mu in [0, 1], let
//     r = round(mu * (n - 1))            (halves rounded up; 0 <= r <= n - 1).
// Shard j of the base partition is copied, in full, to workers j+1, ..., j+r
// (mod n). So worker i holds
//     held[i] = own[i] + own[i-1] + ... + own[i-r]     (mod n, no duplicates),
// i.e. r of the n-1 other shards: a fraction r/(n-1) of the others' data, the
// nearest such fraction to mu. Every sample lives on exactly r+1 workers, the
// ring window {j, j+1, ..., j+r} of its shard j.
//
// Coverage. A sample of shard j is lost exactly when its whole window is
// crashed, so for a crash set C
//     lost(C) = sum of |own[j]| over the j with {j, ..., j+r} inside C.
// If C is the whole ring every window is lost. Otherwise C falls into runs of
// consecutive workers, and a run of length l contains max(0, l - r) windows;
// since max(0, a - r) + max(0, b - r) <= max(0, a + b - r), merging runs never
// loses fewer windows, so one run of c = |C| workers is a worst case. With
// equal shards (|own[j]| = N/n) the worst coverage over all |C| = c is
//     expected_coverage(n, mu, c) = 1                 for c <= r,
//                                   (n - (c - r)) / n for r < c < n,
//                                   0                 for c = n,
// attained by any c consecutive workers. mu = 0 (r = 0) loses exactly the
// crashed workers' shards; mu = 1 (r = n-1) loses nothing until all n are gone.
// With unequal shards (IID cuts differ by at most one sample) the worst case
// differs from this by less than (c - r) / N.
#include "data/dataset.hpp"

#include <algorithm>
#include <cmath>
#include <random>

namespace chorus {

namespace {

void check_mu(double mu, const char* fn) {
  // Written so that NaN fails too.
  if (!(mu >= 0.0 && mu <= 1.0))
    throw std::invalid_argument(std::string(fn) + ": redundancy mu must be in [0, 1], got " +
                                std::to_string(mu));
}

} // namespace

int redundant_copies(int n, double mu) {
  if (n <= 0)
    throw std::invalid_argument("redundant_copies: need at least one worker, got n = " +
                                std::to_string(n));
  check_mu(mu, "redundant_copies");
  // llround rounds halves away from zero, i.e. up here; mu <= 1 keeps r <= n-1.
  return static_cast<int>(std::llround(mu * static_cast<double>(n - 1)));
}

redundant_partition make_redundant(const partition& base, double mu, uint64_t seed) {
  check_mu(mu, "make_redundant");
  if (base.empty())
    throw std::invalid_argument("make_redundant: the base partition has no workers");
  const int n = static_cast<int>(base.size());

  // The r+1 copies of a sample are distinct only if the base shards are
  // disjoint, so check that before building on it.
  int64_t largest = -1;
  for (size_t w = 0; w < base.size(); ++w)
    for (int64_t i : base[w]) {
      if (i < 0)
        throw std::invalid_argument("make_redundant: worker " + std::to_string(w) +
                                    " has negative sample index " + std::to_string(i));
      largest = std::max(largest, i);
    }
  std::vector<int> owner(static_cast<size_t>(largest + 1), -1);
  for (size_t w = 0; w < base.size(); ++w)
    for (int64_t i : base[w]) {
      int& o = owner[static_cast<size_t>(i)];
      if (o >= 0)
        throw std::invalid_argument("make_redundant: sample " + std::to_string(i) +
                                    " is in the shards of both worker " + std::to_string(o) +
                                    " and worker " + std::to_string(w) +
                                    "; the base shards must be disjoint");
      o = static_cast<int>(w);
    }

  redundant_partition out;
  out.own = base;
  out.mu = mu;
  out.copies = redundant_copies(n, mu);
  out.held.resize(base.size());
  std::mt19937_64 rng(seed);
  for (int i = 0; i < n; ++i) {
    auto& h = out.held[static_cast<size_t>(i)];
    for (int k = 0; k <= out.copies; ++k) {
      const auto& shard = base[static_cast<size_t>(((i - k) % n + n) % n)];
      h.insert(h.end(), shard.begin(), shard.end());
    }
    // Interleave own samples and copies, so a worker walking its list in order
    // does not see whole shards one after another.
    std::shuffle(h.begin(), h.end(), rng);
  }
  return out;
}

double coverage(const redundant_partition& p, const std::vector<int>& crashed,
                int64_t dataset_size) {
  if (dataset_size <= 0)
    throw std::invalid_argument("coverage: dataset_size must be >= 1, got " +
                                std::to_string(dataset_size));
  const int n = static_cast<int>(p.held.size());
  std::vector<char> gone(static_cast<size_t>(n), 0);
  for (int w : crashed) {
    if (w < 0 || w >= n)
      throw std::invalid_argument("coverage: crashed worker " + std::to_string(w) +
                                  " is not in 0.." + std::to_string(n - 1));
    if (gone[static_cast<size_t>(w)])
      throw std::invalid_argument("coverage: crashed worker " + std::to_string(w) +
                                  " is listed twice");
    gone[static_cast<size_t>(w)] = 1;
  }
  std::vector<char> kept(static_cast<size_t>(dataset_size), 0);
  int64_t count = 0;
  for (int w = 0; w < n; ++w) {
    if (gone[static_cast<size_t>(w)])
      continue;
    for (int64_t i : p.held[static_cast<size_t>(w)]) {
      if (i < 0 || i >= dataset_size)
        throw std::invalid_argument("coverage: worker " + std::to_string(w) + " holds sample " +
                                    std::to_string(i) + ", outside a dataset of " +
                                    std::to_string(dataset_size));
      if (!kept[static_cast<size_t>(i)]) {
        kept[static_cast<size_t>(i)] = 1;
        ++count;
      }
    }
  }
  return static_cast<double>(count) / static_cast<double>(dataset_size);
}

double expected_coverage(int n, double mu, int crashed_count) {
  const int r = redundant_copies(n, mu);
  if (crashed_count < 0 || crashed_count > n)
    throw std::invalid_argument("expected_coverage: crashed_count must be in 0.." +
                                std::to_string(n) + ", got " + std::to_string(crashed_count));
  const int lost = crashed_count == n ? n : std::max(0, crashed_count - r);
  return static_cast<double>(n - lost) / static_cast<double>(n);
}

} // namespace chorus
