// The sharded combine (engines/combiners.hpp): slices cover the model once,
// at aligned bounds; a run whose server splits its combine over K actors
// ends with the same weights, bit for bit, as the unsplit run, for every
// rule that splits (sync_sgd with its prox, sync_sgd_avg, local_sgd, ri_sgd);
// a NaN that only one slice sees still stops the run.
#include <gtest/gtest.h>

#include <cstring>
#include <limits>

#include "engines/combiners.hpp"
#include "engines/round_server.hpp"
#include "tests/algorithms/harness.hpp"
#include "tools/experiment.hpp"

using namespace chorus;

TEST(combiners, slices_cover_every_coordinate_once_at_aligned_bounds) {
  for (size_t n : {0, 1, 1023, 1024, 1025, 5000, 203530}) {
    for (size_t parts : {1, 2, 3, 7}) {
      auto b = slice_bounds(n, parts, 1024);
      ASSERT_EQ(b.size(), parts + 1);
      EXPECT_EQ(b.front(), 0u);
      EXPECT_EQ(b.back(), n);
      for (size_t s = 0; s < parts; ++s) {
        EXPECT_LE(b[s], b[s + 1]) << n << " " << parts;
        if (s > 0 && b[s] < n)
          EXPECT_EQ(b[s] % 1024, 0u) << "inner bound " << b[s] << " of n=" << n;
      }
    }
  }
  // Large models split evenly (to within one aligned block).
  auto b = slice_bounds(203530, 2, 1024);
  EXPECT_LE(b[1] > 203530 / 2 ? b[1] - 203530 / 2 : 203530 / 2 - b[1], 1024u);
}

TEST(combiners, auto_splits_by_threads_only_when_slices_stay_large) {
  EXPECT_EQ(combine_slices(0, 203530, 2), 2u);   // MLP 784-256-10 on 2 threads
  EXPECT_EQ(combine_slices(0, 203530, 16), 6u);  // no slice under 32768 floats
  EXPECT_EQ(combine_slices(0, 7850, 2), 1u);     // softmax: not worth two messages
  EXPECT_EQ(combine_slices(1, 1 << 24, 8), 1u);  // 1: never split
  EXPECT_EQ(combine_slices(3, 10, 2), 3u);       // K: exactly K, whatever the size
}

namespace {

experiment_config small_run(const std::string& algorithm, int32_t shards) {
  experiment_config cfg;
  cfg.algorithm = algorithm;
  cfg.workers = 3;
  cfg.model = "logistic";
  cfg.dataset = "synthetic-logistic";
  cfg.batch = 16;
  cfg.steps = 12;
  cfg.lr = 0.5;
  cfg.reg = "l1:0.001";
  cfg.eval_every = 5;
  cfg.progress = false;
  cfg.combine_shards = shards;
  if (algorithm == "local_sgd" || algorithm == "ri_sgd")
    cfg.options["tau"] = "3";
  return cfg;
}

bool same_bits(const buffer& a, const buffer& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

} // namespace

TEST(combiners, a_split_combine_gives_the_unsplit_weights_bit_for_bit) {
  // 5000 features: slices at 1024-float bounds, so 3 and 5 slices all hold
  // coordinates (5 slices: 1024 each but the last).
  auto data = make_sparse_logistic(600, 200, 5000, 20, 4);
  for (auto algo : {"sync_sgd", "sync_sgd_avg", "local_sgd", "ri_sgd"}) {
    auto whole = run_experiment(small_run(algo, 1), data).summary.final_weights;
    ASSERT_GT(whole.size(), 4096u) << algo;
    for (int32_t k : {2, 3, 5}) {
      auto split = run_experiment(small_run(algo, k), data).summary.final_weights;
      EXPECT_TRUE(same_bits(whole, split)) << algo << " with " << k << " slices";
    }
    // The runs moved: a test comparing two w_0 would pass as well.
    auto w0 = run_experiment([&] {
                auto c = small_run(algo, 1);
                c.steps = 1;
                return c;
              }(), data)
                .summary.final_weights;
    EXPECT_FALSE(same_bits(whole, w0)) << algo;
  }
}

TEST(combiners, a_nan_that_only_the_last_slice_writes_stops_the_run) {
  // A rule that writes a NaN into one coordinate of the last slice in round
  // 2: each slice checks what it wrote, so the run must stop there with
  // non_finite even though slice 0 (the server's own) is clean.
  for (size_t shards : {1, 4}) {
    test::graph g;
    const int64_t dim = 5000;
    test::add_rank_workers(g, 2, dim);
    g.ctx.plan.steps = 5;
    g.ctx.combine_shards = shards;
    round_rule rule;
    rule.ask = [](round_asker& ask, size_t i, const weights& w, int64_t) { ask.gradient(i, w); };
    rule.combine_slice = [dim](backend& be, cview w, const std::vector<cview>& grads,
                               const std::vector<round_reply>& replies, view out, int64_t round) {
      be.mean_axpy(w, grads, -0.01f, out);
      // The slice that ends the model is the one holding coordinate dim - 1.
      const bool last = grads[0].data + grads[0].size == replies[0].values.data() + dim;
      if (round == 2 && out.size > 0 && last)
        out[out.size - 1] = std::numeric_limits<float>::quiet_NaN();
    };
    rule.combine = combine_whole(rule);
    auto s = g.run(spawn_round_server(g.ts.sys, g.ctx, rule));
    ASSERT_FALSE(s) << "a NaN in the last coordinate went unnoticed with " << shards << " slices";
    // The server's own check, at that step: not a worker that later
    // computes on the poisoned weights.
    EXPECT_NE(describe(s.error()).find("weights after step 1 contain NaN or Inf"),
              std::string::npos)
      << describe(s.error());
  }
}
