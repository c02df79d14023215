// --config reads only a bounded regular file, and no error quotes a huge
// value back: a directory, /dev/zero or a 2 MiB file is a clear usage error;
// an overlong value is refused by its length; echoed input is cut to ~80
// characters.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include "tests/tools/chorus_process.hpp"
#include "tools/options.hpp"

namespace chorus {
namespace {

// The message parse_train_args throws for `args` ("" when it accepts them).
std::string usage_message(const std::vector<std::string>& args) {
  bool help = false;
  try {
    parse_train_args(args, &help);
  } catch (const usage_error& e) {
    return e.what();
  }
  return {};
}

TEST(config_file, a_directory_is_refused) {
  auto dir = test::temp_path("config_dir");
  std::filesystem::create_directories(dir);
  auto msg = usage_message({"--config", dir});
  EXPECT_NE(msg.find("config file " + dir + " is not a regular file (it is a directory)"),
            std::string::npos)
    << msg;
  std::filesystem::remove_all(dir);
}

TEST(config_file, a_file_over_1_mib_is_refused_before_it_is_parsed) {
  auto path = test::temp_path("config_big");
  {
    std::ofstream f(path);
    f << "workers = 2\n" << std::string(2 << 20, '#') << "\n";
  }
  auto msg = usage_message({"--config", path});
  EXPECT_NE(msg.find("larger than 1 MiB"), std::string::npos) << msg;
  std::filesystem::remove(path);
}

TEST(config_file, huge_values_are_refused_by_length_and_never_echoed_whole) {
  auto path = test::temp_path("config_long");
  {
    std::ofstream f(path);
    f << "algorithm = " << std::string(500000, 'x') << "\n";
  }
  auto msg = usage_message({"--config", path});
  EXPECT_NE(msg.find("--algorithm: the value is 500000 characters long (at most 4096)"),
            std::string::npos)
    << msg.substr(0, 300);
  EXPECT_LT(msg.size(), 400u);
  std::filesystem::remove(path);
  // Values and names under that bound are cut where a message quotes them.
  msg = usage_message({"--batch", std::string(3000, '7') + "x"});
  EXPECT_NE(msg.find("characters)' is not an integer"), std::string::npos) << msg;
  EXPECT_LT(msg.size(), 200u);
  msg = usage_message({"--" + std::string(3000, 'q')});
  EXPECT_NE(msg.find("unknown option --qqq"), std::string::npos);
  EXPECT_LT(msg.size(), 200u);
  msg = usage_message({std::string(3000, 'q')});
  EXPECT_LT(msg.size(), 200u) << msg;
}

TEST(config_file, chorus_train_exits_2_for_dev_zero_and_a_directory) {
  auto dir = test::temp_path("config_cli");
  std::filesystem::create_directories(dir);
  // /dev/zero never ends a line: read whole, it would take all memory.
  for (std::string config : {std::string("/dev/zero"), dir}) {
    test::chorus_process run({"train", "--config", config, "--steps", "5"}, dir + "_log",
                             rlim_t{2} << 30);
    EXPECT_EQ(run.wait(), 2) << config << ": " << run.err();
    EXPECT_NE(run.err().find("config file " + config + " is not a regular file"), std::string::npos)
      << run.err();
    EXPECT_EQ(run.out(), "") << "it ran: " << run.out();
  }
  std::filesystem::remove_all(dir);
  std::filesystem::remove(dir + "_log.out");
  std::filesystem::remove(dir + "_log.err");
}

} // namespace
} // namespace chorus
