// SIGINT and SIGTERM end a run as a finished one: the protocol stops at its
// next step, metrics and log are on disk, model.npy and the summary line are
// written with stop_reason "interrupted", and the exit status is 130 / 143.
// A second signal exits at once. Each test runs the built `chorus` on a
// small synthetic problem with a budget it would never finish.
#include <gtest/gtest.h>

#include <algorithm>
#include <csignal>
#include <string>
#include <vector>

#include "data/npy.hpp"
#include "tests/tools/chorus_process.hpp"
#include "tools/interrupt.hpp"

namespace chorus {
namespace {

using test::chorus_process;

std::vector<std::string> endless_run(const std::string& out) {
  return {"train", "--dataset", "synthetic-logistic", "--model", "logistic", "--workers", "2",
          "--steps", "1000000000", "--eval-every", "20", "--out", out};
}

// Sends `sig` once the first metrics row is on disk; checks what it leaves.
void interrupt_and_check(int sig, int status, const std::string& name) {
  auto dir = test::temp_path("interrupt_" + name);
  chorus_process run(endless_run(dir), dir);
  ASSERT_GT(run.pid(), 0);
  ASSERT_TRUE(test::wait_for([&] { return test::has_a_line(dir + "/metrics.jsonl"); }))
    << "no metrics row: " << run.err();
  run.signal(sig);
  ASSERT_EQ(run.wait(), status) << run.err();
  auto summary = test::last_line(run.out());
  EXPECT_EQ(summary.front(), '{') << summary;
  EXPECT_NE(summary.find("\"stop_reason\":\"interrupted\""), std::string::npos) << summary;
  // Only whole rows: each line is one JSON object, and the file ends a line.
  auto metrics = test::read_text(dir + "/metrics.jsonl");
  ASSERT_FALSE(metrics.empty());
  EXPECT_EQ(metrics.back(), '\n');
  size_t rows = 0;
  for (size_t at = 0; at < metrics.size(); ++rows) {
    auto end = metrics.find('\n', at);
    ASSERT_NE(end, std::string::npos);
    EXPECT_EQ(metrics[at], '{');
    EXPECT_EQ(metrics[end - 1], '}');
    at = end + 1;
  }
  EXPECT_GE(rows, 1u);
  EXPECT_EQ(read_npy(dir + "/model.npy").size(), 100u);  // logistic on d = 100
  EXPECT_NE(test::read_text(dir + "/log.txt").find("interrupted by " + name), std::string::npos);
  std::filesystem::remove_all(dir);
  std::filesystem::remove(dir + ".out");
  std::filesystem::remove(dir + ".err");
}

TEST(interrupt, sigint_stops_the_run_and_keeps_summary_metrics_log_and_model) {
  interrupt_and_check(SIGINT, 130, "SIGINT");
}

TEST(interrupt, sigterm_does_the_same_with_exit_status_143) {
  interrupt_and_check(SIGTERM, 143, "SIGTERM");
}

TEST(interrupt, a_second_sigint_exits_at_once) {
  // Each step waits 600 s in the workers, so the first SIGINT's "after the
  // current step" is far away: only the second can end the run in time.
  auto dir = test::temp_path("interrupt_twice");
  auto args = endless_run(dir);
  args.insert(args.end(), {"--delay", "fixed:600s", "--timeout", "3600s"});
  chorus_process run(args, dir);
  ASSERT_TRUE(test::wait_for([&] { return test::has_a_line(dir + "/metrics.jsonl"); }))
    << run.err();
  run.signal(SIGINT);
  ASSERT_TRUE(test::wait_for([&] { return run.err().find("stopping after") != std::string::npos; }))
    << run.err();
  run.signal(SIGINT);
  EXPECT_EQ(run.wait(), 130) << run.err();
  EXPECT_NE(run.err().find("second SIGINT"), std::string::npos) << run.err();
  EXPECT_EQ(run.out().find("stop_reason"), std::string::npos) << "ran to its end: " << run.out();
  std::filesystem::remove_all(dir);
  std::filesystem::remove(dir + ".out");
  std::filesystem::remove(dir + ".err");
}

TEST(interrupt, sigkill_leaves_only_whole_metrics_rows_on_disk) {
  // Rows are written and flushed one at a time: a kill loses at most the
  // row in flight, and what is on disk is never a line cut short.
  auto dir = test::temp_path("interrupt_kill");
  chorus_process run(endless_run(dir), dir);
  auto path = dir + "/metrics.jsonl";
  ASSERT_TRUE(test::wait_for([&] {
    auto text = test::read_text(path);
    return std::count(text.begin(), text.end(), '\n') >= 5;
  })) << run.err();
  run.signal(SIGKILL);
  EXPECT_EQ(run.wait(), -1);
  auto metrics = test::read_text(path);
  ASSERT_FALSE(metrics.empty());
  EXPECT_EQ(metrics.back(), '\n') << metrics.substr(metrics.size() > 200 ? metrics.size() - 200 : 0);
  std::filesystem::remove_all(dir);
  std::filesystem::remove(dir + ".out");
  std::filesystem::remove(dir + ".err");
}

TEST(interrupt, a_stop_switch_request_before_the_run_reaches_it_when_it_attaches) {
  stop_switch s;
  std::vector<std::string> calls;
  s.request("first");
  s.request("second");  // later requests do nothing
  EXPECT_TRUE(s.requested());
  s.attach([&](const std::string& why) { calls.push_back(why); });
  s.request("third");
  s.detach();
  ASSERT_EQ(calls.size(), 1u);
  EXPECT_EQ(calls[0], "first");
}

} // namespace
} // namespace chorus
