// Tests of RI-SGD's redundant assignment (data/redundant.cpp) for n = 2, 4, 8
// and mu = 0, 0.25, 0.5, 1, on equal shards (120 samples) and unequal ones
// (101): the base shards are kept, worker i holds exactly own[i-r..i], every
// sample lives on r+1 workers, coverage() follows the window rule for every
// crash set and its worst case equals expected_coverage(); bad input throws.
#include "data/dataset.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <set>
#include <string>
#include <tuple>

namespace {

chorus::dataset samples(int64_t n) {
  chorus::dataset d;
  d.name = "test";
  d.num_features = 1;
  d.num_classes = 2;
  for (int64_t i = 0; i < n; ++i) {
    d.x.push_back(static_cast<float>(i));
    d.y.push_back(static_cast<float>(i % 2));
  }
  return d;
}

// r for the grid, worked out by hand from r = round(mu * (n - 1)), halves up:
// not recomputed from the code under test.
int expected_copies(int n, double mu) {
  if (mu == 0.0)
    return 0;
  if (mu == 1.0)
    return n - 1;
  if (mu == 0.25)
    return n == 2 ? 0 : n == 4 ? 1 : 2;  // 0.25, 0.75, 1.75
  if (mu == 0.5)
    return n == 2 ? 1 : n == 4 ? 2 : 4;  // 0.5, 1.5, 3.5
  ADD_FAILURE() << "no expected r for n=" << n << " mu=" << mu;
  return -1;
}

int mod(int a, int n) { return ((a % n) + n) % n; }

std::vector<int> members(unsigned mask, int n) {
  std::vector<int> v;
  for (int w = 0; w < n; ++w)
    if (mask >> w & 1u)
      v.push_back(w);
  return v;
}

int popcount(unsigned mask) {
  int c = 0;
  for (; mask; mask &= mask - 1)
    ++c;
  return c;
}

// Samples lost when `mask` crashes, by the rule the design promises: shard j
// is lost exactly when all of workers j, j+1, ..., j+r are crashed.
int64_t window_rule_lost(const chorus::partition& own, int r, unsigned mask) {
  const int n = static_cast<int>(own.size());
  int64_t lost = 0;
  for (int j = 0; j < n; ++j) {
    bool all = true;
    for (int k = 0; k <= r; ++k)
      all = all && (mask >> mod(j + k, n) & 1u);
    if (all)
      lost += static_cast<int64_t>(own[static_cast<size_t>(j)].size());
  }
  return lost;
}

std::string message_of(void (*fn)()) {
  try {
    fn();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "(no invalid_argument thrown)";
}

// (workers, mu, dataset size): 120 splits evenly for n = 2, 4, 8; 101 does not.
class redundant : public ::testing::TestWithParam<std::tuple<int, double, int64_t>> {
protected:
  void SetUp() override {
    std::tie(n, mu, size) = GetParam();
    r = expected_copies(n, mu);
    base = chorus::partition_iid(samples(size), n, 7);
    p = chorus::make_redundant(base, mu, 11);
  }
  bool even() const { return size % n == 0; }

  int n = 0;
  double mu = 0;
  int64_t size = 0;
  int r = 0;
  chorus::partition base;
  chorus::redundant_partition p;
};

TEST_P(redundant, own_is_the_base_and_covers_each_sample_once) {
  EXPECT_EQ(p.own, base);
  EXPECT_EQ(p.mu, mu);
  EXPECT_EQ(p.copies, r);
  EXPECT_EQ(chorus::redundant_copies(n, mu), r);
  ASSERT_EQ(p.own.size(), static_cast<size_t>(n));
  std::vector<int> seen(static_cast<size_t>(size), 0);
  for (const auto& shard : p.own)
    for (int64_t i : shard) {
      ASSERT_GE(i, 0);
      ASSERT_LT(i, size);
      ++seen[static_cast<size_t>(i)];
    }
  for (int64_t i = 0; i < size; ++i)
    EXPECT_EQ(seen[static_cast<size_t>(i)], 1) << "sample " << i;
}

TEST_P(redundant, worker_holds_its_shard_plus_the_r_shards_before_it) {
  ASSERT_EQ(p.held.size(), static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    const auto& held = p.held[static_cast<size_t>(i)];
    std::set<int64_t> got(held.begin(), held.end());
    EXPECT_EQ(got.size(), held.size()) << "worker " << i << " holds a sample twice";

    const auto& own = p.own[static_cast<size_t>(i)];
    const std::set<int64_t> mine(own.begin(), own.end());
    EXPECT_TRUE(std::includes(got.begin(), got.end(), mine.begin(), mine.end()))
        << "worker " << i << " lacks part of its own shard";

    std::set<int64_t> want;
    size_t want_size = 0;
    for (int k = 0; k <= r; ++k) {
      const auto& shard = p.own[static_cast<size_t>(mod(i - k, n))];
      want.insert(shard.begin(), shard.end());
      want_size += shard.size();
    }
    EXPECT_EQ(got, want) << "worker " << i;
    EXPECT_EQ(held.size(), want_size) << "worker " << i;
  }
}

TEST_P(redundant, share_of_the_others_data_is_r_over_n_minus_1_nearest_mu) {
  for (int i = 0; i < n; ++i) {
    const auto own = static_cast<int64_t>(p.own[static_cast<size_t>(i)].size());
    const auto extra = static_cast<int64_t>(p.held[static_cast<size_t>(i)].size()) - own;
    if (even()) {
      // r whole shards of size/n each: exactly r/(n-1) of the others' data.
      EXPECT_EQ(extra, r * (size / n)) << "worker " << i;
      EXPECT_EQ(static_cast<double>(extra) / static_cast<double>(size - own),
                static_cast<double>(r) / (n - 1))
          << "worker " << i;
    } else {
      // IID cuts differ by at most one sample per shard.
      EXPECT_LE(std::abs(extra - r * size / n), r) << "worker " << i;
    }
  }
  // r/(n-1) is the multiple of 1/(n-1) nearest to mu.
  EXPECT_LE(std::abs(static_cast<double>(r) / (n - 1) - mu), 0.5 / (n - 1));
}

TEST_P(redundant, every_sample_lives_on_its_owner_and_the_next_r_workers) {
  std::vector<std::vector<int>> holders(static_cast<size_t>(size));
  for (int w = 0; w < n; ++w)
    for (int64_t i : p.held[static_cast<size_t>(w)])
      holders[static_cast<size_t>(i)].push_back(w);
  for (int j = 0; j < n; ++j) {
    std::vector<int> window;
    for (int k = 0; k <= r; ++k)
      window.push_back(mod(j + k, n));
    std::sort(window.begin(), window.end());
    for (int64_t i : p.own[static_cast<size_t>(j)])
      EXPECT_EQ(holders[static_cast<size_t>(i)], window) << "sample " << i << " of shard " << j;
  }
}

TEST_P(redundant, no_crash_keeps_everything) {
  EXPECT_EQ(chorus::coverage(p, {}, size), 1.0);
}

TEST_P(redundant, every_crash_set_loses_exactly_the_fully_crashed_windows) {
  for (unsigned mask = 0; mask < (1u << n); ++mask) {
    const int64_t lost = window_rule_lost(p.own, r, mask);
    EXPECT_EQ(chorus::coverage(p, members(mask, n), size),
              static_cast<double>(size - lost) / static_cast<double>(size))
        << "crashed mask " << mask;
  }
}

TEST_P(redundant, worst_crash_set_of_each_size_gives_expected_coverage) {
  for (int c = 0; c <= n; ++c) {
    const double expected = chorus::expected_coverage(n, mu, c);
    double worst = 2.0;
    for (unsigned mask = 0; mask < (1u << n); ++mask)
      if (popcount(mask) == c)
        worst = std::min(worst, chorus::coverage(p, members(mask, n), size));
    // With unequal shards a lost shard may be one sample larger than N/n.
    const double slack = even() ? 0.0 : static_cast<double>(std::max(0, c - r)) / size;
    EXPECT_NEAR(worst, expected, slack) << "c=" << c;
    if (even()) {
      EXPECT_EQ(worst, expected) << "c=" << c;
    }

    // c consecutive workers, from any start, lose c - r shards.
    for (int start = 0; start < n && even(); ++start) {
      std::vector<int> run;
      for (int k = 0; k < c; ++k)
        run.push_back(mod(start + k, n));
      EXPECT_EQ(chorus::coverage(p, run, size), expected) << "c=" << c << " from " << start;
    }
  }
}

TEST_P(redundant, seed_orders_the_held_lists_but_not_their_contents) {
  EXPECT_EQ(chorus::make_redundant(base, mu, 11).held, p.held);
  const auto other = chorus::make_redundant(base, mu, 12);
  EXPECT_NE(other.held, p.held);
  for (int i = 0; i < n; ++i) {
    auto a = p.held[static_cast<size_t>(i)];
    auto b = other.held[static_cast<size_t>(i)];
    std::sort(a.begin(), a.end());
    std::sort(b.begin(), b.end());
    EXPECT_EQ(a, b) << "worker " << i;
  }
  // Own samples and copies are interleaved: with copies present, the list does
  // not start with the whole own shard.
  if (r > 0) {
    const auto& own = p.own[0];
    const std::set<int64_t> mine(own.begin(), own.end());
    const auto& held = p.held[0];
    const bool own_first = std::all_of(held.begin(), held.begin() + static_cast<long>(own.size()),
                                       [&](int64_t i) { return mine.count(i) > 0; });
    EXPECT_FALSE(own_first);
  }
}

INSTANTIATE_TEST_SUITE_P(
    grid, redundant,
    ::testing::Combine(::testing::Values(2, 4, 8), ::testing::Values(0.0, 0.25, 0.5, 1.0),
                       ::testing::Values(int64_t{120}, int64_t{101})),
    [](const auto& info) {
      return "n" + std::to_string(std::get<0>(info.param)) + "_mu" +
             std::to_string(static_cast<int>(std::get<1>(info.param) * 100)) + "_size" +
             std::to_string(std::get<2>(info.param));
    });

TEST(redundant_mu0, any_crash_loses_exactly_the_crashed_shards) {
  for (int n : {2, 4, 8}) {
    const auto base = chorus::partition_iid(samples(101), n, 3);
    const auto p = chorus::make_redundant(base, 0.0, 1);
    EXPECT_EQ(p.held.size(), base.size());
    for (int w = 0; w < n; ++w) {
      const auto lost = static_cast<int64_t>(base[static_cast<size_t>(w)].size());
      EXPECT_EQ(chorus::coverage(p, {w}, 101), static_cast<double>(101 - lost) / 101)
          << "n=" << n << " worker " << w;
    }
    for (unsigned mask = 0; mask < (1u << n); ++mask) {
      int64_t lost = 0;
      for (int w : members(mask, n))
        lost += static_cast<int64_t>(base[static_cast<size_t>(w)].size());
      EXPECT_EQ(chorus::coverage(p, members(mask, n), 101), static_cast<double>(101 - lost) / 101)
          << "n=" << n << " mask " << mask;
    }
  }
}

TEST(redundant_mu1, everything_survives_until_one_worker_is_left) {
  for (int n : {2, 4, 8}) {
    const auto p = chorus::make_redundant(chorus::partition_iid(samples(101), n, 3), 1.0, 1);
    for (const auto& held : p.held)
      EXPECT_EQ(held.size(), 101u) << "n=" << n;
    for (unsigned mask = 0; mask < (1u << n); ++mask) {
      const double want = popcount(mask) == n ? 0.0 : 1.0;
      EXPECT_EQ(chorus::coverage(p, members(mask, n), 101), want) << "n=" << n << " mask " << mask;
    }
  }
}

TEST(redundant_formula, hand_worked_values) {
  // n = 8, mu = 0.25: r = 2; c crashes lose c - 2 of 8 shards.
  const double n8[] = {1, 1, 1, 0.875, 0.75, 0.625, 0.5, 0.375, 0};
  for (int c = 0; c <= 8; ++c)
    EXPECT_EQ(chorus::expected_coverage(8, 0.25, c), n8[c]) << "c=" << c;
  // n = 4, mu = 0.5: r = round(1.5) = 2.
  const double n4[] = {1, 1, 1, 0.75, 0};
  for (int c = 0; c <= 4; ++c)
    EXPECT_EQ(chorus::expected_coverage(4, 0.5, c), n4[c]) << "c=" << c;
  // n = 2: mu = 0.25 rounds to r = 0, mu = 0.5 to r = 1.
  EXPECT_EQ(chorus::expected_coverage(2, 0.25, 1), 0.5);
  EXPECT_EQ(chorus::expected_coverage(2, 0.5, 1), 1.0);
  EXPECT_EQ(chorus::expected_coverage(2, 0.5, 2), 0.0);
  // Halves round up; just below a half rounds down.
  EXPECT_EQ(chorus::redundant_copies(3, 0.25), 1);
  EXPECT_EQ(chorus::redundant_copies(3, 0.24), 0);
  EXPECT_EQ(chorus::redundant_copies(5, 0.6), 2);
  EXPECT_EQ(chorus::redundant_copies(1, 1.0), 0);
}

TEST(redundant_one_worker, holds_only_its_shard) {
  const auto base = chorus::partition_iid(samples(10), 1, 1);
  for (double mu : {0.0, 0.5, 1.0}) {
    const auto p = chorus::make_redundant(base, mu, 1);
    EXPECT_EQ(p.copies, 0);
    auto held = p.held[0];
    std::sort(held.begin(), held.end());
    auto own = base[0];
    std::sort(own.begin(), own.end());
    EXPECT_EQ(held, own);
    EXPECT_EQ(chorus::coverage(p, {}, 10), 1.0);
    EXPECT_EQ(chorus::coverage(p, {0}, 10), 0.0);
    EXPECT_EQ(chorus::expected_coverage(1, mu, 0), 1.0);
    EXPECT_EQ(chorus::expected_coverage(1, mu, 1), 0.0);
  }
}

TEST(redundant_errors, bad_mu_throws_naming_mu) {
  const auto base = chorus::partition_iid(samples(8), 2, 1);
  for (double mu : {-0.1, 1.0001, 2.0, std::nan(""), std::numeric_limits<double>::infinity(),
                    -std::numeric_limits<double>::infinity()}) {
    try {
      chorus::make_redundant(base, mu, 1);
      ADD_FAILURE() << "mu=" << mu << " was accepted";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("mu must be in [0, 1]"), std::string::npos) << e.what();
    }
    EXPECT_THROW(chorus::expected_coverage(2, mu, 0), std::invalid_argument) << "mu=" << mu;
    EXPECT_THROW(chorus::redundant_copies(2, mu), std::invalid_argument) << "mu=" << mu;
  }
}

TEST(redundant_errors, bad_base_throws) {
  EXPECT_NE(message_of([] { chorus::make_redundant({}, 0.5, 1); }).find("no workers"),
            std::string::npos);
  EXPECT_NE(message_of([] { chorus::make_redundant({{0, 1, 2}, {2, 3}}, 0.5, 1); })
                .find("must be disjoint"),
            std::string::npos);
  EXPECT_NE(message_of([] { chorus::make_redundant({{0, -1}, {2}}, 0.5, 1); })
                .find("negative sample index -1"),
            std::string::npos);
}

TEST(redundant_errors, bad_coverage_and_formula_arguments_throw) {
  const auto p = chorus::make_redundant(chorus::partition_iid(samples(8), 4, 1), 0.5, 1);
  EXPECT_THROW(chorus::coverage(p, {-1}, 8), std::invalid_argument);
  EXPECT_THROW(chorus::coverage(p, {4}, 8), std::invalid_argument);
  EXPECT_THROW(chorus::coverage(p, {1, 1}, 8), std::invalid_argument);
  EXPECT_THROW(chorus::coverage(p, {}, 0), std::invalid_argument);
  // A held index beyond the stated dataset size.
  EXPECT_THROW(chorus::coverage(p, {}, 7), std::invalid_argument);
  EXPECT_NE(message_of([] {
              const auto q = chorus::make_redundant({{0}, {1}}, 1.0, 1);
              chorus::coverage(q, {0, 0}, 2);
            }).find("listed twice"),
            std::string::npos);
  EXPECT_THROW(chorus::expected_coverage(4, 0.5, -1), std::invalid_argument);
  EXPECT_THROW(chorus::expected_coverage(4, 0.5, 5), std::invalid_argument);
  EXPECT_THROW(chorus::expected_coverage(0, 0.5, 0), std::invalid_argument);
}

} // namespace
