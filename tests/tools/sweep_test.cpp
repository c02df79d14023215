// chorus sweep, plot and rerun as a user meets them: the runs a grid makes,
// the summary over seeds (checked against the runs' own summaries, computed
// here), resuming, bad grids, a bit-for-bit rerun, and figures.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <sys/wait.h>

#include <nlohmann/json.hpp>

#include "tests/tools/chorus_process.hpp"

namespace test = chorus::test;

namespace {

namespace fs = std::filesystem;

using outcome = test::shell_outcome;

outcome run(const std::string& args) { return test::run_shell("chorus " + args); }

std::string temp_dir(const std::string& name) {
  auto dir = fs::temp_directory_path() / ("chorus_sweep_" + name + "_" + std::to_string(getpid()));
  fs::remove_all(dir);
  return dir.string();
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

nlohmann::json read_json(const fs::path& path) {
  auto text = read_text(path);
  EXPECT_FALSE(text.empty()) << path;
  return nlohmann::json::parse(text.empty() ? "{}" : text);
}

size_t count(const std::string& text, const std::string& what) {
  size_t n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1))
    ++n;
  return n;
}

// A run of well under a second: one worker (deterministic), 30 steps of
// logistic regression on the synthetic problem, evaluated every 10 steps.
const std::string tiny = "--dataset synthetic-logistic --model logistic --workers 1 --steps 30 "
                         "--eval-every 10 --threads 1";

// In grid order (the first --grid varies slowest); folder names sort the keys.
const std::vector<std::string> points{"batch=16,lr=0.05", "batch=32,lr=0.05", "batch=16,lr=0.2",
                                      "batch=32,lr=0.2"};

// The sweep the tests below share, made once per test binary.
class sweep : public ::testing::Test {
protected:
  static void SetUpTestSuite() {
    runs_ = temp_dir("runs");
    first_ = run("sweep tiny --runs-dir " + runs_
                 + " --grid lr=0.05,0.2 --grid batch=16,32 --seeds 1,2 --target-acc 0.6 " + tiny);
  }
  static void TearDownTestSuite() { fs::remove_all(runs_); }
  static std::string runs_;
  static outcome first_;
};
std::string sweep::runs_;
outcome sweep::first_;

TEST_F(sweep, a_2x2_grid_over_2_seeds_makes_8_runs_and_their_mean_and_std) {
  ASSERT_EQ(first_.status, 0) << first_.output;
  EXPECT_EQ(count(first_.output, ": done in"), 8u) << first_.output;
  const fs::path dir = fs::path(runs_) / "tiny";
  auto summary = read_json(dir / "summary.json");
  ASSERT_EQ(summary["points"].size(), 4u) << summary.dump(2);
  for (size_t p = 0; p < points.size(); ++p) {
    auto& row = summary["points"][p];
    EXPECT_EQ(row["point"], points[p]);
    // Mean and sample std over the seeds, from the runs' own summary.json.
    std::map<std::string, std::vector<double>> values;
    for (int seed : {1, 2}) {
      auto run_dir = dir / points[p] / ("seed-" + std::to_string(seed));
      for (auto file : {"config.json", "metrics.jsonl", "model.npy", "summary.json", "log.txt"})
        EXPECT_TRUE(fs::exists(run_dir / file)) << run_dir / file;
      auto s = read_json(run_dir / "summary.json");
      for (auto key : {"test_acc", "test_loss", "train_loss", "wall_s", "samples_per_s", "bytes_sent"})
        values[key].push_back(s[key].get<double>());
      auto cfg = read_json(run_dir / "config.json");
      EXPECT_EQ(cfg["config"]["seed"], seed);
      EXPECT_EQ(cfg["config"]["batch"], p % 2 == 0 ? 16 : 32);
    }
    for (auto& [key, xs] : values) {
      const double mean = (xs[0] + xs[1]) / 2;
      const double std = std::sqrt((xs[0] - mean) * (xs[0] - mean) + (xs[1] - mean) * (xs[1] - mean));
      auto& m = row["metrics"][key];
      EXPECT_NEAR(m["mean"].get<double>(), mean, 1e-9 * (1 + std::fabs(mean))) << points[p] << " " << key;
      EXPECT_NEAR(m["std"].get<double>(), std, 1e-9 * (1 + std::fabs(mean))) << points[p] << " " << key;
      EXPECT_EQ(m["n"], 2) << key;
    }
    // The seeds differ: a spread of zero everywhere would hide a copy.
    EXPECT_GT(row["metrics"]["test_loss"]["std"].get<double>(), 0) << points[p];
    EXPECT_EQ(row["time_to_target"]["of"], 2);
  }
  auto csv = read_text(dir / "summary.csv");
  EXPECT_EQ(csv.rfind("point,lr,batch,seeds_finished,", 0), 0u) << csv;
  EXPECT_NE(csv.find("test_acc_mean,test_acc_std"), std::string::npos) << csv;
  EXPECT_NE(csv.find("ttt_wall_s_mean"), std::string::npos) << csv;
  EXPECT_EQ(count(csv, "\n"), 5u) << csv;
}

