// Tests of the LIBSVM reader, its seeded train/test split and the
// "libsvm:PATH" registry entry. Files are written into a temporary directory.
// Hostile indices (2^62, beyond int64, 2e8) end in a clear error under the
// default feature bound, and with the bound raised a tiny file stays tiny in
// memory (sparse storage), checked in a child process under RLIMIT_AS.
#include "data/dataset.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

namespace {

struct temp_dir {
  std::string path;
  temp_dir() {
    std::string pattern = ::testing::TempDir() + "chorus_libsvm_XXXXXX";
    char* made = mkdtemp(pattern.data());
    if (made == nullptr)
      throw std::runtime_error("mkdtemp failed for " + pattern);
    path = made;
  }
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  // Writes `text` to a file in the directory and returns its path.
  std::string write(const std::string& name, const std::string& text) const {
    std::string p = path + "/" + name;
    std::ofstream(p, std::ios::binary) << text;
    return p;
  }
};

template <class F>
std::string data_error_of(F f) {
  try {
    f();
  } catch (const chorus::data_error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected chorus::data_error";
  return {};
}

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

// All samples of d written out densely, sample after sample.
std::vector<float> dense(const chorus::dataset& d) {
  std::vector<float> out(static_cast<size_t>(d.size() * d.num_features));
  for (int64_t i = 0; i < d.size(); ++i)
    d.copy_sample(i, out.data() + i * d.num_features);
  return out;
}

TEST(libsvm_read, binary_plus_minus_one_file_reads_sparse_rows) {
  temp_dir dir;
  auto path = dir.write("a.svm",
                        "+1 1:0.5 3:-2\n"
                        "-1 2:1.25\n"
                        "\n"
                        "# a comment line\n"
                        "+1 4:3e-1 1:7   # trailing comment\n"
                        "-1\n");
  auto d = chorus::read_libsvm(path);
  EXPECT_EQ(d.task, chorus::task_kind::classification);
  EXPECT_EQ(d.num_classes, 2);
  EXPECT_EQ(d.num_features, 4);
  ASSERT_EQ(d.size(), 4);
  EXPECT_EQ(d.y, (std::vector<float>{1, 0, 1, 0}));
  const std::vector<float> expected = {0.5f, 0, -2, 0,  //
                                       0, 1.25f, 0, 0,  //
                                       7, 0, 0, 0.3f,   //
                                       0, 0, 0, 0};
  ASSERT_TRUE(d.is_sparse());
  EXPECT_TRUE(d.x.empty());
  EXPECT_TRUE(d.well_formed());
  EXPECT_EQ(d.sparse.offsets, (std::vector<int64_t>{0, 2, 3, 5, 5}));
  // Row 2 was written "4:3e-1 1:7": stored with its columns sorted.
  EXPECT_EQ(d.sparse.columns, (std::vector<int32_t>{0, 2, 1, 0, 3}));
  const auto x = dense(d);
  ASSERT_EQ(x.size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i)
    EXPECT_FLOAT_EQ(x[i], expected[i]) << i;
}

TEST(libsvm_read, repeated_index_keeps_its_last_value) {
  temp_dir dir;
  auto path = dir.write("dup.svm", "+1 3:1 1:2 3:5\n");
  auto d = chorus::read_libsvm(path);
  EXPECT_EQ(d.sparse.columns, (std::vector<int32_t>{0, 2}));
  EXPECT_EQ(d.sparse.values, (std::vector<float>{2, 5}));
}

TEST(libsvm_read, explicit_num_features_pads_and_bounds) {
  temp_dir dir;
  auto path = dir.write("b.svm", "0 1:1\n1 2:2\n");
  auto d = chorus::read_libsvm(path, 6);
  EXPECT_EQ(d.num_features, 6);
  EXPECT_TRUE(d.well_formed());
  EXPECT_EQ(d.y, (std::vector<float>{0, 1}));
  const auto x = dense(d);
  ASSERT_EQ(x.size(), 12u);
  EXPECT_EQ(x[6 + 1], 2.0f);

  auto msg = data_error_of([&] { chorus::read_libsvm(path, 1); });
  EXPECT_TRUE(contains(msg, path)) << msg;
  EXPECT_TRUE(contains(msg, "line 2")) << msg;
}

TEST(libsvm_read, multiclass_labels_map_in_sorted_order) {
  temp_dir dir;
  auto path = dir.write("c.svm", "7 1:1\n3 1:2\n1 1:3\n3 1:4\n");
  auto d = chorus::read_libsvm(path);
  EXPECT_EQ(d.task, chorus::task_kind::classification);
  EXPECT_EQ(d.num_classes, 3);
  EXPECT_EQ(d.y, (std::vector<float>{2, 1, 0, 1}));
}

TEST(libsvm_read, fractional_labels_make_regression) {
  temp_dir dir;
  auto path = dir.write("r.svm", "0.5 1:1\n-2.25 2:1\n3 1:0\n");
  auto d = chorus::read_libsvm(path);
  EXPECT_EQ(d.task, chorus::task_kind::regression);
  EXPECT_EQ(d.num_classes, 0);
  EXPECT_EQ(d.y, (std::vector<float>{0.5f, -2.25f, 3.0f}));
}

TEST(libsvm_read, malformed_lines_name_file_and_line) {
  temp_dir dir;
  struct bad_case {
    const char* text;
    const char* line;
    const char* what;
  };
  const bad_case cases[] = {
      {"+1 1:1\n-1 2:1\n+1 3.0\n", "line 3", "bad token"},
      {"+1 1:1\n-1 0:1\n", "line 2", "index"},
      {"+1 -3:1\n", "line 1", "index"},
      {"+1 1:1\n\n-1 1:abc\n", "line 3", "non-numeric value"},
      {"+1 1:1\nyes 1:1\n", "line 2", "non-numeric label"},
      {"+1 x:1\n", "line 1", "non-numeric index"},
  };
  int k = 0;
  for (const auto& c : cases) {
    auto path = dir.write("bad" + std::to_string(k++) + ".svm", c.text);
    auto msg = data_error_of([&] { chorus::read_libsvm(path); });
    EXPECT_TRUE(contains(msg, path)) << msg;
    EXPECT_TRUE(contains(msg, c.line)) << c.text << " -> " << msg;
    EXPECT_TRUE(contains(msg, c.what)) << c.text << " -> " << msg;
  }
}

TEST(libsvm_read, empty_and_missing_files_are_errors) {
  temp_dir dir;
  for (const char* text : {"", "\n\n# only a comment\n"}) {
    auto path = dir.write("empty.svm", text);
    auto msg = data_error_of([&] { chorus::read_libsvm(path); });
    EXPECT_TRUE(contains(msg, path)) << msg;
    EXPECT_TRUE(contains(msg, "empty")) << msg;
  }
  const std::string missing = dir.path + "/nope.svm";
  auto msg = data_error_of([&] { chorus::read_libsvm(missing); });
  EXPECT_TRUE(contains(msg, missing)) << msg;
  EXPECT_TRUE(contains(msg, "cannot open")) << msg;
}

// 50 rows, row r has feature 1 equal to r, so rows can be identified.
std::string numbered_rows(int n) {
  std::string text;
  for (int r = 0; r < n; ++r)
    text += (r % 2 ? "+1" : "-1") + std::string(" 1:") + std::to_string(r) + " 2:1\n";
  return text;
}

std::vector<int> row_ids(const chorus::dataset& d) {
  std::vector<int> ids;
  for (int64_t i = 0; i < d.size(); ++i)
    ids.push_back(static_cast<int>(dense(d)[static_cast<size_t>(i * d.num_features)]));
  return ids;
}

TEST(libsvm_load, split_is_disjoint_complete_and_seeded) {
  temp_dir dir;
  auto path = dir.write("rows.svm", numbered_rows(50));
  auto tt = chorus::load_libsvm(path, 0.2, 7);
  ASSERT_TRUE(tt.train && tt.test);
  EXPECT_EQ(tt.train->size(), 40);
  EXPECT_EQ(tt.test->size(), 10);
  EXPECT_EQ(tt.train->num_features, 2);
  EXPECT_EQ(tt.test->num_features, 2);
  EXPECT_EQ(tt.test->num_classes, 2);

  auto train_ids = row_ids(*tt.train);
  auto test_ids = row_ids(*tt.test);
  std::set<int> all(train_ids.begin(), train_ids.end());
  all.insert(test_ids.begin(), test_ids.end());
  EXPECT_EQ(all.size(), 50u);
  EXPECT_EQ(*all.begin(), 0);
  EXPECT_EQ(*all.rbegin(), 49);
  // Labels travel with their rows: odd rows are +1 (class 1).
  for (int64_t i = 0; i < tt.test->size(); ++i)
    EXPECT_EQ(tt.test->y[i], static_cast<float>(test_ids[i] % 2)) << i;

  auto again = chorus::load_libsvm(path, 0.2, 7);
  EXPECT_EQ(row_ids(*again.test), test_ids);
  auto other = chorus::load_libsvm(path, 0.2, 8);
  EXPECT_NE(row_ids(*other.test), test_ids);
  // A shuffle actually happened: the test set is not simply the last rows.
  std::vector<int> tail = {40, 41, 42, 43, 44, 45, 46, 47, 48, 49};
  auto sorted_test = test_ids;
  std::sort(sorted_test.begin(), sorted_test.end());
  EXPECT_NE(sorted_test, tail);
}

TEST(libsvm_load, registry_spec_uses_a_fifth_as_test) {
  temp_dir dir;
  auto path = dir.write("reg.svm", numbered_rows(50));
  chorus::dataset_options opts;
  opts.seed = 3;
  auto tt = chorus::load_dataset("libsvm:" + path, opts);
  ASSERT_TRUE(tt.train && tt.test);
  EXPECT_EQ(tt.train->size(), 40);
  EXPECT_EQ(tt.test->size(), 10);
  EXPECT_EQ(row_ids(*tt.test), row_ids(*chorus::load_libsvm(path, 0.2, 3).test));

  auto msg = data_error_of([&] { chorus::load_dataset("libsvm:" + dir.path + "/none", opts); });
  EXPECT_TRUE(contains(msg, dir.path + "/none")) << msg;
}

// --- hostile indices and the feature bound ------------------------------------

TEST(libsvm_bounds, index_two_to_the_62_is_a_clear_error_not_a_crash) {
  temp_dir dir;
  std::string text;
  for (int i = 0; i < 4; ++i)
    text += "+1 4611686018427387904:1.0\n";
  auto path = dir.write("huge.svm", text);
  auto msg = data_error_of([&] { chorus::read_libsvm(path); });
  EXPECT_TRUE(contains(msg, path)) << msg;
  EXPECT_TRUE(contains(msg, "line 1")) << msg;
  EXPECT_TRUE(contains(msg, "4611686018427387904")) << msg;
  EXPECT_TRUE(contains(msg, "--max-features")) << msg;
  // Not even the largest bound admits it, nor does the registry path.
  msg = data_error_of([&] { chorus::read_libsvm(path, 0, chorus::max_sparse_features); });
  EXPECT_TRUE(contains(msg, "exceeds the bound")) << msg;
  chorus::dataset_options opts;
  msg = data_error_of([&] { chorus::load_dataset("libsvm:" + path, opts); });
  EXPECT_TRUE(contains(msg, "--max-features")) << msg;
}

TEST(libsvm_bounds, index_beyond_int64_is_out_of_range) {
  temp_dir dir;
  auto path = dir.write("wider.svm", "-1 1:1\n+1 99999999999999999999999:1\n");
  auto msg = data_error_of([&] { chorus::read_libsvm(path); });
  EXPECT_TRUE(contains(msg, "line 2")) << msg;
  EXPECT_TRUE(contains(msg, "out of range")) << msg;
}

TEST(libsvm_bounds, index_2e8_under_the_default_bound_names_the_flag) {
  temp_dir dir;
  auto path = dir.write("wide.svm", "+1 200000000:1.0\n-1 1:1\n");
  auto msg = data_error_of([&] { chorus::read_libsvm(path); });
  EXPECT_TRUE(contains(msg, path)) << msg;
  EXPECT_TRUE(contains(msg, "200000000")) << msg;
  EXPECT_TRUE(contains(msg, std::to_string(chorus::default_max_features))) << msg;
  EXPECT_TRUE(contains(msg, "--max-features")) << msg;
}

TEST(libsvm_bounds, bad_bounds_are_invalid_arguments) {
  temp_dir dir;
  auto path = dir.write("ok.svm", "+1 1:1\n");
  EXPECT_THROW(chorus::read_libsvm(path, 0, 0), std::invalid_argument);
  EXPECT_THROW(chorus::read_libsvm(path, 0, chorus::max_sparse_features + 1), std::invalid_argument);
  EXPECT_THROW(chorus::read_libsvm(path, 10, 5), std::invalid_argument);
  EXPECT_EQ(chorus::read_libsvm(path, 0, 1).num_features, 1);
}

// Bytes of address space this process maps now (/proc/self/statm, in pages).
long long mapped_bytes() {
  std::ifstream statm("/proc/self/statm");
  long long pages = 0;
  statm >> pages;
  return pages * sysconf(_SC_PAGESIZE);
}

// Runs `body` in a child process whose address space may grow by at most
// `headroom` bytes beyond what it maps at the fork; returns the child's exit
// status (body's return value; 100 for an exception, 101 for bad_alloc).
template <class F>
int run_bounded(long long headroom, F body) {
  pid_t pid = fork();
  if (pid == 0) {
    rlimit lim{};
    lim.rlim_cur = lim.rlim_max = static_cast<rlim_t>(mapped_bytes() + headroom);
    if (setrlimit(RLIMIT_AS, &lim) != 0)
      _exit(102);
    int rc = 0;
    try {
      rc = body();
    } catch (const std::bad_alloc&) {
      rc = 101;
    } catch (...) {
      rc = 100;
    }
    _exit(rc);
  }
  int status = 0;
  if (pid < 0 || waitpid(pid, &status, 0) != pid)
    return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 200 + WTERMSIG(status);
}

TEST(libsvm_bounds, a_tiny_file_with_index_2e8_stays_tiny_in_memory_when_the_bound_is_raised) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "RLIMIT_AS does not mix with AddressSanitizer's shadow memory";
#endif
  temp_dir dir;
  // 30 bytes; stored dense this would be 2 x 2e8 floats = 1.6 GB.
  auto path = dir.write("wide.svm", "+1 200000000:1.0\n-1 1:1 7:2.5\n");
  const long long headroom = 256ll << 20;
  const int rc = run_bounded(headroom, [&] {
    auto d = chorus::read_libsvm(path, 0, 1 << 28);
    const bool ok = d.is_sparse() && d.num_features == 200000000 && d.size() == 2 &&
                    d.sparse.columns == std::vector<int32_t>{199999999, 0, 6};
    auto tt = chorus::load_libsvm(path, 0.5, 1, 1 << 28);
    const bool split_ok = tt.train->size() == 1 && tt.test->size() == 1 &&
                          tt.train->num_features == 200000000;
    return ok && split_ok ? 0 : 1;
  });
  EXPECT_EQ(rc, 0) << "1: wrong content, 100/101: failed or out of memory under a "
                   << (headroom >> 20) << " MiB bound";
  // The same bound does stop a dense allocation of that size: the check is real.
  const int dense_rc = run_bounded(headroom, [] {
    std::vector<float> dense(size_t{2} * 200000000);
    volatile float* touch = dense.data();  // keeps the allocation from being elided
    touch[12345] = 1.0f;
    return touch[12345] == 1.0f ? 0 : 1;
  });
  EXPECT_EQ(dense_rc, 101);
}

} // namespace
