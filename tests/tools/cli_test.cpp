// The runner as a user meets it: bad input is a clear message and a non-zero
// exit, never a crash or a hang; good input writes the promised files.
#include <gtest/gtest.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sys/wait.h>

#include "data/npy.hpp"

#include "tests/tools/chorus_process.hpp"

namespace test = chorus::test;

namespace {

using outcome = test::shell_outcome;

// Runs `prefix` chorus `args` in a shell.
outcome run_prefixed(const std::string& prefix, const std::string& args) {
  return test::run_shell(prefix + "chorus " + args);
}

outcome run(const std::string& args) { return run_prefixed("", args); }

void expect_usage_error(const std::string& args, const std::string& says) {
  auto r = run(args);
  EXPECT_EQ(r.status, 2) << args << "\n" << r.output;
  EXPECT_NE(r.output.find(says), std::string::npos) << args << "\n" << r.output;
}

std::string temp_dir(const std::string& name) {
  auto dir = std::filesystem::temp_directory_path() / ("chorus_cli_" + name + "_" + std::to_string(getpid()));
  std::filesystem::remove_all(dir);
  return dir.string();
}

} // namespace

TEST(cli, bad_values_are_clear_errors_with_exit_status_2) {
  expect_usage_error("train --lr -0.1", "--lr must be");
  expect_usage_error("train --workers 0", "--workers must be at least 1");
  expect_usage_error("train --model resnet", "resnet");
  expect_usage_error("train --algorithm magic_sgd", "valid algorithms: sync_sgd");
  expect_usage_error("train --partition zipf", "zipf");
  expect_usage_error("train --reg l7:1", "valid forms");
  expect_usage_error("train --batch abc", "not an integer");
  expect_usage_error("train --frobnicate 3", "unknown option --frobnicate");
  expect_usage_error("train --epochs", "needs a value");
  expect_usage_error("train --config /nonexistent/chorus.cfg", "cannot open config file");
  expect_usage_error("train --dataset mnist-digits", "mnist-digits");
  expect_usage_error("train --spin-polls 0", "--spin-polls must be auto or between 1 and 1000000000");
  expect_usage_error("train --scheduler fifo", "valid: auto, stealing, sharing");
  expect_usage_error("frobnicate", "unknown command");
}

TEST(cli, unknown_model_is_reported_before_any_training) {
  auto r = run("train --dataset synthetic-lsq --model mlp:abc --steps 5");
  EXPECT_EQ(r.status, 2) << r.output;
  EXPECT_NE(r.output.find("mlp:abc"), std::string::npos) << r.output;
}

TEST(cli, missing_dataset_files_name_the_file) {
  auto r = run("train --data-dir /nonexistent/fmnist --steps 5");
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("/nonexistent/fmnist"), std::string::npos) << r.output;
}

TEST(cli, help_and_list_explain_every_choice) {
  auto help = run("train --help");
  EXPECT_EQ(help.status, 0);
  for (auto flag : {"--algorithm", "--workers", "--model", "--dataset", "--partition", "--epochs",
                    "--batch", "--lr", "--reg", "--seed", "--threads", "--spin-polls", "--scheduler", "--eval-every",
                    "--target-acc", "--data-dir", "--out", "--config"})
    EXPECT_NE(help.output.find(flag), std::string::npos) << flag;
  auto list = run("list");
  EXPECT_EQ(list.status, 0);
  for (auto name : {"sync_sgd", "sync_sgd_avg", "mlp:", "softmax", "fashion-mnist", "libsvm:",
                    "dirichlet:", "shards:", "l1:"})
    EXPECT_NE(list.output.find(name), std::string::npos) << name;
  EXPECT_EQ(run("--help").status, 0);
}

TEST(cli, a_run_writes_model_metrics_config_and_a_summary_line) {
  auto dir = temp_dir("run");
  auto cfg = dir + ".cfg";
  {
    std::ofstream f(cfg);
    f << "# a config file\nalgorithm = sync_sgd\nworkers = 3\nmodel = logistic\n"
         "dataset = synthetic-logistic\nlr = 0.5\n";
  }
  auto r = run("train --config " + cfg + " --steps 40 --eval-every 10 --target-acc 0.99 --reg l1:1e-3 "
               "--spin-polls 500 --out " + dir);
  ASSERT_EQ(r.status, 0) << r.output;
  // The summary is the last line, one JSON object with the promised keys.
  auto last = r.output.substr(r.output.rfind('{'));
  for (auto key : {"\"test_acc\":", "\"wall_s\":", "\"samples_per_s\":", "\"time_to_target_s\":"})
    EXPECT_NE(last.find(key), std::string::npos) << key << " in " << last;
  EXPECT_NE(last.find("\"workers\":3"), std::string::npos) << "config file not applied: " << last;
  EXPECT_TRUE(std::filesystem::exists(dir + "/config.json"));
  std::ifstream config_json(dir + "/config.json");
  std::string config_text((std::istreambuf_iterator<char>(config_json)), std::istreambuf_iterator<char>());
  EXPECT_NE(config_text.find("\"spin_polls\":500"), std::string::npos) << config_text;
  EXPECT_TRUE(std::filesystem::exists(dir + "/log.txt"));
  std::ifstream metrics(dir + "/metrics.jsonl");
  int rows = 0;
  for (std::string line; std::getline(metrics, line); ++rows)
    for (auto key : {"\"step\":", "\"epoch\":", "\"wall_s\":", "\"train_loss\":", "\"test_loss\":",
                     "\"test_acc\":", "\"bytes_sent\":"})
      EXPECT_NE(line.find(key), std::string::npos) << key;
  EXPECT_EQ(rows, 5);  // steps 0, 10, 20, 30, 40
  auto w = chorus::read_npy(dir + "/model.npy");
  EXPECT_EQ(w.size(), 100u);  // logistic on d = 100
  std::filesystem::remove_all(dir);
  std::filesystem::remove(cfg);
}

