// Step-size schedules (--lr-schedule): each schedule's values against its
// formula, written here independently (hand values where they are round),
// the run plan's clock (what t counts), bad specs refused, and the metrics
// rows' lr column of a real run following the schedule.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>
#include <unistd.h>

#include "actors/run_tracker.hpp"
#include "messages/lr_schedule.hpp"
#include "tools/experiment.hpp"
#include "tools/options.hpp"

namespace chorus {
namespace {

double s_of(const std::string& spec, int64_t t, int64_t horizon = 0) {
  return lr_schedule::parse(spec).scale(t, horizon);
}

TEST(lr_schedule, const_is_one_everywhere) {
  for (int64_t t : {0, 1, 7, 1000000})
    EXPECT_EQ(s_of("const", t), 1.0);
}

TEST(lr_schedule, inv_halves_at_t0_and_quarters_at_three_t0) {
  EXPECT_DOUBLE_EQ(s_of("inv:10", 0), 1.0);
  EXPECT_DOUBLE_EQ(s_of("inv:10", 10), 0.5);
  EXPECT_DOUBLE_EQ(s_of("inv:10", 30), 0.25);
  EXPECT_DOUBLE_EQ(s_of("inv:2.5", 5), 1.0 / 3.0);
}

TEST(lr_schedule, invsqrt_is_one_over_root_of_one_plus_t_over_t0) {
  EXPECT_DOUBLE_EQ(s_of("invsqrt", 0), 1.0);
  EXPECT_DOUBLE_EQ(s_of("invsqrt", 3), 0.5);
  EXPECT_DOUBLE_EQ(s_of("invsqrt", 8), 1.0 / 3.0);
  EXPECT_DOUBLE_EQ(s_of("invsqrt:4", 12), 0.5);
  EXPECT_DOUBLE_EQ(s_of("invsqrt:4", 60), 0.25);
}

TEST(lr_schedule, cosine_goes_from_one_through_a_half_to_zero_over_the_horizon) {
  EXPECT_DOUBLE_EQ(s_of("cosine", 0, 100), 1.0);
  EXPECT_NEAR(s_of("cosine", 50, 100), 0.5, 1e-15);
  EXPECT_NEAR(s_of("cosine", 100, 100), 0.0, 1e-15);
  // cos(pi/4) = sqrt(2)/2.
  EXPECT_NEAR(s_of("cosine", 25, 100), (1 + std::sqrt(2.0) / 2) / 2, 1e-15);
  EXPECT_NEAR(s_of("cosine", 75, 100), (1 - std::sqrt(2.0) / 2) / 2, 1e-15);
  // Past the horizon it stays at zero.
  EXPECT_NEAR(s_of("cosine", 250, 100), 0.0, 1e-15);
}

TEST(lr_schedule, step_multiplies_by_the_factor_every_every_steps) {
  EXPECT_EQ(s_of("step:10,0.5", 0), 1.0);
  EXPECT_EQ(s_of("step:10,0.5", 9), 1.0);
  EXPECT_EQ(s_of("step:10,0.5", 10), 0.5);
  EXPECT_EQ(s_of("step:10,0.5", 19), 0.5);
  EXPECT_EQ(s_of("step:10,0.5", 25), 0.25);
  EXPECT_DOUBLE_EQ(s_of("step:3,0.1", 7), 0.01);
}

TEST(lr_schedule, a_spec_round_trips_through_to_string) {
  for (auto spec : {"const", "inv:10", "invsqrt:4", "cosine", "step:10,0.5"}) {
    auto s = lr_schedule::parse(spec);
    auto again = lr_schedule::parse(s.to_string());
    for (int64_t t : {0, 3, 17, 99})
      EXPECT_EQ(s.scale(t, 100), again.scale(t, 100)) << spec;
  }
}

TEST(lr_schedule, bad_specs_are_refused_with_the_valid_forms) {
  for (auto spec : {"inv", "inv:0", "inv:-2", "inv:abc", "inv:1e999", "invsqrt:0", "cosine:5",
                    "step", "step:10", "step:0,0.5", "step:2.5,0.5", "step:10,0", "step:10,1.5",
                    "step:10,nan", "linear", "const:3", "Cosine"}) {
    try {
      lr_schedule::parse(spec);
      ADD_FAILURE() << spec << " was accepted";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("valid: const | inv:T0"), std::string::npos)
        << spec << ": " << e.what();
    }
  }
}

TEST(lr_schedule, the_flag_refuses_a_bad_spec_and_cosine_without_steps) {
  bool help = false;
  EXPECT_THROW(parse_train_args({"--lr-schedule", "exp:3"}, &help), usage_error);
  EXPECT_THROW(parse_train_args({"--lr-schedule", "cosine"}, &help), std::invalid_argument);
  auto cfg = parse_train_args({"--lr-schedule", "cosine", "--steps", "100"}, &help);
  EXPECT_EQ(cfg.lr_schedule, "cosine");
  cfg = parse_train_args({"--lr-schedule", "step:100,0.5"}, &help);
  EXPECT_EQ(cfg.lr_schedule, "step:100,0.5");
  // The flag travels to nodes and reruns.
  auto args = to_args(cfg);
  auto at = std::find(args.begin(), args.end(), "--lr-schedule");
  ASSERT_NE(at, args.end());
  EXPECT_EQ(*(at + 1), "step:100,0.5");
  EXPECT_NE(train_help().find("--lr-schedule"), std::string::npos);
}

TEST(lr_schedule, the_plan_clock_counts_local_steps_and_sets_cosines_horizon) {
  run_plan plan;
  plan.lr = 0.8f;
  plan.steps = 5;
  plan.schedule = lr_schedule::parse("cosine");
  // Identity clock: T = 5 steps.
  EXPECT_EQ(plan.clock.t_after(5), 5);
  EXPECT_NEAR(plan.lr_at(0), 0.8, 1e-7);
  EXPECT_NEAR(plan.lr_at(5), 0.0, 1e-7);
  // Local SGD with 2 synchronous rounds then tau 8: 2 + 3 * 8 = 26 local steps.
  plan.clock.sync_steps = 2;
  plan.clock.per_step = 8;
  EXPECT_EQ(plan.clock.t_after(0), 0);
  EXPECT_EQ(plan.clock.t_after(1), 1);
  EXPECT_EQ(plan.clock.t_after(2), 2);
  EXPECT_EQ(plan.clock.t_after(3), 10);
  EXPECT_EQ(plan.clock.t_after(5), 26);
  EXPECT_NEAR(plan.lr_at(13), 0.8 * 0.5, 1e-7);
  // Asynchronous gossip: 4 peers share the run's 100 steps.
  run_plan gossip;
  gossip.lr = 1.0f;
  gossip.steps = 100;
  gossip.clock.peers = 4;
  gossip.schedule = lr_schedule::parse("cosine");
  EXPECT_EQ(gossip.clock.t_after(100), 25);
  EXPECT_NEAR(gossip.lr_at(25), 0.0, 1e-7);
  // A constant schedule leaves lr exactly as given.
  run_plan flat;
  flat.lr = 0.3f;
  EXPECT_EQ(flat.lr_at(12345), 0.3f);
}

// A real run: the metrics rows' lr column is eta * s(t) with t the last
// step's (t = step - 1), and decays.
TEST(lr_schedule, the_metrics_rows_lr_column_follows_the_schedule) {
  auto dir = (std::filesystem::temp_directory_path()
              / ("chorus_schedule_" + std::to_string(getpid())))
               .string();
  std::filesystem::remove_all(dir);
  experiment_config cfg;
  cfg.algorithm = "sync_sgd";
  cfg.workers = 2;
  cfg.model = "logistic";
  cfg.dataset = "synthetic-logistic";
  cfg.steps = 40;
  cfg.eval_every = 10;
  cfg.lr = 0.4;
  cfg.lr_schedule = "step:10,0.5";
  cfg.progress = false;
  cfg.out_dir = dir;
  run_experiment(cfg);
  std::ifstream in(dir + "/metrics.jsonl");
  std::vector<std::pair<int64_t, double>> rows;
  for (std::string line; std::getline(in, line);) {
    auto row = nlohmann::json::parse(line);
    ASSERT_TRUE(row.contains("lr")) << line;
    rows.emplace_back(row["step"].get<int64_t>(), row["lr"].get<double>());
  }
  ASSERT_EQ(rows.size(), 5u);  // steps 0, 10, 20, 30, 40
  for (auto [step, lr] : rows) {
    const int64_t t = std::max<int64_t>(0, step - 1);
    EXPECT_NEAR(lr, 0.4 * std::pow(0.5, t / 10), 1e-6) << "step " << step;
  }
  EXPECT_NEAR(rows.back().second, 0.4 * 0.125, 1e-6);  // t = 39
  std::filesystem::remove_all(dir);
}

TEST(batch_option, a_list_gives_each_worker_its_size_and_a_wrong_length_is_refused) {
  bool help = false;
  auto cfg = parse_train_args({"--workers", "4", "--batch", "32,64,128,256"}, &help);
  EXPECT_EQ(cfg.batches, (std::vector<int32_t>{32, 64, 128, 256}));
  for (int32_t r = 0; r < 4; ++r)
    EXPECT_EQ(batch_of(cfg, r), 32 << r);
  EXPECT_EQ(batch_spec(cfg), "32,64,128,256");
  auto args = to_args(cfg);
  auto at = std::find(args.begin(), args.end(), "--batch");
  ASSERT_NE(at, args.end());
  EXPECT_EQ(*(at + 1), "32,64,128,256");
  // One value: every worker, as before.
  cfg = parse_train_args({"--workers", "3", "--batch", "16"}, &help);
  EXPECT_TRUE(cfg.batches.empty());
  EXPECT_EQ(batch_of(cfg, 2), 16);
  try {
    parse_train_args({"--workers", "4", "--batch", "32,64"}, &help);
    ADD_FAILURE() << "a list of 2 for 4 workers was accepted";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("lists 2 batch sizes for 4 workers"), std::string::npos)
      << e.what();
  }
  EXPECT_THROW(parse_train_args({"--workers", "2", "--batch", "32,0"}, &help), std::invalid_argument);
  EXPECT_THROW(parse_train_args({"--workers", "2", "--batch", "32,x"}, &help), usage_error);
  EXPECT_THROW(parse_train_args({"--workers", "2", "--batch", "32,64", "--allreduce", "nccl"}, &help),
               std::invalid_argument);
}

TEST(test_fraction_option, must_be_strictly_between_zero_and_one) {
  bool help = false;
  EXPECT_EQ(parse_train_args({}, &help).test_fraction, 0.2);
  EXPECT_EQ(parse_train_args({"--test-fraction", "0.3"}, &help).test_fraction, 0.3);
  for (auto bad : {"0", "1", "-0.1", "1.5", "abc"})
    EXPECT_THROW(parse_train_args({"--test-fraction", bad}, &help), std::invalid_argument) << bad;
}

} // namespace
} // namespace chorus
