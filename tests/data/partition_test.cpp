// Tests of the partitioners: every spec covers each sample exactly once with
// no empty worker, for n = 1, 2, 3, 8; Dirichlet skew follows alpha; shards
// limit the labels a worker sees; bad specs are rejected with the valid forms.
#include "data/dataset.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <set>
#include <string>
#include <tuple>

namespace {

// `n` samples with labels cycling through `classes` classes (or, for
// classes == 0, a regression target equal to the sample's index).
chorus::dataset labelled(int64_t n, int64_t classes) {
  chorus::dataset d;
  d.name = "test";
  d.num_features = 1;
  d.num_classes = classes;
  d.task = classes > 0 ? chorus::task_kind::classification : chorus::task_kind::regression;
  for (int64_t i = 0; i < n; ++i) {
    d.x.push_back(static_cast<float>(i));
    d.y.push_back(classes > 0 ? static_cast<float>(i % classes) : static_cast<float>(i));
  }
  return d;
}

// Disjoint, complete, no empty worker, indices in range.
void expect_exact_cover(const chorus::partition& p, const chorus::dataset& d, int n,
                        const std::string& what) {
  ASSERT_EQ(p.size(), static_cast<size_t>(n)) << what;
  std::vector<int> seen(static_cast<size_t>(d.size()), 0);
  for (size_t w = 0; w < p.size(); ++w) {
    EXPECT_FALSE(p[w].empty()) << what << ": worker " << w << " is empty";
    for (int64_t i : p[w]) {
      ASSERT_GE(i, 0) << what;
      ASSERT_LT(i, d.size()) << what;
      ++seen[static_cast<size_t>(i)];
    }
  }
  for (int64_t i = 0; i < d.size(); ++i)
    EXPECT_EQ(seen[static_cast<size_t>(i)], 1) << what << ": sample " << i;
}

// Fraction of each worker's samples that belong to its most common label,
// averaged over workers.
double mean_max_class_fraction(const chorus::partition& p, const chorus::dataset& d) {
  double total = 0;
  for (const auto& shard : p) {
    std::vector<int64_t> counts(static_cast<size_t>(d.num_classes), 0);
    for (int64_t i : shard)
      ++counts[static_cast<size_t>(d.y[i])];
    total += static_cast<double>(*std::max_element(counts.begin(), counts.end())) /
             static_cast<double>(shard.size());
  }
  return total / static_cast<double>(p.size());
}

std::set<float> labels_of(const std::vector<int64_t>& shard, const chorus::dataset& d) {
  std::set<float> s;
  for (int64_t i : shard)
    s.insert(d.y[i]);
  return s;
}

class partition_cover
    : public ::testing::TestWithParam<std::tuple<std::string, int, int64_t>> {};

TEST_P(partition_cover, every_sample_exactly_once_and_no_empty_worker) {
  const auto& [spec, n, size] = GetParam();
  for (int64_t classes : {int64_t{10}, int64_t{2}, int64_t{0}}) {
    const auto d = labelled(size, classes);
    for (uint64_t seed : {1u, 2u, 99u}) {
      auto p = chorus::make_partition(d, n, spec, seed);
      expect_exact_cover(p, d, n,
                         spec + " n=" + std::to_string(n) + " size=" + std::to_string(size) +
                             " classes=" + std::to_string(classes) +
                             " seed=" + std::to_string(seed));
    }
  }
}

INSTANTIATE_TEST_SUITE_P(
    specs, partition_cover,
    ::testing::Combine(::testing::Values("iid", "dirichlet:0.3", "dirichlet:0.01",
                                         "dirichlet:1000", "shards:1", "shards:2", "shards:5"),
                       ::testing::Values(1, 2, 3, 8),
                       // 8 samples: exactly one per worker at n = 8; 1000: typical.
                       ::testing::Values(int64_t{8}, int64_t{1000})),
    [](const auto& info) {
      std::string name = std::get<0>(info.param) + "_n" + std::to_string(std::get<1>(info.param)) +
                         "_size" + std::to_string(std::get<2>(info.param));
      for (char& c : name)
        if (!std::isalnum(static_cast<unsigned char>(c)))
          c = '_';
      return name;
    });

TEST(partition_iid, near_equal_sizes_and_seeded) {
  const auto d = labelled(1003, 10);
  auto p = chorus::partition_iid(d, 8, 5);
  for (const auto& shard : p) {
    EXPECT_GE(shard.size(), 125u);
    EXPECT_LE(shard.size(), 126u);
  }
  EXPECT_EQ(chorus::partition_iid(d, 8, 5), p);
  EXPECT_NE(chorus::partition_iid(d, 8, 6), p);
  // A shuffle happened: worker 0 does not hold just the first samples.
  auto first = p[0];
  std::sort(first.begin(), first.end());
  EXPECT_GT(first.back(), 200);
  // IID shards are label-balanced: the top class fraction is close to 1/10.
  EXPECT_LT(mean_max_class_fraction(p, d), 0.2);
}

// The skew statistic averaged over seeds: one draw at alpha = 0.1 ranges from
// about 0.45 to 0.75 (8 workers, 10 classes), the average over ten is ~0.58.
double average_skew(const chorus::dataset& d, int n, double alpha) {
  double total = 0;
  for (uint64_t seed = 0; seed < 10; ++seed) {
    auto p = chorus::partition_dirichlet(d, n, alpha, seed);
    expect_exact_cover(p, d, n, "dirichlet " + std::to_string(alpha));
    total += mean_max_class_fraction(p, d) / 10.0;
  }
  return total;
}

TEST(partition_dirichlet, small_alpha_is_skewed) {
  const auto d = labelled(5000, 10);
  const double skew_01 = average_skew(d, 8, 0.1);
  EXPECT_GT(skew_01, 0.5);
  // Skew falls as alpha grows.
  const double skew_03 = average_skew(d, 8, 0.3);
  EXPECT_GT(skew_01, skew_03);
  EXPECT_GT(skew_03, average_skew(d, 8, 1000.0) + 0.1);
}

TEST(partition_dirichlet, large_alpha_is_near_uniform) {
  const auto d = labelled(5000, 10);
  auto p = chorus::partition_dirichlet(d, 8, 1000.0, 3);
  expect_exact_cover(p, d, 8, "dirichlet 1000");
  EXPECT_LT(mean_max_class_fraction(p, d), 0.15);
  for (const auto& shard : p) {
    EXPECT_EQ(labels_of(shard, d).size(), 10u);
    // 5000 / 8 = 625 per worker; Dirichlet(1000) proportions vary by ~1%.
    EXPECT_NEAR(static_cast<double>(shard.size()), 625.0, 40.0);
  }
}

TEST(partition_dirichlet, fix_up_gives_every_worker_a_sample) {
  // Extreme skew with as many workers as samples: each worker must end with
  // exactly one.
  const auto d = labelled(8, 2);
  for (uint64_t seed = 0; seed < 20; ++seed) {
    auto p = chorus::partition_dirichlet(d, 8, 0.01, seed);
    expect_exact_cover(p, d, 8, "seed " + std::to_string(seed));
    for (const auto& shard : p)
      EXPECT_EQ(shard.size(), 1u);
  }
}

TEST(partition_dirichlet, seeded) {
  const auto d = labelled(500, 10);
  EXPECT_EQ(chorus::partition_dirichlet(d, 4, 0.5, 1), chorus::partition_dirichlet(d, 4, 0.5, 1));
  EXPECT_NE(chorus::partition_dirichlet(d, 4, 0.5, 1), chorus::partition_dirichlet(d, 4, 0.5, 2));
}

TEST(partition_shards, two_shards_give_few_labels) {
  const auto d = labelled(6000, 10);
  for (uint64_t seed : {1u, 2u, 3u}) {
    auto p = chorus::partition_shards(d, 10, 2, seed);
    expect_exact_cover(p, d, 10, "shards:2");
    double mean_labels = 0;
    for (const auto& shard : p) {
      EXPECT_EQ(shard.size(), 600u);
      const auto labels = labels_of(shard, d);
      EXPECT_LE(labels.size(), 3u);
      mean_labels += static_cast<double>(labels.size()) / 10.0;
    }
    EXPECT_LE(mean_labels, 2.5);
  }
  // With one shard each, a worker sees a single label here (600 per class).
  auto one = chorus::partition_shards(d, 10, 1, 7);
  for (const auto& shard : one)
    EXPECT_EQ(labels_of(shard, d).size(), 1u);
}

TEST(partition_shards, workers_draw_their_shards_at_random) {
  // Which labels worker 0 ends up with must depend on the seed, not on a
  // fixed dealing order.
  const auto d = labelled(1000, 10);
  std::set<std::set<float>> worker0_labels;
  for (uint64_t seed = 0; seed < 10; ++seed)
    worker0_labels.insert(labels_of(chorus::partition_shards(d, 5, 2, seed)[0], d));
  EXPECT_GT(worker0_labels.size(), 3u);
}

TEST(partition_shards, seeded) {
  const auto d = labelled(400, 4);
  EXPECT_EQ(chorus::partition_shards(d, 4, 2, 1), chorus::partition_shards(d, 4, 2, 1));
  EXPECT_NE(chorus::partition_shards(d, 4, 2, 1), chorus::partition_shards(d, 4, 2, 2));
}

TEST(partition_spec, bad_specs_throw_listing_valid_forms) {
  const auto d = labelled(20, 2);
  struct bad {
    std::string spec;
    int n;
  };
  const bad cases[] = {
      {"", 2},           {"random", 2},        {"IID", 2},          {"dirichlet", 2},
      {"dirichlet:", 2}, {"dirichlet:abc", 2}, {"dirichlet:0", 2},  {"dirichlet:-0.5", 2},
      {"shards:", 2},    {"shards:0", 2},      {"shards:-1", 2},    {"shards:1.5", 2},
      {"shards:x", 2},   {"iid", 0},           {"iid", -3},         {"iid", 21},
      {"dirichlet:0.3", 21}, {"shards:2", 0},
  };
  for (const auto& c : cases) {
    std::string msg;
    try {
      chorus::make_partition(d, c.n, c.spec, 1);
      ADD_FAILURE() << "no error for '" << c.spec << "' with n = " << c.n;
    } catch (const std::invalid_argument& e) {
      msg = e.what();
    }
    for (const char* form : {"iid", "dirichlet:ALPHA", "shards:K"})
      EXPECT_NE(msg.find(form), std::string::npos) << c.spec << " n=" << c.n << ": " << msg;
  }
}

TEST(partition_spec, names_match_the_accepted_forms) {
  auto names = chorus::partition_names();
  std::set<std::string> got;
  for (const auto& [name, description] : names) {
    got.insert(name);
    EXPECT_FALSE(description.empty()) << name;
  }
  EXPECT_EQ(got, (std::set<std::string>{"iid", "dirichlet:ALPHA", "shards:K"}));
}

TEST(partition_spec, dispatches_to_the_named_partitioner) {
  const auto d = labelled(300, 3);
  EXPECT_EQ(chorus::make_partition(d, 3, "iid", 4), chorus::partition_iid(d, 3, 4));
  EXPECT_EQ(chorus::make_partition(d, 3, "dirichlet:0.3", 4),
            chorus::partition_dirichlet(d, 3, 0.3, 4));
  EXPECT_EQ(chorus::make_partition(d, 3, "shards:2", 4), chorus::partition_shards(d, 3, 2, 4));
}

TEST(partition_direct, functions_reject_bad_arguments) {
  const auto d = labelled(10, 2);
  EXPECT_THROW(chorus::partition_iid(d, 0, 1), std::invalid_argument);
  EXPECT_THROW(chorus::partition_iid(d, 11, 1), std::invalid_argument);
  EXPECT_THROW(chorus::partition_dirichlet(d, 2, 0.0, 1), std::invalid_argument);
  EXPECT_THROW(chorus::partition_shards(d, 2, 0, 1), std::invalid_argument);
}

} // namespace