namespace {

// Runs chorus under coreutils' timeout: a hang shows as status 124 (or 137)
// instead of blocking the suite; the limit is generous, it only bounds a
// hang.
outcome run_bounded(const std::string& args) {
  return run_prefixed("timeout -k 10 120 ", args);
}

} // namespace

TEST(cli, injection_values_out_of_range_and_repeated_workers_are_usage_errors) {
  expect_usage_error("train --crash 0:1e300", "--crash: step 1e+300 must be a whole number between 0 and 2^53");
  expect_usage_error("train --crash 0:-1", "--crash: step -1 must be");
  expect_usage_error("train --delay fixed:1e300", "--delay: duration '1e300' is too long");
  expect_usage_error("train --link-delay 1e300s", "--link-delay: duration '1e300s' is too long");
  expect_usage_error("train --slow 0:1e300", "--slow: factor 1e+300 must be between 1 and 1e12");
  expect_usage_error("train --crash 0:5,0:10", "--crash: worker 0 is given twice ('0:5' and '0:10')");
  expect_usage_error("train --crash 0:5 --crash 0:10", "--crash: worker 0 is given twice");
  expect_usage_error("train --slow 1:2 --slow 1:3", "--slow: worker 1 is given twice");
}

// The command line's --crash replaces the config file's; repeats add workers.
TEST(cli, repeated_crash_flags_inject_every_worker_named) {
  auto cfg = temp_dir("crash") + ".cfg";
  {
    std::ofstream f(cfg);
    f << "crash = 3:1\n";
  }
  auto r = run("train --config " + cfg + " --dataset synthetic-lsq --model linear --steps 6 "
               "--quiet --crash 0:2 --crash 1:4");
  std::filesystem::remove(cfg);
  ASSERT_EQ(r.status, 0) << r.output;
  auto last = r.output.substr(r.output.rfind('{'));
  EXPECT_NE(last.find("worker 0: crash at protocol step 2; worker 1: crash at protocol step 4\""),
            std::string::npos)
    << last;
  EXPECT_NE(last.find("\"workers_lost\":2"), std::string::npos) << last;
  EXPECT_EQ(last.find("injections_not_fired"), std::string::npos) << last;
}

// local_sgd counts rounds of tau local steps: a crash set past the run's
// last round never fires, and the run says so in its log and its summary.
TEST(cli, an_injected_crash_that_never_fires_is_a_warning_and_a_summary_field) {
  auto dir = temp_dir("not_fired");
  auto r = run("train --algorithm local_sgd --tau 4 --dataset synthetic-lsq --model linear "
               "--steps 5 --crash 1:30 --crash 2:3 --out " + dir);
  ASSERT_EQ(r.status, 0) << r.output;
  auto last = r.output.substr(r.output.rfind('{'));
  EXPECT_NE(last.find("\"injections_not_fired\":1"), std::string::npos) << last;
  EXPECT_NE(last.find("\"workers_lost\":1"), std::string::npos) << last;
  std::ifstream log(dir + "/log.txt");
  std::string text((std::istreambuf_iterator<char>(log)), std::istreambuf_iterator<char>());
  EXPECT_NE(text.find("warning: the injected crash of worker 1 at protocol step 30 never fired "
                      "(the run ended at step 5)"),
            std::string::npos)
    << text;
  EXPECT_EQ(text.find("crash of worker 2"), std::string::npos) << text;
  std::filesystem::remove_all(dir);
}

// A wait longer than any run, injected into every worker: each is dropped
// after --timeout, the run fails at step 0 (status 1), and the process ends
// by itself instead of waiting for workers asleep in their handlers.
TEST(cli, a_huge_injected_wait_fails_the_run_by_its_timeout_and_the_process_exits) {
  for (std::string inject : {"--delay fixed:1e15ms", "--slow 0:1e9,1:1e9"}) {
    auto r = run_bounded("train --dataset synthetic-lsq --model linear --workers 2 --steps 5 "
                         "--timeout 300ms --quiet " + inject);
    EXPECT_EQ(r.status, 1) << inject << "\n" << r.output;
    EXPECT_NE(r.output.find("training failed: no_workers_left"), std::string::npos)
      << inject << "\n" << r.output;
  }
}
