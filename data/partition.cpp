// Partitioners: how one dataset is split into disjoint per-worker index lists
// (IID, Dirichlet label skew, k-label shards), and the spec parser that picks
// one by name.
//
// Every partition covers each sample exactly once and gives every worker at
// least one sample. For regression data "label" means the target: Dirichlet
// skew uses ten equal-count target quantile bins as its classes, and shards
// sort by target. This file moves no data; workers read their indices from the
// shared dataset.
#include "data/dataset.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <numeric>
#include <random>
#include <string_view>

namespace chorus {

namespace {

// Number of target quantile bins that stand in for classes on regression data.
constexpr int64_t regression_bins = 10;

void check_workers(const dataset& d, int n, const char* fn) {
  if (n <= 0)
    throw std::invalid_argument(std::string(fn) + ": need at least one worker, got n = " +
                                std::to_string(n));
  if (n > d.size())
    throw std::invalid_argument(std::string(fn) + ": " + std::to_string(n) +
                                " workers but the dataset has only " + std::to_string(d.size()) +
                                " samples; every worker needs at least one");
}

std::vector<int64_t> iota_indices(int64_t n) {
  std::vector<int64_t> v(static_cast<size_t>(n));
  std::iota(v.begin(), v.end(), int64_t{0});
  return v;
}

// Sample indices grouped by class (or by target quantile for regression).
std::vector<std::vector<int64_t>> label_groups(const dataset& d) {
  if (d.task == task_kind::regression) {
    auto order = iota_indices(d.size());
    std::stable_sort(order.begin(), order.end(),
                     [&](int64_t a, int64_t b) { return d.y[a] < d.y[b]; });
    const int64_t bins = std::min<int64_t>(regression_bins, d.size());
    std::vector<std::vector<int64_t>> groups(static_cast<size_t>(bins));
    for (int64_t b = 0; b < bins; ++b)
      groups[b].assign(order.begin() + b * d.size() / bins, order.begin() + (b + 1) * d.size() / bins);
    return groups;
  }
  int64_t classes = d.num_classes;
  if (classes <= 0)
    for (float y : d.y)
      classes = std::max<int64_t>(classes, static_cast<int64_t>(y) + 1);
  std::vector<std::vector<int64_t>> groups(static_cast<size_t>(classes));
  for (int64_t i = 0; i < d.size(); ++i) {
    float y = d.y[i];
    if (!(y >= 0.0f && y < static_cast<float>(classes) && y == std::floor(y)))
      throw std::invalid_argument("partition: sample " + std::to_string(i) + " has label " +
                                  std::to_string(y) + ", not a class in 0.." +
                                  std::to_string(classes - 1));
    groups[static_cast<size_t>(y)].push_back(i);
  }
  return groups;
}

const char* valid_forms =
    "valid forms: iid, dirichlet:ALPHA (ALPHA > 0, e.g. dirichlet:0.3), shards:K (K >= 1, e.g. "
    "shards:2)";

[[noreturn]] void bad_spec(const std::string& spec, const std::string& why) {
  throw std::invalid_argument("bad partition spec '" + spec + "': " + why + "; " + valid_forms);
}

} // namespace

partition partition_iid(const dataset& d, int n, uint64_t seed) {
  check_workers(d, n, "partition_iid");
  auto order = iota_indices(d.size());
  std::mt19937_64 rng(seed);
  std::shuffle(order.begin(), order.end(), rng);
  partition out(static_cast<size_t>(n));
  // Contiguous cuts at floor(w * N / n): shard sizes differ by at most one.
  for (int64_t w = 0; w < n; ++w)
    out[w].assign(order.begin() + w * d.size() / n, order.begin() + (w + 1) * d.size() / n);
  return out;
}

partition partition_dirichlet(const dataset& d, int n, double alpha, uint64_t seed) {
  check_workers(d, n, "partition_dirichlet");
  if (!(alpha > 0.0) || !std::isfinite(alpha))
    throw std::invalid_argument("partition_dirichlet: alpha must be > 0 and finite, got " +
                                std::to_string(alpha));
  std::mt19937_64 rng(seed);
  std::gamma_distribution<double> gamma(alpha, 1.0);
  std::uniform_int_distribution<int> any_worker(0, n - 1);

  partition out(static_cast<size_t>(n));
  std::vector<double> share(static_cast<size_t>(n));
  for (auto& group : label_groups(d)) {
    std::shuffle(group.begin(), group.end(), rng);
    // Normalized independent Gamma(alpha) draws are a Dirichlet(alpha) draw.
    double total = 0.0;
    for (double& s : share)
      total += (s = gamma(rng));
    if (!(total > 0.0)) {
      // Tiny alpha can underflow every draw to zero: the limit of that
      // Dirichlet is all mass on one worker.
      std::fill(share.begin(), share.end(), 0.0);
      share[any_worker(rng)] = 1.0;
      total = 1.0;
    }
    // Cut the class at rounded cumulative proportions, so the counts add up
    // to the class size exactly.
    const int64_t size = static_cast<int64_t>(group.size());
    double cumulative = 0.0;
    int64_t begin = 0;
    for (int w = 0; w < n; ++w) {
      cumulative += share[w] / total;
      int64_t end = w + 1 == n ? size : std::min<int64_t>(size, std::llround(cumulative * static_cast<double>(size)));
      end = std::max(end, begin);
      out[w].insert(out[w].end(), group.begin() + begin, group.begin() + end);
      begin = end;
    }
  }
  // Skewed draws can leave a worker empty. Since n <= size, whenever one is
  // empty the largest shard holds at least two samples and can spare one.
  for (auto& shard : out) {
    if (!shard.empty())
      continue;
    auto largest = std::max_element(out.begin(), out.end(),
                                    [](const auto& a, const auto& b) { return a.size() < b.size(); });
    shard.push_back(largest->back());
    largest->pop_back();
  }
  return out;
}

partition partition_shards(const dataset& d, int n, int k, uint64_t seed) {
  check_workers(d, n, "partition_shards");
  if (k <= 0)
    throw std::invalid_argument("partition_shards: k must be >= 1, got " + std::to_string(k));
  std::mt19937_64 rng(seed);
  // Shuffle before the stable sort so each label's samples are in random
  // order and a shard is a random subset of its label(s).
  auto order = iota_indices(d.size());
  std::shuffle(order.begin(), order.end(), rng);
  std::stable_sort(order.begin(), order.end(),
                   [&](int64_t a, int64_t b) { return d.y[a] < d.y[b]; });

  // n*k shards, but never more shards than samples, so none is empty; with
  // n <= size every worker still receives at least one.
  const int64_t num_shards = std::min<int64_t>(int64_t{n} * k, d.size());
  auto shard_ids = iota_indices(num_shards);
  std::shuffle(shard_ids.begin(), shard_ids.end(), rng);
  partition out(static_cast<size_t>(n));
  for (int64_t i = 0; i < num_shards; ++i) {
    const int64_t s = shard_ids[i];
    auto& dst = out[i % n];
    dst.insert(dst.end(), order.begin() + s * d.size() / num_shards,
               order.begin() + (s + 1) * d.size() / num_shards);
  }
  return out;
}

partition make_partition(const dataset& d, int n, const std::string& spec, uint64_t seed) {
  if (n <= 0 || n > d.size())
    bad_spec(spec, "cannot split " + std::to_string(d.size()) + " samples among n = " +
                       std::to_string(n) + " workers (need 1 <= n <= dataset size)");
  const std::string_view s(spec);
  auto argument = [&](std::string_view prefix) -> std::string_view {
    return s.substr(prefix.size());
  };
  if (s == "iid")
    return partition_iid(d, n, seed);
  if (s.rfind("dirichlet:", 0) == 0) {
    std::string_view arg = argument("dirichlet:");
    double alpha = 0.0;
    auto [ptr, ec] = std::from_chars(arg.data(), arg.data() + arg.size(), alpha);
    if (arg.empty() || ec != std::errc() || ptr != arg.data() + arg.size())
      bad_spec(spec, "ALPHA '" + std::string(arg) + "' is not a number");
    if (!(alpha > 0.0) || !std::isfinite(alpha))
      bad_spec(spec, "ALPHA must be > 0");
    return partition_dirichlet(d, n, alpha, seed);
  }
  if (s.rfind("shards:", 0) == 0) {
    std::string_view arg = argument("shards:");
    int k = 0;
    auto [ptr, ec] = std::from_chars(arg.data(), arg.data() + arg.size(), k);
    if (arg.empty() || ec != std::errc() || ptr != arg.data() + arg.size())
      bad_spec(spec, "K '" + std::string(arg) + "' is not an integer");
    if (k <= 0)
      bad_spec(spec, "K must be >= 1");
    return partition_shards(d, n, k, seed);
  }
  bad_spec(spec, "unknown partitioner");
}

std::vector<std::pair<std::string, std::string>> partition_names() {
  return {
      {"iid", "seeded shuffle dealt into n near-equal shards"},
      {"dirichlet:ALPHA", "label skew: each class spread over workers by Dirichlet(ALPHA); "
                          "small ALPHA (0.1) is very skewed, large (1000) near IID"},
      {"shards:K", "samples sorted by label, cut into n*K shards, K per worker "
                   "(each worker sees about K labels)"},
  };
}

} // namespace chorus
