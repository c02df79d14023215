// The protocol options come from one table, the registry: `chorus train
// --help`, flag parsing, config validation and the defaults a run uses are
// all derived from it. These tests hold each of them to the table.
#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <string>

#include "actors/system.hpp"
#include "algorithms/registry.hpp"
#include "tools/experiment.hpp"
#include "tools/options.hpp"

namespace chorus {
namespace {

std::string flag_of(const std::string& key) {
  std::string flag = key;
  std::replace(flag.begin(), flag.end(), '_', '-');
  return "--" + flag;
}

// The help line that names `algo` (alone or among others, before the colon)
// for the text `text`; empty when there is none.
std::string help_line(const std::string& help, const std::string& algo, const std::string& text) {
  size_t at = 0;
  while (at < help.size()) {
    size_t end = help.find('\n', at);
    if (end == std::string::npos)
      end = help.size();
    std::string line = help.substr(at, end - at);
    auto colon = line.find(": " + text);
    if (colon != std::string::npos) {
      auto names = line.substr(0, colon);
      for (size_t p = names.find(algo); p != std::string::npos; p = names.find(algo, p + 1)) {
        bool starts = p == 0 || names[p - 1] == ' ';
        bool ends = p + algo.size() == names.size() || names[p + algo.size()] == ',';
        if (starts && ends)
          return line;
      }
    }
    at = end + 1;
  }
  return {};
}

TEST(options, help_lists_every_protocol_option_with_each_protocols_default) {
  const auto help = train_help();
  size_t checked = 0;
  for (auto& algo : algorithm_registry())
    for (auto& o : algo.options) {
      EXPECT_NE(help.find(flag_of(o.key)), std::string::npos) << o.key;
      std::string text = o.help + (o.arg.empty() ? "" : " [" + o.fallback + "]");
      EXPECT_FALSE(help_line(help, algo.name, text).empty()) << algo.name << ": " << text;
      ++checked;
    }
  EXPECT_GE(checked, 20u);
  // A shared flag names each protocol with its own default: easgd's tau is
  // not local SGD's, and the help says so.
  EXPECT_FALSE(help_line(help, "easgd", "steps between elastic exchanges [4]").empty());
  EXPECT_FALSE(help_line(help, "local_sgd", "local steps per worker between averages [8]").empty());
  EXPECT_FALSE(help_line(help, "ri_sgd", "local steps per worker between averages [8]").empty());
  EXPECT_TRUE(help_line(help, "easgd", "local steps per worker between averages [8]").empty());
}

TEST(options, every_protocol_flag_parses_into_its_option) {
  std::set<std::string> seen;
  for (auto& algo : algorithm_registry())
    for (auto& o : algo.options) {
      if (!seen.insert(algo.name + o.key).second)
        continue;
      std::vector<std::string> args{"--algorithm", algo.name, flag_of(o.key)};
      if (!o.arg.empty())
        args.push_back(o.fallback);
      bool help = true;
      auto cfg = parse_train_args(args, &help);
      EXPECT_FALSE(help);
      ASSERT_EQ(cfg.options.count(o.key), 1u) << algo.name << " " << o.key;
      EXPECT_EQ(cfg.options.at(o.key), o.arg.empty() ? "1" : o.fallback);
    }
}

TEST(options, a_protocol_rejects_an_option_it_does_not_read_and_names_its_own) {
  bool help = false;
  try {
    parse_train_args({"--algorithm", "sync_sgd", "--tau", "4"}, &help);
    FAIL() << "--tau was accepted for sync_sgd";
  } catch (const std::invalid_argument& e) {
    std::string what = e.what();
    EXPECT_NE(what.find("tau"), std::string::npos) << what;
    EXPECT_NE(what.find("allreduce"), std::string::npos) << what;
  }
}

TEST(options, complete_options_fills_each_protocols_own_defaults_and_keeps_given_ones) {
  run_plan easgd;
  complete_options(find_algorithm("easgd"), easgd);
  EXPECT_EQ(easgd.options.at("tau"), "4");
  EXPECT_EQ(easgd.options.at("seed"), "1");
  run_plan leader;
  leader.options["tau"] = "3";
  complete_options(find_algorithm("leader_sgd"), leader);
  EXPECT_EQ(leader.options.at("tau"), "3");
  EXPECT_EQ(leader.options.at("lambda"), "0.1");
  for (auto& algo : algorithm_registry()) {
    run_plan p;
    complete_options(algo, p);
    EXPECT_EQ(p.options.size(), algo.options.size() + 1) << algo.name;
  }
}

TEST(options, cuda_algorithms_come_from_the_registry_and_the_help_names_them) {
  auto names = cuda_algorithms();
  ASSERT_FALSE(names.empty());
  for (auto& algo : algorithm_registry()) {
    bool listed = std::find(names.begin(), names.end(), algo.name) != names.end();
    EXPECT_EQ(listed, algo.runs_on_cuda) << algo.name;
  }
  const auto help = train_help();
  for (auto& name : names)
    EXPECT_NE(help.find(name), std::string::npos) << name;
}

TEST(options, max_features_parses_defaults_and_is_range_checked) {
  bool help = false;
  EXPECT_EQ(parse_train_args({}, &help).max_features, default_max_features);
  auto cfg = parse_train_args({"--max-features", "300000000"}, &help);
  EXPECT_EQ(cfg.max_features, 300000000);
  EXPECT_NE(to_json(cfg).find("\"max_features\":300000000"), std::string::npos) << to_json(cfg);
  for (const char* bad : {"0", "-5", "2147483648", "1e9"}) {
    try {
      parse_train_args({"--max-features", bad}, &help);
      ADD_FAILURE() << "--max-features " << bad << " was accepted";
    } catch (const std::invalid_argument& e) {
      EXPECT_NE(std::string(e.what()).find("--max-features"), std::string::npos) << e.what();
    }
  }
  EXPECT_NE(train_help().find("--max-features"), std::string::npos);
}

// --threads auto / --spin-polls auto (the defaults): polling only where every
// step is a barrier, in one process, with a thread per worker.
TEST(options, auto_scheduling_polls_only_for_lockstep_runs_with_a_thread_per_worker) {
  bool help = false;
  // An idle 2-core machine unless a test says otherwise.
  auto resolve = [&](std::vector<std::string> args, double load = 0.0) {
    return resolve_scheduling(parse_train_args(args, &help), 2, load);
  };
  const auto lockstep = static_cast<int64_t>(lockstep_spin_polls);
  const auto nap = static_cast<int64_t>(default_spin_polls);
  auto sync2 = resolve({"--algorithm", "sync_sgd", "--workers", "2", "--threads", "2"});
  EXPECT_EQ(sync2.threads, 2);
  EXPECT_EQ(sync2.spin_polls, lockstep) << sync2.reason;
  EXPECT_NE(sync2.reason.find("waits for every worker"), std::string::npos) << sync2.reason;
  for (const char* algo : {"sync_sgd_avg", "local_sgd", "gossip_sgd", "leader_sgd", "easgd"})
    EXPECT_EQ(resolve({"--algorithm", algo, "--workers", "2", "--threads", "2"}).spin_polls,
              lockstep)
      << algo;
  // No barrier: CAF's default keeps the asynchronous protocols even.
  for (const char* algo : {"async_sgd", "async_gossip"})
    EXPECT_EQ(resolve({"--algorithm", algo, "--workers", "2", "--threads", "2"}).spin_polls, nap)
      << algo;
  EXPECT_EQ(resolve({"--algorithm", "leader_sgd", "--async", "--workers", "2", "--threads", "2"})
              .spin_polls,
            nap);
  // More workers than threads, or workers in other processes: no polling.
  auto crowded = resolve({"--algorithm", "sync_sgd", "--workers", "3", "--threads", "2"});
  EXPECT_EQ(crowded.spin_polls, nap);
  EXPECT_NE(crowded.reason.find("more workers than threads"), std::string::npos) << crowded.reason;
  EXPECT_EQ(resolve({"--algorithm", "sync_sgd", "--workers", "2", "--threads", "2",
                     "--processes", "2"})
              .spin_polls,
            nap);
  // A busy machine: polling would take the cores from other processes.
  auto busy = resolve({"--algorithm", "sync_sgd", "--workers", "2", "--threads", "2"}, 3.0);
  EXPECT_EQ(busy.spin_polls, nap);
  EXPECT_NE(busy.reason.find("3 other runnable task(s)"), std::string::npos) << busy.reason;
  EXPECT_EQ(resolve({"--algorithm", "sync_sgd", "--workers", "1", "--threads", "2"}, 1.2)
              .spin_polls,
            lockstep);
  // auto threads: the cores.
  EXPECT_EQ(resolve({}).threads, 2);
  // Given values stay; auto threads is at least one.
  EXPECT_EQ(resolve({"--workers", "2", "--threads", "2", "--spin-polls", "7"}).spin_polls, 7);
  EXPECT_GE(resolve_scheduling(parse_train_args({}, &help)).threads, 1);
  // auto round-trips through the flags a node gets; 0 is not a count.
  auto cfg = parse_train_args({}, &help);
  EXPECT_EQ(cfg.threads, 0);
  EXPECT_EQ(cfg.spin_polls, 0);
  auto back = parse_train_args(to_args(cfg), &help);
  EXPECT_EQ(back.threads, 0);
  EXPECT_EQ(back.spin_polls, 0);
  EXPECT_THROW(parse_train_args({"--threads", "0"}, &help), std::invalid_argument);
  EXPECT_THROW(parse_train_args({"--spin-polls", "0"}, &help), std::invalid_argument);
}

// --scheduler auto (the default): sharing when the workers are in other
// processes, stealing in one; a given policy stays, and auto round-trips
// through the flags a node gets.
TEST(options, auto_scheduler_shares_across_processes_and_steals_in_one) {
  bool help = false;
  auto resolve = [&](std::vector<std::string> args) {
    return resolve_scheduling(parse_train_args(args, &help), 2, 0.0);
  };
  auto one = resolve({"--algorithm", "allreduce_sgd", "--workers", "2"});
  EXPECT_EQ(one.policy, "stealing") << one.reason;
  auto many = resolve({"--algorithm", "allreduce_sgd", "--workers", "2", "--processes", "2"});
  EXPECT_EQ(many.policy, "sharing") << many.reason;
  EXPECT_NE(many.reason.find("policy sharing (auto: the workers are in other processes"),
            std::string::npos)
    << many.reason;
  EXPECT_EQ(resolve({"--workers", "2", "--nodes", "127.0.0.1:7100"}).policy, "sharing");
  EXPECT_EQ(resolve({"--workers", "2", "--processes", "2", "--scheduler", "stealing"}).policy,
            "stealing");
  EXPECT_EQ(resolve({"--workers", "2", "--scheduler", "sharing"}).policy, "sharing");
  auto cfg = parse_train_args({}, &help);
  EXPECT_EQ(cfg.scheduler, "auto");
  EXPECT_EQ(parse_train_args(to_args(cfg), &help).scheduler, "auto");
}

} // namespace
} // namespace chorus