TEST_F(sweep, running_it_again_skips_every_finished_run) {
  ASSERT_EQ(first_.status, 0) << first_.output;
  auto model = fs::path(runs_) / "tiny" / points[0] / "seed-1" / "model.npy";
  auto before = fs::last_write_time(model);
  auto again = run("sweep tiny --runs-dir " + runs_
                   + " --grid lr=0.05,0.2 --grid batch=16,32 --seeds 1,2 --target-acc 0.6 " + tiny);
  EXPECT_EQ(again.status, 0) << again.output;
  EXPECT_EQ(count(again.output, "finished before, skipped"), 8u) << again.output;
  EXPECT_EQ(count(again.output, "started"), 0u) << again.output;
  EXPECT_EQ(fs::last_write_time(model), before);
  // Another base config under the same name is refused, not mixed in.
  auto other = run("sweep tiny --runs-dir " + runs_
                   + " --grid lr=0.05,0.2 --grid batch=16,32 --seeds 1,2 --target-acc 0.6 " + tiny
                   + " --partition dirichlet:0.5");
  EXPECT_EQ(other.status, 2) << other.output;
  EXPECT_NE(other.output.find("made with another config: partition"), std::string::npos)
    << other.output;
  EXPECT_EQ(fs::last_write_time(model), before);
}

TEST_F(sweep, a_run_folder_records_version_build_host_and_seed) {
  auto cfg = read_json(fs::path(runs_) / "tiny" / points[0] / "seed-2" / "config.json");
  EXPECT_FALSE(cfg["chorus_version"].get<std::string>().empty());
  EXPECT_FALSE(cfg["build"].get<std::string>().empty());
  EXPECT_GE(cfg["host"]["cores"].get<int>(), 1);
  EXPECT_FALSE(cfg["host"]["cpu_model"].get<std::string>().empty());
  EXPECT_EQ(cfg["seed"], 2);
}

TEST_F(sweep, plot_draws_a_png_and_an_svg_with_the_labels) {
  ASSERT_EQ(first_.status, 0) << first_.output;
  auto png = fs::path(runs_) / "acc.png";
  auto r = run("plot " + runs_ + "/tiny --x steps --y test_acc --out " + png.string());
  // Needs python3 with matplotlib: tools/install-deps.sh installs
  // python3-matplotlib; the message names it when it is missing.
  ASSERT_EQ(r.status, 0) << r.output;
  auto bytes = read_text(png);
  ASSERT_GT(bytes.size(), 1000u);
  EXPECT_EQ(bytes.substr(1, 3), "PNG");
  auto svg = fs::path(runs_) / "loss.svg";
  r = run("plot " + runs_ + "/tiny --x wall_s --y test_loss --band std --out " + svg.string());
  ASSERT_EQ(r.status, 0) << r.output;
  auto text = read_text(svg);
  for (auto label : {"batch=16, lr=0.05", "batch=32, lr=0.2", "2 seeds", "test_loss"})
    EXPECT_NE(text.find(label), std::string::npos) << label;
  // Log axes and ranges, as bytes-vs-accuracy figures want them.
  auto log_png = fs::path(runs_) / "acc_bytes.png";
  r = run("plot " + runs_ + "/tiny --x bytes --logx --ylim 0,1 --xlim 1e3,1e9 --out "
          + log_png.string());
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(read_text(log_png).substr(1, 3), "PNG");
  // The flag reaches the axis: a log axis labels its ticks 10^k or
  // c x 10^k (matplotlib writes each label's TeX into the SVG), the same
  // plot without it does not (at most a linear axis's one offset label).
  auto powers = [&](const std::string& flags) {
    auto out = fs::path(runs_) / "log_axis.svg";
    auto rr = run("plot " + runs_ + "/tiny --x steps --y test_loss " + flags + " --out "
                  + out.string());
    EXPECT_EQ(rr.status, 0) << rr.output;
    auto svg_text = read_text(out);
    size_t n = 0;
    for (size_t at = svg_text.find("10^{"); at != std::string::npos;
         at = svg_text.find("10^{", at + 1))
      ++n;
    return n;
  };
  const size_t log_ticks = powers("--logy"), linear_ticks = powers("");
  EXPECT_GE(log_ticks, 2u);
  EXPECT_LE(linear_ticks, 1u);
}

