// Tests of the IDX readers and the Fashion-MNIST loader. Small IDX files are
// written here (gzipped and plain) into a temporary directory; the real
// Fashion-MNIST test runs only where Debian's package is installed.
#include "data/dataset.hpp"

#include <gtest/gtest.h>
#include <zlib.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <vector>

#include "tests/memory_bound.hpp"

namespace {

using bytes = std::vector<unsigned char>;

// A fresh directory under GoogleTest's temp dir, removed afterwards.
struct temp_dir {
  std::string path;
  temp_dir() {
    std::string pattern = ::testing::TempDir() + "chorus_idx_XXXXXX";
    char* made = mkdtemp(pattern.data());
    if (made == nullptr)
      throw std::runtime_error("mkdtemp failed for " + pattern);
    path = made;
  }
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::string file(const std::string& name) const { return path + "/" + name; }
};

void put_be32(bytes& b, uint32_t v) {
  b.push_back(static_cast<unsigned char>(v >> 24));
  b.push_back(static_cast<unsigned char>(v >> 16));
  b.push_back(static_cast<unsigned char>(v >> 8));
  b.push_back(static_cast<unsigned char>(v));
}

bytes idx_images(uint32_t count, uint32_t rows, uint32_t cols, const bytes& pixels) {
  bytes b;
  put_be32(b, 0x00000803);
  put_be32(b, count);
  put_be32(b, rows);
  put_be32(b, cols);
  b.insert(b.end(), pixels.begin(), pixels.end());
  return b;
}

bytes idx_labels(const bytes& labels) {
  bytes b;
  put_be32(b, 0x00000801);
  put_be32(b, static_cast<uint32_t>(labels.size()));
  b.insert(b.end(), labels.begin(), labels.end());
  return b;
}

void write_plain(const std::string& path, const bytes& b) {
  std::ofstream out(path, std::ios::binary);
  out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
  ASSERT_TRUE(out.good()) << path;
}

void write_gz(const std::string& path, const bytes& b) {
  gzFile f = gzopen(path.c_str(), "wb");
  ASSERT_NE(f, nullptr) << path;
  if (!b.empty()) {
    ASSERT_EQ(gzwrite(f, b.data(), static_cast<unsigned>(b.size())), static_cast<int>(b.size()));
  }
  ASSERT_EQ(gzclose(f), Z_OK);
}

bytes read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// Runs `f`, expecting a data_error; returns its message ("" and a failure if
// none was thrown).
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

// 3 images of 2 x 3 pixels, covering 0, 255 and values between.
bytes sample_pixels() {
  return {0, 1, 2, 127, 128, 255, 10, 20, 30, 40, 50, 60, 255, 254, 253, 0, 0, 7};
}

class idx_files : public ::testing::TestWithParam<bool> {
protected:
  // Writes gzipped or plain depending on the parameter.
  void write(const std::string& path, const bytes& b) {
    if (GetParam())
      write_gz(path, b);
    else
      write_plain(path, b);
  }
  temp_dir dir;
};

TEST_P(idx_files, images_read_back_exactly) {
  const auto pixels = sample_pixels();
  const auto path = dir.file("images.idx");
  write(path, idx_images(3, 2, 3, pixels));
  int64_t count = 0, rows = 0, cols = 0;
  auto x = chorus::read_idx_images(path, &count, &rows, &cols);
  EXPECT_EQ(count, 3);
  EXPECT_EQ(rows, 2);
  EXPECT_EQ(cols, 3);
  ASSERT_EQ(x.size(), pixels.size());
  for (size_t i = 0; i < pixels.size(); ++i)
    EXPECT_FLOAT_EQ(x[i], static_cast<float>(pixels[i]) / 255.0f) << "pixel " << i;
  EXPECT_EQ(x[0], 0.0f);
  EXPECT_EQ(x[5], 1.0f);
}

TEST_P(idx_files, labels_read_back_exactly) {
  const bytes labels = {3, 0, 9, 1, 1, 255};
  const auto path = dir.file("labels.idx");
  write(path, idx_labels(labels));
  int64_t count = 0;
  auto y = chorus::read_idx_labels(path, &count);
  EXPECT_EQ(count, 6);
  ASSERT_EQ(y.size(), labels.size());
  for (size_t i = 0; i < labels.size(); ++i)
    EXPECT_EQ(y[i], static_cast<float>(labels[i])) << "label " << i;
}

TEST_P(idx_files, truncated_pixels_name_file_and_byte_counts) {
  auto b = idx_images(3, 2, 3, sample_pixels());
  b.resize(b.size() - 5); // 13 of 18 pixel bytes remain
  const auto path = dir.file("short.idx");
  write(path, b);
  auto msg = data_error_of([&] { chorus::read_idx_images(path, nullptr, nullptr, nullptr); });
  EXPECT_TRUE(contains(msg, path)) << msg;
  EXPECT_TRUE(contains(msg, "truncated")) << msg;
  EXPECT_TRUE(contains(msg, "expected 18 bytes, got 13")) << msg;
}

TEST_P(idx_files, truncated_header_names_file) {
  bytes b;
  put_be32(b, 0x00000803);
  put_be32(b, 3);
  const auto path = dir.file("header.idx");
  write(path, b);
  auto msg = data_error_of([&] { chorus::read_idx_images(path, nullptr, nullptr, nullptr); });
  EXPECT_TRUE(contains(msg, path)) << msg;
  EXPECT_TRUE(contains(msg, "expected 16 bytes, got 8")) << msg;
}

TEST_P(idx_files, truncated_labels_name_file) {
  auto b = idx_labels({1, 2, 3, 4});
  b.pop_back();
  const auto path = dir.file("labels-short.idx");
  write(path, b);
  auto msg = data_error_of([&] { chorus::read_idx_labels(path, nullptr); });
  EXPECT_TRUE(contains(msg, path)) << msg;
  EXPECT_TRUE(contains(msg, "expected 4 bytes, got 3")) << msg;
}

TEST_P(idx_files, wrong_magic_says_expected_and_found) {
  const auto path = dir.file("labels-as-images.idx");
  write(path, idx_labels({1, 2, 3}));
  auto msg = data_error_of([&] { chorus::read_idx_images(path, nullptr, nullptr, nullptr); });
  EXPECT_TRUE(contains(msg, path)) << msg;
  EXPECT_TRUE(contains(msg, "expected 0x00000803")) << msg;
  EXPECT_TRUE(contains(msg, "found 0x00000801")) << msg;

  const auto path2 = dir.file("images-as-labels.idx");
  write(path2, idx_images(1, 1, 1, {5}));
  auto msg2 = data_error_of([&] { chorus::read_idx_labels(path2, nullptr); });
  EXPECT_TRUE(contains(msg2, path2)) << msg2;
  EXPECT_TRUE(contains(msg2, "expected 0x00000801")) << msg2;
  EXPECT_TRUE(contains(msg2, "found 0x00000803")) << msg2;
}

INSTANTIATE_TEST_SUITE_P(gzip_and_plain, idx_files, ::testing::Values(true, false),
                         [](const auto& info) { return info.param ? "gzip" : "plain"; });

TEST(idx_read, missing_file_names_path) {
  temp_dir dir;
  const auto path = dir.file("does-not-exist.gz");
  auto msg = data_error_of([&] { chorus::read_idx_images(path, nullptr, nullptr, nullptr); });
  EXPECT_TRUE(contains(msg, path)) << msg;
  EXPECT_TRUE(contains(msg, "cannot open")) << msg;
  auto msg2 = data_error_of([&] { chorus::read_idx_labels(path, nullptr); });
  EXPECT_TRUE(contains(msg2, path)) << msg2;
}

TEST(idx_read, cut_off_or_damaged_gzip_is_an_error_naming_the_file) {
  temp_dir dir;
  // Enough incompressible-ish pixels that the gzip stream spans many bytes.
  bytes pixels(100 * 28 * 28);
  uint32_t state = 12345;
  for (auto& p : pixels) {
    state = state * 1664525u + 1013904223u;
    p = static_cast<unsigned char>(state >> 24);
  }
  const auto full = dir.file("full.gz");
  write_gz(full, idx_images(100, 28, 28, pixels));
  auto gz = read_all(full);
  ASSERT_GT(gz.size(), 1000u);
  gz.resize(gz.size() / 2);
  const auto cut = dir.file("cut.gz");
  write_plain(cut, gz);
  auto msg = data_error_of([&] { chorus::read_idx_images(cut, nullptr, nullptr, nullptr); });
  EXPECT_TRUE(contains(msg, cut)) << msg;
  EXPECT_TRUE(contains(msg, "truncated")) << msg;
  EXPECT_TRUE(contains(msg, "expected 78400 bytes")) << msg;

  // Damaged compressed bytes (not a short file) are reported as corrupt.
  auto damaged = read_all(full);
  for (size_t i = damaged.size() / 3; i < damaged.size() / 3 + 64; ++i)
    damaged[i] ^= 0x5A;
  const auto bad = dir.file("damaged.gz");
  write_plain(bad, damaged);
  auto msg2 = data_error_of([&] { chorus::read_idx_images(bad, nullptr, nullptr, nullptr); });
  EXPECT_TRUE(contains(msg2, bad)) << msg2;
  EXPECT_TRUE(contains(msg2, "corrupt")) << msg2;
}

TEST(idx_read, large_file_reads_in_chunks_without_loss) {
  temp_dir dir;
  // Larger than the reader's 1 MiB chunk, so the chunk boundary is crossed.
  const uint32_t count = 2000, side = 28;
  bytes pixels(size_t{count} * side * side);
  for (size_t i = 0; i < pixels.size(); ++i)
    pixels[i] = static_cast<unsigned char>((i * 7 + i / 1000) % 256);
  const auto path = dir.file("big.gz");
  write_gz(path, idx_images(count, side, side, pixels));
  int64_t n = 0, r = 0, c = 0;
  auto x = chorus::read_idx_images(path, &n, &r, &c);
  ASSERT_EQ(x.size(), pixels.size());
  size_t mismatches = 0;
  for (size_t i = 0; i < pixels.size(); ++i)
    mismatches += x[i] != static_cast<float>(pixels[i]) / 255.0f;
  EXPECT_EQ(mismatches, 0u);
}

// Dimensions whose product wraps past 2^64 (here to exactly 0) must not
// pass as an empty file of 65536 huge images.
TEST(idx_read, dimensions_that_overflow_64_bits_are_refused) {
  temp_dir dir;
  const auto path = dir.file("wrap.gz");
  write_gz(path, idx_images(1u << 16, 1u << 24, 1u << 24, {}));
  auto msg = data_error_of([&] { chorus::read_idx_images(path, nullptr, nullptr, nullptr); });
  EXPECT_TRUE(contains(msg, path)) << msg;
  EXPECT_TRUE(contains(msg, "implausible dimensions")) << msg;
  EXPECT_TRUE(contains(msg, "65536 images of 16777216x16777216")) << msg;

  // A product just below 2^64 is caught by the size cap instead.
  write_gz(path, idx_images(0xFFFFFFFFu, 0xFFFFFFFFu, 1, {}));
  auto msg2 = data_error_of([&] { chorus::read_idx_images(path, nullptr, nullptr, nullptr); });
  EXPECT_TRUE(contains(msg2, "implausible dimensions")) << msg2;
}

// No images at all, each claiming 2^64 - 2^33 + 1 pixels: the product is 0,
// but the feature count would overflow downstream.
TEST(idx_read, zero_images_of_enormous_size_are_refused) {
  temp_dir dir;
  const auto path = dir.file("empty.gz");
  write_gz(path, idx_images(0, 0xFFFFFFFFu, 0xFFFFFFFFu, {}));
  auto msg = data_error_of([&] { chorus::read_idx_images(path, nullptr, nullptr, nullptr); });
  EXPECT_TRUE(contains(msg, "implausible dimensions")) << msg;
  EXPECT_TRUE(contains(msg, "pixels per image")) << msg;
}

// A 44-byte file claiming 10^6 images of 28x28 (3.1 GB as floats) fails as
// truncated without allocating for what it only claims: the child may map
// 256 MiB more than the test process.
TEST(idx_read, header_claims_cost_no_memory_beyond_the_data) {
  temp_dir dir;
  const auto path = dir.file("claims.gz");
  bytes some(1000, 7);
  write_gz(path, idx_images(1000000, 28, 28, some));
  auto r = chorus::test::run_memory_bounded(size_t{256} << 20, [&] {
    try {
      chorus::read_idx_images(path, nullptr, nullptr, nullptr);
    } catch (const chorus::data_error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  });
  ASSERT_TRUE(r.finished);
  EXPECT_FALSE(r.out_of_memory) << r.text;
  EXPECT_TRUE(contains(r.text, "truncated pixel data: expected 784000000 bytes, got 1000")) << r.text;

  // The same for labels: 2^32 - 1 claimed, 10 present.
  const auto labels = dir.file("labels.gz");
  bytes b;
  put_be32(b, 0x00000801);
  put_be32(b, 0xFFFFFFFFu);
  b.resize(b.size() + 10, 1);
  write_gz(labels, b);
  auto r2 = chorus::test::run_memory_bounded(size_t{256} << 20, [&] {
    try {
      chorus::read_idx_labels(labels, nullptr);
    } catch (const chorus::data_error& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  });
  ASSERT_TRUE(r2.finished);
  EXPECT_FALSE(r2.out_of_memory) << r2.text;
  EXPECT_TRUE(contains(r2.text, "truncated label data: expected 4294967295 bytes, got 10")) << r2.text;
}

// A miniature Fashion-MNIST directory: same file names, tiny images.
struct mini_fashion {
  temp_dir dir;
  bytes train_pixels, test_pixels, train_labels, test_labels;
  mini_fashion() {
    train_pixels = {0, 255, 51, 102, 0, 0, 255, 255, 10, 20, 30, 40};  // 3 images, 2x2
    test_pixels = {255, 0, 0, 0, 51, 51, 51, 51};                      // 2 images, 2x2
    train_labels = {0, 9, 4};
    test_labels = {1, 2};
  }
  void write_all() {
    write_gz(dir.file("train-images-idx3-ubyte.gz"), idx_images(3, 2, 2, train_pixels));
    write_gz(dir.file("train-labels-idx1-ubyte.gz"), idx_labels(train_labels));
    write_gz(dir.file("t10k-images-idx3-ubyte.gz"), idx_images(2, 2, 2, test_pixels));
    write_gz(dir.file("t10k-labels-idx1-ubyte.gz"), idx_labels(test_labels));
  }
};

TEST(fashion_mnist_loader, standardizes_both_sets_with_training_statistics) {
  mini_fashion m;
  m.write_all();
  auto tt = chorus::load_fashion_mnist(m.dir.path);
  ASSERT_TRUE(tt.train && tt.test);
  EXPECT_EQ(tt.train->name, "fashion-mnist");
  EXPECT_EQ(tt.train->task, chorus::task_kind::classification);
  EXPECT_EQ(tt.train->num_classes, 10);
  EXPECT_EQ(tt.train->num_features, 4);
  EXPECT_EQ(tt.test->num_features, 4);
  EXPECT_EQ(tt.train->size(), 3);
  EXPECT_EQ(tt.test->size(), 2);
  EXPECT_TRUE(tt.ground_truth.empty());
  EXPECT_EQ(tt.train->y, (std::vector<float>{0, 9, 4}));
  EXPECT_EQ(tt.test->y, (std::vector<float>{1, 2}));

  // The expected transform, computed independently from the raw bytes.
  double sum = 0, sum_sq = 0;
  for (auto p : m.train_pixels) {
    sum += p / 255.0;
    sum_sq += (p / 255.0) * (p / 255.0);
  }
  const double n = static_cast<double>(m.train_pixels.size());
  const double mean = sum / n, sd = std::sqrt(sum_sq / n - mean * mean);
  for (size_t i = 0; i < m.train_pixels.size(); ++i)
    EXPECT_NEAR(tt.train->x[i], (m.train_pixels[i] / 255.0 - mean) / sd, 1e-5) << i;
  for (size_t i = 0; i < m.test_pixels.size(); ++i)
    EXPECT_NEAR(tt.test->x[i], (m.test_pixels[i] / 255.0 - mean) / sd, 1e-5) << i;
}

TEST(fashion_mnist_loader, image_label_count_mismatch_names_both_files) {
  mini_fashion m;
  m.train_labels = {0, 1};
  m.write_all();
  auto msg = data_error_of([&] { chorus::load_fashion_mnist(m.dir.path); });
  EXPECT_TRUE(contains(msg, m.dir.file("train-images-idx3-ubyte.gz"))) << msg;
  EXPECT_TRUE(contains(msg, m.dir.file("train-labels-idx1-ubyte.gz"))) << msg;
  EXPECT_TRUE(contains(msg, "3 images")) << msg;
  EXPECT_TRUE(contains(msg, "2 labels")) << msg;
}

TEST(fashion_mnist_loader, label_out_of_range_names_file) {
  mini_fashion m;
  m.test_labels = {1, 10};
  m.write_all();
  auto msg = data_error_of([&] { chorus::load_fashion_mnist(m.dir.path); });
  EXPECT_TRUE(contains(msg, m.dir.file("t10k-labels-idx1-ubyte.gz"))) << msg;
  EXPECT_TRUE(contains(msg, "out of range")) << msg;
}

TEST(fashion_mnist_loader, images_without_pixels_are_refused) {
  mini_fashion m;
  m.write_all();
  write_gz(m.dir.file("train-images-idx3-ubyte.gz"), idx_images(3, 0, 5, {}));
  auto msg = data_error_of([&] { chorus::load_fashion_mnist(m.dir.path); });
  EXPECT_TRUE(contains(msg, m.dir.file("train-images-idx3-ubyte.gz"))) << msg;
  EXPECT_TRUE(contains(msg, "at least one pixel")) << msg;
}

TEST(fashion_mnist_loader, missing_directory_names_the_file) {
  temp_dir dir;
  auto msg = data_error_of([&] { chorus::load_fashion_mnist(dir.path); });
  EXPECT_TRUE(contains(msg, dir.file("train-images-idx3-ubyte.gz"))) << msg;
  EXPECT_TRUE(contains(msg, "cannot open")) << msg;
}

TEST(fashion_mnist_loader, real_dataset_when_installed) {
  const std::string dir = chorus::default_fashion_mnist_dir;
  if (!std::filesystem::exists(dir + "/train-images-idx3-ubyte.gz"))
    GTEST_SKIP() << "Fashion-MNIST not installed at " << dir;
  auto tt = chorus::load_fashion_mnist(dir);
  ASSERT_TRUE(tt.train && tt.test);
  EXPECT_EQ(tt.train->size(), 60000);
  EXPECT_EQ(tt.test->size(), 10000);
  EXPECT_EQ(tt.train->num_features, 784);
  EXPECT_EQ(tt.train->num_classes, 10);
  ASSERT_EQ(tt.train->x.size(), size_t{60000} * 784);
  ASSERT_EQ(tt.test->x.size(), size_t{10000} * 784);

  for (const auto* d : {tt.train.get(), tt.test.get()}) {
    std::set<float> labels(d->y.begin(), d->y.end());
    EXPECT_EQ(labels.size(), 10u);
    EXPECT_EQ(*labels.begin(), 0.0f);
    EXPECT_EQ(*labels.rbegin(), 9.0f);
  }
  double sum = 0, sum_sq = 0;
  for (float v : tt.train->x) {
    sum += v;
    sum_sq += double{v} * v;
  }
  const double n = static_cast<double>(tt.train->x.size());
  EXPECT_NEAR(sum / n, 0.0, 1e-3);
  EXPECT_NEAR(std::sqrt(sum_sq / n - (sum / n) * (sum / n)), 1.0, 1e-3);
  // The test set went through the same transform, so it is close but not
  // exactly standardized.
  double test_sum = 0;
  for (float v : tt.test->x)
    test_sum += v;
  EXPECT_NEAR(test_sum / static_cast<double>(tt.test->x.size()), 0.0, 0.05);
}

} // namespace
