// One run at a time per output folder, and whole files in it: a second run on
// a held --out is refused with a message naming the folder and the run that
// holds it; --overwrite takes the folder over without mixing the two runs'
// rows; config.json and model.npy are replaced whole.
#include <gtest/gtest.h>

#include <csignal>
#include <filesystem>
#include <stdexcept>
#include <string>

#include "tests/tools/chorus_process.hpp"
#include "tools/out_dir.hpp"

namespace chorus {
namespace {

using test::chorus_process;

size_t lines_in(const std::string& text) {
  size_t n = 0;
  for (char c : text)
    n += c == '\n';
  return n;
}

TEST(out_dir, a_held_folder_is_refused_naming_it_and_its_holder) {
  auto dir = test::temp_path("out_dir_lock");
  {
    out_dir_lock first(dir, false);
    EXPECT_TRUE(first.still_held());
    try {
      out_dir_lock second(dir, false);
      FAIL() << "a second lock on a held folder";
    } catch (const std::invalid_argument& e) {
      std::string what = e.what();
      EXPECT_NE(what.find(dir), std::string::npos) << what;
      EXPECT_NE(what.find("pid " + std::to_string(::getpid())), std::string::npos) << what;
      EXPECT_NE(what.find("--overwrite"), std::string::npos) << what;
    }
  }
  out_dir_lock again(dir, false);  // released with its holder
  EXPECT_TRUE(again.still_held());
  std::filesystem::remove_all(dir);
}

TEST(out_dir, overwrite_takes_the_folder_and_the_first_holder_sees_it) {
  auto dir = test::temp_path("out_dir_take");
  out_dir_lock first(dir, false);
  out_dir_lock second(dir, true);
  EXPECT_FALSE(first.still_held());
  EXPECT_TRUE(second.still_held());
  EXPECT_THROW(out_dir_lock(dir, false), std::invalid_argument);
  std::filesystem::remove_all(dir);
}

TEST(out_dir, an_atomic_write_that_fails_leaves_the_old_file_and_no_temporary) {
  auto dir = test::temp_path("out_dir_atomic");
  std::filesystem::create_directories(dir);
  auto path = dir + "/config.json";
  write_atomically(path, [](const std::string& temp) { std::ofstream(temp) << "old\n"; });
  EXPECT_THROW(write_atomically(path,
                                [](const std::string& temp) {
                                  std::ofstream(temp) << "half";
                                  throw std::runtime_error("disk full");
                                }),
               std::runtime_error);
  EXPECT_EQ(test::read_text(path), "old\n");
  size_t files = 0;
  for (auto& entry : std::filesystem::directory_iterator(dir))
    files += entry.is_regular_file();
  EXPECT_EQ(files, 1u);
  std::filesystem::remove_all(dir);
}

TEST(out_dir, a_second_chorus_run_on_a_held_out_fails_clearly_and_overwrite_does_not_mix) {
  auto dir = test::temp_path("out_dir_cli");
  chorus_process first({"train", "--dataset", "synthetic-logistic", "--model", "logistic",
                        "--workers", "2", "--steps", "1000000000", "--eval-every", "20", "--out", dir},
                       dir + "_first");
  ASSERT_TRUE(test::wait_for([&] { return test::has_a_line(dir + "/metrics.jsonl"); }))
    << first.err();
  std::vector<std::string> short_run{"train", "--dataset", "synthetic-logistic", "--model",
                                     "logistic", "--steps", "20", "--eval-every", "10", "--out", dir};
  {
    chorus_process second(short_run, dir + "_second");
    EXPECT_EQ(second.wait(), 2) << second.err();
    auto err = second.err();
    EXPECT_NE(err.find("output directory " + dir + " is in use by another chorus run (pid "
                       + std::to_string(first.pid())),
              std::string::npos)
      << err;
  }
  // --overwrite: the new run's files are its own (rows at steps 0, 10, 20),
  // while the first goes on writing into files no longer in the folder.
  short_run.push_back("--overwrite");
  {
    chorus_process third(short_run, dir + "_third");
    EXPECT_EQ(third.wait(), 0) << third.err();
  }
  auto rows = lines_in(test::read_text(dir + "/metrics.jsonl"));
  first.signal(SIGINT);
  EXPECT_EQ(first.wait(), 130);
  EXPECT_NE(first.err().find("model.npy of this run not written"), std::string::npos) << first.err();
  EXPECT_EQ(rows, 3u);
  EXPECT_EQ(lines_in(test::read_text(dir + "/metrics.jsonl")), 3u);
  // With the holder gone, the folder is free again.
  short_run.pop_back();
  chorus_process fourth(short_run, dir + "_fourth");
  EXPECT_EQ(fourth.wait(), 0) << fourth.err();
  std::filesystem::remove_all(dir);
  for (auto suffix : {"_first", "_second", "_third", "_fourth"})
    for (auto ext : {".out", ".err"})
      std::filesystem::remove(dir + suffix + ext);
}

} // namespace
} // namespace chorus