TEST_F(sweep, plot_errors_are_clear) {
  ASSERT_EQ(first_.status, 0) << first_.output;
  auto r = run("plot " + runs_ + "/tiny --y no_such_metric --out /tmp/never.png");
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("metric 'no_such_metric' is not in"), std::string::npos) << r.output;
  for (auto bad : {"--ylim 1,0", "--ylim 0.5", "--xlim a,b", "--ylim 0,inf", "--logy --ylim 0,1"}) {
    r = run("plot " + runs_ + "/tiny " + bad + " --out /tmp/never.png");
    EXPECT_EQ(r.status, 2) << bad << "\n" << r.output;
    EXPECT_NE(r.output.find(std::string(bad).find("logy") != std::string::npos
                              ? "a log axis needs LO > 0"
                              : "give two finite numbers LO,HI with LO < HI"),
              std::string::npos)
      << bad << "\n" << r.output;
  }
  auto empty = temp_dir("empty");
  fs::create_directories(empty);
  r = run("plot " + empty);
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("no runs in"), std::string::npos) << r.output;
  fs::remove_all(empty);
}

void expect_bad_grid(const std::string& args, const std::string& says) {
  auto runs = temp_dir("bad");
  auto r = run("sweep bad --runs-dir " + runs + " " + args + " " + tiny);
  EXPECT_EQ(r.status, 2) << args << "\n" << r.output;
  EXPECT_NE(r.output.find(says), std::string::npos) << args << "\n" << r.output;
  EXPECT_EQ(count(r.output, "\n"), 1u) << "one line: " << r.output;
  EXPECT_FALSE(fs::exists(runs)) << "nothing runs, nothing is written: " << args;
  fs::remove_all(runs);
}

TEST(sweep_usage, bad_grids_exit_2_before_anything_runs) {
  expect_bad_grid("--grid frobnicate=1,2", "unknown key 'frobnicate'");
  expect_bad_grid("--grid lr=", "empty value");
  expect_bad_grid("--grid lr=0.1,,0.2", "empty value");
  expect_bad_grid("--grid lr=0.1 --grid lr=0.2", "key 'lr' given twice");
  expect_bad_grid("--grid lr", "expected KEY=V1,V2");
  expect_bad_grid("--grid lr=0.1,abc", "'abc' is not a number");
  expect_bad_grid("--grid seed=1,2", "--seeds");
  expect_bad_grid("--seeds 1,x", "not a seed");
}

TEST(sweep_usage, a_failed_run_is_reported_and_the_sweep_goes_on) {
  auto runs = temp_dir("fail");
  // Data that is not there fails the run (exit 1), not the config check.
  auto r = run("sweep fail --runs-dir " + runs
               + " --grid dataset=synthetic-logistic,libsvm:/nonexistent/chorus.svm "
                 "--model logistic --workers 1 --steps 10 --threads 1");
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_EQ(count(r.output, ": done in"), 1u) << r.output;
  EXPECT_NE(r.output.find("FAILED (exit 1)"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("output.txt"), std::string::npos) << r.output;
  auto summary = read_json(fs::path(runs) / "fail" / "summary.json");
  EXPECT_EQ(summary["points"].size(), 2u);
  fs::remove_all(runs);
}

TEST(rerun, gives_the_same_model_bit_for_bit) {
  auto dir = temp_dir("rerun");
  auto first = run("train " + tiny + " --seed 7 --lr 0.3 --quiet --out " + dir + "/a");
  ASSERT_EQ(first.status, 0) << first.output;
  auto again = run("rerun " + dir + "/a --out " + dir + "/b --quiet");
  ASSERT_EQ(again.status, 0) << again.output;
  EXPECT_NE(again.output.find("--seed 7"), std::string::npos) << again.output;
  auto a = read_text(fs::path(dir) / "a" / "model.npy");
  ASSERT_GT(a.size(), 100u);
  EXPECT_EQ(a, read_text(fs::path(dir) / "b" / "model.npy"));
  auto ca = read_json(fs::path(dir) / "a" / "config.json")["config"];
  auto cb = read_json(fs::path(dir) / "b" / "config.json")["config"];
  ca.erase("out");
  cb.erase("out");
  EXPECT_EQ(ca, cb);
  // Without --out: beside it.
  again = run("rerun " + dir + "/a --quiet");
  ASSERT_EQ(again.status, 0) << again.output;
  EXPECT_EQ(a, read_text(fs::path(dir) / "a-rerun" / "model.npy"));
  auto bad = run("rerun " + dir + "/nothing");
  EXPECT_EQ(bad.status, 2) << bad.output;
  EXPECT_NE(bad.output.find("no run config at"), std::string::npos) << bad.output;
  fs::remove_all(dir);
}

} // namespace
