// Tests of the synthetic problem generators and of the dataset registry's
// table (names, defaults, unknown specs).
#include "data/dataset.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <set>
#include <string>

namespace {

double dot(const float* x, const std::vector<float>& w) {
  double s = 0;
  for (size_t j = 0; j < w.size(); ++j)
    s += double{x[j]} * w[j];
  return s;
}

TEST(synthetic_least_squares, shapes_and_metadata) {
  auto tt = chorus::make_least_squares(500, 200, 16, 0.1, 1);
  ASSERT_TRUE(tt.train && tt.test);
  for (const auto* d : {tt.train.get(), tt.test.get()}) {
    EXPECT_EQ(d->name, "synthetic-lsq");
    EXPECT_EQ(d->task, chorus::task_kind::regression);
    EXPECT_EQ(d->num_classes, 0);
    EXPECT_EQ(d->num_features, 16);
    EXPECT_EQ(d->x.size(), static_cast<size_t>(d->size() * 16));
  }
  EXPECT_EQ(tt.train->size(), 500);
  EXPECT_EQ(tt.test->size(), 200);
  EXPECT_EQ(tt.ground_truth.size(), 16u);
}

TEST(synthetic_least_squares, targets_follow_the_ground_truth_with_the_given_noise) {
  const double noise = 0.1;
  auto tt = chorus::make_least_squares(4000, 1000, 8, noise, 42);
  for (const auto* d : {tt.train.get(), tt.test.get()}) {
    double sum = 0, sum_sq = 0;
    for (int64_t i = 0; i < d->size(); ++i) {
      double r = d->y[i] - dot(d->sample(i), tt.ground_truth);
      sum += r;
      sum_sq += r * r;
    }
    const double n = static_cast<double>(d->size());
    EXPECT_NEAR(sum / n, 0.0, 0.02);
    EXPECT_NEAR(std::sqrt(sum_sq / n), noise, 0.01);
  }
  // Features are standard normal.
  double sum = 0, sum_sq = 0;
  for (float v : tt.train->x) {
    sum += v;
    sum_sq += double{v} * v;
  }
  const double n = static_cast<double>(tt.train->x.size());
  EXPECT_NEAR(sum / n, 0.0, 0.03);
  EXPECT_NEAR(sum_sq / n, 1.0, 0.05);
}

TEST(synthetic_least_squares, zero_noise_is_exact) {
  auto tt = chorus::make_least_squares(100, 10, 5, 0.0, 9);
  for (int64_t i = 0; i < tt.train->size(); ++i)
    EXPECT_NEAR(tt.train->y[i], dot(tt.train->sample(i), tt.ground_truth), 1e-4) << i;
}

TEST(synthetic_least_squares, deterministic_per_seed) {
  auto a = chorus::make_least_squares(64, 16, 4, 0.1, 5);
  auto b = chorus::make_least_squares(64, 16, 4, 0.1, 5);
  auto c = chorus::make_least_squares(64, 16, 4, 0.1, 6);
  EXPECT_EQ(a.train->x, b.train->x);
  EXPECT_EQ(a.train->y, b.train->y);
  EXPECT_EQ(a.test->x, b.test->x);
  EXPECT_EQ(a.ground_truth, b.ground_truth);
  EXPECT_NE(a.train->x, c.train->x);
  EXPECT_NE(a.ground_truth, c.ground_truth);
  // Train and test come from one stream, so they are different draws.
  EXPECT_NE(std::vector<float>(a.train->x.begin(), a.train->x.begin() + 64),
            std::vector<float>(a.test->x.begin(), a.test->x.begin() + 64));
}

TEST(synthetic_logistic, sparse_ground_truth_and_binary_labels) {
  const int64_t d = 100, k = 10;
  auto tt = chorus::make_sparse_logistic(3000, 500, d, k, 11);
  ASSERT_EQ(tt.ground_truth.size(), static_cast<size_t>(d));
  int nonzero = 0;
  for (float w : tt.ground_truth) {
    if (w == 0.0f)
      continue;
    ++nonzero;
    EXPECT_GE(std::abs(w), 1.0f);
    EXPECT_LE(std::abs(w), 2.0f);
  }
  EXPECT_EQ(nonzero, k);
  for (const auto* s : {tt.train.get(), tt.test.get()}) {
    EXPECT_EQ(s->name, "synthetic-logistic");
    EXPECT_EQ(s->task, chorus::task_kind::classification);
    EXPECT_EQ(s->num_classes, 2);
    EXPECT_EQ(s->num_features, d);
    std::set<float> labels(s->y.begin(), s->y.end());
    EXPECT_EQ(labels, (std::set<float>{0.0f, 1.0f}));
  }
  EXPECT_EQ(tt.train->size(), 3000);
  EXPECT_EQ(tt.test->size(), 500);
}

TEST(synthetic_logistic, labels_are_calibrated_to_the_ground_truth) {
  auto tt = chorus::make_sparse_logistic(20000, 0, 20, 5, 3);
  // Mean label equals mean sigmoid(<w*, x>) up to sampling noise, and the
  // Bayes classifier sign(<w*, x>) agrees with most labels.
  double label_mean = 0, prob_mean = 0;
  int agree = 0;
  for (int64_t i = 0; i < tt.train->size(); ++i) {
    double m = dot(tt.train->sample(i), tt.ground_truth);
    label_mean += tt.train->y[i];
    prob_mean += 1.0 / (1.0 + std::exp(-m));
    agree += (m > 0) == (tt.train->y[i] == 1.0f);
  }
  const double n = static_cast<double>(tt.train->size());
  EXPECT_NEAR(label_mean / n, prob_mean / n, 0.015);
  // With five weights of magnitude 1-2, |<w*, x>| is large: the Bayes accuracy
  // is about 0.85; labels drawn independently of x would give about 0.5.
  EXPECT_GT(agree / n, 0.75);
  EXPECT_EQ(tt.test->size(), 0);
}

TEST(synthetic_logistic, deterministic_per_seed) {
  auto a = chorus::make_sparse_logistic(100, 20, 30, 4, 77);
  auto b = chorus::make_sparse_logistic(100, 20, 30, 4, 77);
  auto c = chorus::make_sparse_logistic(100, 20, 30, 4, 78);
  EXPECT_EQ(a.train->x, b.train->x);
  EXPECT_EQ(a.train->y, b.train->y);
  EXPECT_EQ(a.test->y, b.test->y);
  EXPECT_EQ(a.ground_truth, b.ground_truth);
  EXPECT_NE(a.train->x, c.train->x);
}

TEST(synthetic, invalid_sizes_throw) {
  EXPECT_THROW(chorus::make_least_squares(0, 10, 4, 0.1, 1), std::invalid_argument);
  EXPECT_THROW(chorus::make_least_squares(10, 10, 0, 0.1, 1), std::invalid_argument);
  EXPECT_THROW(chorus::make_least_squares(10, 10, 4, -1.0, 1), std::invalid_argument);
  EXPECT_THROW(chorus::make_sparse_logistic(10, 10, 4, 5, 1), std::invalid_argument);
  EXPECT_THROW(chorus::make_sparse_logistic(10, -1, 4, 2, 1), std::invalid_argument);
}

// -- the registry table ---------------------------------------------------

TEST(dataset_registry, lists_every_spec_with_a_description) {
  auto names = chorus::dataset_names();
  std::set<std::string> got;
  for (const auto& [name, description] : names) {
    got.insert(name);
    EXPECT_FALSE(description.empty()) << name;
  }
  EXPECT_EQ(got, (std::set<std::string>{"fashion-mnist", "libsvm:PATH[,TEST]",
                                        "npy:X,Y[,XTEST,YTEST]", "idx:DIR", "synthetic-lsq",
                                        "synthetic-logistic"}));
}

TEST(dataset_registry, synthetic_entries_use_the_documented_defaults) {
  chorus::dataset_options opts;
  opts.seed = 4;
  auto lsq = chorus::load_dataset("synthetic-lsq", opts);
  EXPECT_EQ(lsq.train->size(), 8192);
  EXPECT_EQ(lsq.test->size(), 2048);
  EXPECT_EQ(lsq.train->num_features, 64);
  EXPECT_EQ(lsq.train->x, chorus::make_least_squares(8192, 2048, 64, 0.1, 4).train->x);

  auto logit = chorus::load_dataset("synthetic-logistic", opts);
  EXPECT_EQ(logit.train->size(), 8192);
  EXPECT_EQ(logit.test->size(), 2048);
  EXPECT_EQ(logit.train->num_features, 100);
  int nonzero = 0;
  for (float w : logit.ground_truth)
    nonzero += w != 0.0f;
  EXPECT_EQ(nonzero, 10);
}

TEST(dataset_registry, unknown_spec_lists_valid_names) {
  chorus::dataset_options opts;
  for (const char* spec : {"mnist", "", "synthetic", "libsvm"}) {
    std::string msg;
    try {
      chorus::load_dataset(spec, opts);
      ADD_FAILURE() << "no error for '" << spec << "'";
    } catch (const chorus::data_error& e) {
      msg = e.what();
    }
    EXPECT_NE(msg.find(std::string("'") + spec + "'"), std::string::npos) << msg;
    for (const char* name : {"fashion-mnist", "libsvm:PATH", "synthetic-lsq", "synthetic-logistic"})
      EXPECT_NE(msg.find(name), std::string::npos) << msg;
  }
}

TEST(dataset_registry, fashion_mnist_reads_from_data_dir) {
  chorus::dataset_options opts;
  opts.data_dir = ::testing::TempDir() + "chorus-no-such-dir";
  try {
    chorus::load_dataset("fashion-mnist", opts);
    ADD_FAILURE() << "expected a data_error for a missing data_dir";
  } catch (const chorus::data_error& e) {
    EXPECT_NE(std::string(e.what()).find(opts.data_dir), std::string::npos) << e.what();
  }
}

} // namespace
